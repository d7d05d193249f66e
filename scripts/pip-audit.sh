#!/usr/bin/env bash
# Known vulnerabilities in the pinned dependencies: pip-audit (pinned in constraints.txt,
# in a venv of its own) checks every pin of constraints.txt, without resolving anything,
# against the PyPI/OSV advisory database. It needs that database online (security.yml).
#
#   scripts/pip-audit.sh [PIP_AUDIT_ARGS...]
#
# PYTHON is the interpreter for the tool's venv (default python3).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
tool=$ROOT/build/pip-audit
[[ -x $tool/bin/pip-audit ]] || {
  "$PYTHON" -m venv "$tool"
  "$tool/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c "$ROOT/constraints.txt" pip-audit
}
# The pins, less the local-version suffixes (torch==2.13.0+cpu) PyPI has no advisories for.
requirements=$tool/requirements.txt
sed -E -e 's/#.*//' -e 's/\+[A-Za-z0-9.]+$//' -e '/^\s*$/d' "$ROOT/constraints.txt" >"$requirements"
exec "$tool/bin/pip-audit" --strict --no-deps --disable-pip --desc on -r "$requirements" "$@"
