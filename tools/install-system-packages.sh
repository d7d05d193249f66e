#!/usr/bin/env bash
# Installs the Debian packages listed in system-packages.txt that are missing.
# As root it runs apt-get; otherwise it prints the exact command and fails.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
while read -r package probe; do
    [[ -z "$package" || "$package" == \#* ]] && continue
    if [[ -n "${probe:-}" ]]; then
        command -v "$probe" >/dev/null 2>&1 && continue
    elif dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
        continue
    fi
    missing+=("$package")
done < system-packages.txt

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
command=(apt-get install -y --no-install-recommends "${missing[@]}")
if [[ $(id -u) -ne 0 ]]; then
    echo "missing system packages; run: sudo apt-get update && sudo ${command[*]}" >&2
    exit 1
fi
echo "installing system packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${command[@]}" >/dev/null
