"""What the GitHub workflows call exists and runs here: make targets, scripts, pinned actions.

The workflows cannot run on this machine, but each step is a make target or a script
that can. These tests parse every workflow and the local setup action: every action is
pinned by a full commit SHA (its tag in a comment), permissions are set and only jobs
write, every `run:` block passes ShellCheck, every `make` target and `scripts/` file a
step names exists; the test suites of ci.yml cover tests/ exactly once; the branch
protection's required checks are jobs that run on every pull request; and the scripts
the data-validation and release workflows call do what they say on small inputs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import yaml

from tests.support.server import running_server

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / ".github"
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
ACTIONS = sorted((GITHUB / "actions").glob("*/action.yml"))
#: Targets the workflows call that the Makefile must define (CONTRIBUTING.md lists them).
EXPECTED_TARGETS = {"lint", "bandit", "proto-check", "bench-gate", "wheels-check", "sbom", "venv"}
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def _load(path: Path) -> dict[Any, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), path
    return loaded


def _triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1).
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    assert isinstance(on, dict)
    return on


def _steps() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in WORKFLOWS:
        for job_id, job in _load(path)["jobs"].items():
            for step in job.get("steps", []):
                yield f"{path.name}:{job_id}", step
    for path in ACTIONS:
        for step in _load(path)["runs"]["steps"]:
            yield f"{path.parent.name}/action.yml", step


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9_-]*):(?!=)", text, flags=re.MULTILINE))


def _job_names(job_id: str, job: dict[str, Any]) -> set[str]:
    """The check names GitHub gives a job: its name, once per matrix entry when templated."""
    name = str(job.get("name", job_id))
    matrix = job.get("strategy", {}).get("matrix")
    if "${{" not in name or not matrix:
        return {name}
    rows = matrix.get("include") or [
        {key: value} for key, values in matrix.items() for value in values
    ]
    template = re.compile(r"\$\{\{\s*matrix\.(\w+)\s*\}\}")
    names = set()
    for row in rows:
        filled = name
        for match in template.finditer(name):
            filled = filled.replace(match.group(0), str(row[match.group(1)]))
        names.add(filled)
    return names


def test_the_workflows_exist() -> None:
    names = {path.stem for path in WORKFLOWS}
    assert {"ci", "data-validation", "ml-training", "deployment", "security", "release"} <= names


def test_every_action_is_pinned_by_commit_sha_with_its_tag() -> None:
    files = [*WORKFLOWS, *ACTIONS]
    uses = 0
    for path in files:
        for line in path.read_text().splitlines():
            match = re.match(r"\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
            if match is None:
                continue
            uses += 1
            reference, rest = match.groups()
            if reference.startswith("./"):
                assert (ROOT / reference / "action.yml").exists(), f"{path.name}: {reference}"
                continue
            assert PINNED.match(reference), f"{path.name}: {reference} is not pinned by SHA"
            assert re.match(r"\s*# v\d", rest), f"{path.name}: {reference} has no # vX tag comment"
    assert uses > 20


def test_permissions_are_least_privilege_and_runs_are_grouped() -> None:
    for path in WORKFLOWS:
        workflow = _load(path)
        top = workflow.get("permissions")
        assert isinstance(top, dict), f"{path.name}: no top-level permissions map"
        assert set(top.values()) <= {"read", "none"}, f"{path.name}: writes at the top level"
        assert "group" in workflow.get("concurrency", {}), f"{path.name}: no concurrency group"
        for job_id, job in workflow["jobs"].items():
            permissions = job.get("permissions", {})
            assert permissions != "write-all", f"{path.name}:{job_id}"
            assert "timeout-minutes" in job, f"{path.name}:{job_id} has no timeout"


def test_pip_is_cached_by_the_setup_action() -> None:
    setup = _load(GITHUB / "actions" / "setup" / "action.yml")
    python = next(s for s in setup["runs"]["steps"] if "setup-python" in s.get("uses", ""))
    assert python["with"]["cache"] == "pip"
    assert "constraints.txt" in python["with"]["cache-dependency-path"]


def test_steps_call_only_make_targets_and_scripts_that_exist() -> None:
    targets = _make_targets()
    missing_rules = EXPECTED_TARGETS - targets
    assert not missing_rules, f"Makefile lacks {sorted(missing_rules)} (CONTRIBUTING.md, CI)"
    called: set[str] = set()
    for where, step in _steps():
        script = step.get("run")
        if script is None:
            continue
        for command in re.findall(r"(?:^|[;&|(]\s*|\s)make\s+([^\n;&|)]*)", script):
            for word in command.split():
                if word.startswith("-") or "=" in word:
                    continue
                called.add(word)
                assert word in targets, f"{where}: make {word} is not a Makefile target"
        for name in re.findall(r"scripts/([\w.-]+)", script):
            path = ROOT / "scripts" / name
            assert path.is_file(), f"{where}: scripts/{name} does not exist"
            assert os.access(path, os.X_OK), f"{where}: scripts/{name} is not executable"
    assert called >= {"lint", "bandit", "proto-check", "bench-gate", "wheels-check", "sbom"}


def test_every_run_block_passes_shellcheck(tmp_path: Path) -> None:
    files = []
    for index, (where, step) in enumerate(_steps()):
        if "run" not in step:
            continue
        # Expressions are substituted before bash sees the text: stand in a plain word.
        body = EXPRESSION.sub("GHA_EXPRESSION", step["run"])
        path = tmp_path / f"{index:03d}-{where.replace(':', '-').replace('/', '-')}.sh"
        path.write_text(f"#!/usr/bin/env bash\n# {where}\nset -eo pipefail\n{body}")
        files.append(str(path))
    assert len(files) > 15
    completed = subprocess.run(
        [str(BIN / "shellcheck"), "-s", "bash", *files],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout


def test_the_test_suites_cover_every_test_file_once() -> None:
    every = {p.relative_to(ROOT) for p in (ROOT / "tests").rglob("test_*.py")}
    covered: dict[Path, list[str]] = {}
    for suite in ("unit", "integration", "data", "model"):
        printed = subprocess.run(
            ["bash", "scripts/ci-tests.sh", "--print", suite],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=30,
        ).stdout.split()  # fmt: skip
        paths = [Path(a) for a in printed if not a.startswith("--")]
        ignored = [Path(a.removeprefix("--ignore=")) for a in printed if a.startswith("--ignore=")]
        for path in paths:
            assert (ROOT / path).exists(), f"{suite}: {path} does not exist"
        for file in every:
            inside = any(file == p or p in file.parents for p in paths)
            left_out = any(file == p or p in file.parents for p in ignored)
            if inside and not left_out:
                covered.setdefault(file, []).append(suite)
    assert {f for f in every if f not in covered} == set(), "test files in no CI suite"
    assert {f: s for f, s in covered.items() if len(s) > 1} == {}, "test files in two suites"
    unknown = subprocess.run(
        ["bash", "scripts/ci-tests.sh", "--print", "everything"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert unknown.returncode == 2
    assert "unknown suite" in unknown.stderr


def test_required_checks_are_jobs_that_run_on_every_pull_request() -> None:
    on_every_pr: set[str] = set()
    for path in WORKFLOWS:
        workflow = _load(path)
        pull_request = _triggers(workflow).get("pull_request", False)
        if pull_request is False or (pull_request and "paths" in pull_request):
            continue
        for job_id, job in workflow["jobs"].items():
            on_every_pr |= _job_names(job_id, job)
    assert {"unit tests", "data-validation tests", "model-performance tests"} <= on_every_pr
    for branch in ("main", "develop"):
        payload = json.loads((GITHUB / "branch-protection" / f"{branch}.json").read_text())
        required = {c["context"] for c in payload["required_status_checks"]["checks"]}
        assert required, branch
        assert required <= on_every_pr, f"{branch}: no such PR job: {required - on_every_pr}"
        assert payload["required_linear_history"] is True
        assert payload["allow_force_pushes"] is False
        assert payload["required_pull_request_reviews"]["required_approving_review_count"] >= 1
    repository = json.loads((GITHUB / "branch-protection" / "repository.json").read_text())
    assert repository["delete_branch_on_merge"] is True


def test_protect_branches_dry_run_names_each_branch_and_its_checks() -> None:
    completed = subprocess.run(
        ["bash", "scripts/protect-branches.sh", "--dry-run", "mozart-audio/mozart"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=30,
        env={**os.environ, "GH": "/nonexistent/gh"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "api --method PATCH repos/mozart-audio/mozart --input" in out
    for branch in ("main", "develop"):
        assert f"repos/mozart-audio/mozart/branches/{branch}/protection --input" in out
        assert f"{branch}: required check: unit tests" in out
    bad = subprocess.run(
        ["bash", "scripts/protect-branches.sh", "--dry-run", "not a repo"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "not OWNER/REPO" in bad.stderr


def test_release_notes_come_from_the_changelog_section_of_the_version(tmp_path: Path) -> None:
    version = (ROOT / "VERSION").read_text().strip()
    notes = subprocess.run(
        ["bash", "scripts/release-notes.sh", f"v{version}"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert notes.returncode == 0, notes.stderr
    assert "### Added" in notes.stdout
    assert f"## [{version}]" not in notes.stdout
    wrong = subprocess.run(
        ["bash", "scripts/release-notes.sh", "v99.0.0"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert wrong.returncode == 1
    assert "VERSION says" in wrong.stderr
    empty = tmp_path / "CHANGELOG.md"
    empty.write_text(f"# Changelog\n\n## [{version}] - 2026-01-01\n\n## [0.0.1]\n\n- old\n")
    missing = subprocess.run(
        ["bash", "scripts/release-notes.sh", f"v{version}"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=30,
        env={**os.environ, "CHANGELOG": str(empty)},
    )  # fmt: skip
    assert missing.returncode == 1
    assert "no entries" in missing.stderr


def _data_validation(*args: str, reports: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/data-validation.sh", *args],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "REPORTS": str(reports), "MOZART": str(BIN / "mozart"),
             "PYTHON": sys.executable},
    )  # fmt: skip


def test_data_validation_fails_on_a_changed_digest_and_on_a_tampered_file(tmp_path: Path) -> None:
    corpus = tmp_path / "tiny"
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for label in ("a", "b"):
            folder = corpus / split / label
            folder.mkdir(parents=True)
            tone = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 800) * np.arange(64000) / 16000)
            soundfile.write(str(folder / f"{split}-{label}.wav"), tone.astype(np.float32), 16000)
    subprocess.run([str(BIN / "mozart"), "data", "manifest", str(corpus)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    record, reports = tmp_path / "digests.json", tmp_path / "reports"

    recorded = _data_validation("--corpus", str(corpus), "--record", str(record), "--update",
                                reports=reports)  # fmt: skip
    assert recorded.returncode == 0, recorded.stderr
    digest = json.loads(record.read_text())["tiny"]
    assert len(digest) == 64
    same = _data_validation("--corpus", str(corpus), "--record", str(record), reports=reports)
    assert same.returncode == 0, same.stderr
    assert f"tiny digest {digest} matches" in same.stdout

    # A new file with a regenerated manifest: a new digest the record does not have.
    soundfile.write(str(corpus / "train" / "a" / "extra.wav"),
                    np.zeros(64000, np.float32) + 0.1, 16000)  # fmt: skip
    subprocess.run([str(BIN / "mozart"), "data", "manifest", str(corpus)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    changed = _data_validation("--corpus", str(corpus), "--record", str(record), reports=reports)
    assert changed.returncode == 1
    assert f"the record says {digest}" in changed.stderr

    # A file changed behind the manifest's back fails validation itself (its sha256).
    (corpus / "val" / "b" / "val-b.wav").write_bytes(b"RIFF not audio")
    tampered = _data_validation("--corpus", str(corpus), "--record", str(record), reports=reports)
    assert tampered.returncode == 1
    assert "failed validation" in tampered.stderr


def test_deploy_smoke_passes_against_a_real_server_and_fails_without_one() -> None:
    env = {**os.environ, "MOZART": str(BIN / "mozart")}
    with running_server(ROOT / "models") as server:
        smoke = subprocess.run(
            ["bash", "scripts/deploy-smoke.sh", server.address],
            cwd=ROOT, capture_output=True, text=True, check=False, timeout=120, env=env,
        )  # fmt: skip
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "composer-cnn" in smoke.stdout
    assert f"deploy-smoke.sh: {server.address} answers" in smoke.stdout
    usage = subprocess.run(
        ["bash", "scripts/deploy-smoke.sh"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=30, env=env,
    )  # fmt: skip
    assert usage.returncode == 2


def test_coverage_report_combines_the_suites_data(tmp_path: Path) -> None:
    reports, out = tmp_path / "reports", tmp_path / "coverage"
    reports.mkdir()
    probe = tmp_path / "probe.py"
    probe.write_text("import mozart_proto.logs\n")
    for suite in ("unit", "data"):
        subprocess.run(
            [str(BIN / "coverage"), "run", f"--data-file={reports / f'coverage.{suite}'}",
             "--source=mozart_proto", str(probe)],
            cwd=tmp_path, capture_output=True, check=True, timeout=60,
        )  # fmt: skip
    report = subprocess.run(
        ["bash", "scripts/coverage-report.sh", str(reports)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "OUT": str(out), "COVERAGE": str(BIN / "coverage")},
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert "### Coverage (2 of 4 suites)" in report.stdout
    assert "mozart_proto/logs.py" in report.stdout.replace("\\_", "_")
    assert (out / "html" / "index.html").exists()
    assert (out / "coverage.xml").exists()
    empty = subprocess.run(
        ["bash", "scripts/coverage-report.sh", str(tmp_path / "nothing")],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "OUT": str(out), "COVERAGE": str(BIN / "coverage")},
    )  # fmt: skip
    assert empty.returncode == 1
    assert "no coverage data" in empty.stderr


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("ci-tests.sh", []),
        ("data-validation.sh", ["--bogus"]),
        ("ml-training.sh", ["--hpo", "many"]),
        ("image-smoke.sh", []),
        ("release-notes.sh", ["0.1.0"]),
        ("sbom.sh", ["--bogus"]),
    ],
)
def test_a_step_script_refuses_bad_arguments_with_its_usage(script: str, args: list[str]) -> None:
    completed = subprocess.run(
        ["bash", f"scripts/{script}", *args],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert completed.returncode == 2, completed.stderr
    assert f"scripts/{script}" in completed.stderr, completed.stderr
