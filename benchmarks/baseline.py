"""The baseline gate's decision: a candidate against a baseline measured in the same run.

The runner (abba.py) measures each figure ABBA: candidate, baseline, baseline, candidate,
on the same machine minutes apart, so both see the same drift. Each side then has
repeats, and the spread between the repeats of the same code is this run's own noise. A
figure fails when the candidate is worse than the baseline by more than

    margin = max(spread_factor x spread, min_relative x baseline, min_absolute)

where `spread` is the larger range (max - min) of either side's repeats. The two floors
keep a run whose repeats agree by chance from failing on noise.

Also here: which baseline to use (the newest `v*` tag, else the commit gates.toml pins)
and its checkout, `git archive` of server/ and proto/ into a cache folder outside the
repository (~/.cache/mozart-benchmarks/<commit>), so the working tree and the
repository's state are left alone.
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import tarfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

ROOT = Path(__file__).resolve().parent.parent
# Outside the repository: a second copy of the packages inside it would confuse mypy,
# ruff and pytest, which walk the tree.
CHECKOUTS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mozart-benchmarks"
SOURCES = ("server", "proto")  # what a server needs from a tree; the venv has the rest


class FigureRule(BaseModel):
    """How far one figure may move against the baseline before the gate fails."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_relative: float = Field(ge=0)  # of the baseline's mean
    min_absolute: float = Field(ge=0)  # in the figure's unit


class BaselineRules(BaseModel):
    """gates.toml's [baseline] table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    commit: str = Field(min_length=7)  # used when the repository has no `v*` tag
    spread_factor: float = Field(gt=0)
    streams: int = Field(ge=1)
    stream_hop_ms: int = Field(ge=0)
    saturation: FigureRule
    overhead: FigureRule
    stream_p99: FigureRule


def load_rules(path: Path) -> BaselineRules:
    """Reads the [baseline] table of a gates file."""
    with path.open("rb") as file:
        return BaselineRules.model_validate(tomllib.load(file)["baseline"])


@dataclass(frozen=True)
class Figure:
    """One figure as both sides measured it, each run of it in order."""

    name: str
    unit: str
    higher_is_better: bool
    candidate: tuple[float, ...]
    baseline: tuple[float, ...]


@dataclass(frozen=True)
class Verdict:
    """The decision on one figure."""

    figure: Figure
    candidate_mean: float
    baseline_mean: float
    spread: float  # the larger range of either side's repeats
    margin: float
    worse_by: float  # how much worse the candidate is (negative: better)

    @property
    def passed(self) -> bool:
        """The candidate is not worse than the baseline by more than the margin."""
        return self.worse_by <= self.margin


def _range(values: Sequence[float]) -> float:
    return max(values) - min(values) if values else 0.0


def decide(figure: Figure, rule: FigureRule, spread_factor: float) -> Verdict:
    """Compares the candidate's mean with the baseline's, within the margin of this run's spread.

    A side without a measurement (every repeat answered nothing) fails the figure: the gate
    cannot say the candidate is no worse.
    """
    if not figure.candidate or not figure.baseline:
        nan = float("nan")
        return Verdict(figure, nan, nan, nan, 0.0, float("inf"))
    candidate = statistics.fmean(figure.candidate)
    baseline = statistics.fmean(figure.baseline)
    spread = max(_range(figure.candidate), _range(figure.baseline))
    margin = max(spread_factor * spread, rule.min_relative * abs(baseline), rule.min_absolute)
    worse_by = baseline - candidate if figure.higher_is_better else candidate - baseline
    return Verdict(figure, candidate, baseline, spread, margin, worse_by)


def format_verdicts(verdicts: Sequence[Verdict], title: str) -> str:
    """The baseline gate's table: each figure, both sides' runs, spread, margin, result."""
    rows = [("figure", "candidate (runs)", "baseline (runs)", "spread", "margin", "worse by",
             "result")]  # fmt: skip
    for verdict in verdicts:
        figure = verdict.figure

        def runs(mean: float, values: tuple[float, ...]) -> str:
            return f"{mean:.2f} ({', '.join(f'{value:.2f}' for value in values)})"

        rows.append(
            (
                f"{figure.name} ({figure.unit}, {'higher' if figure.higher_is_better else 'lower'}"
                " is better)",
                runs(verdict.candidate_mean, figure.candidate),
                runs(verdict.baseline_mean, figure.baseline),
                f"{verdict.spread:.2f}",
                f"{verdict.margin:.2f}",
                f"{verdict.worse_by:+.2f}",
                "pass" if verdict.passed else "FAIL",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [title]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              for row in rows]  # fmt: skip
    return "\n".join(line.rstrip() for line in lines)


@dataclass(frozen=True)
class Baseline:
    """The baseline to compare against: a commit, why it was chosen, and its source tree."""

    commit: str  # the full hash
    reason: str  # "tag v1.2.0" or "gates.toml's pinned commit"
    source: Path  # a folder holding the commit's server/ and proto/


def _git(*arguments: str, root: Path = ROOT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(  # noqa: S603 - git with our own arguments, no shell
        ["git", "-C", str(root), *arguments],  # noqa: S607 - git from PATH is the point
        capture_output=True,
        check=False,
        timeout=60,
    )


def choose_baseline(
    pinned: str, *, tags: bool = True, root: Path = ROOT, checkouts: Path = CHECKOUTS
) -> Baseline | str:
    """The newest `v*` release tag (if `tags`), else the pinned commit, checked out.

    Returns a Baseline, or a sentence saying why none can be had (no git, a shallow clone
    without the commit): the caller falls back to the absolute floors then.
    """
    try:
        listed = _git("tag", "--list", "v*", "--sort=-v:refname", root=root)
    except (OSError, subprocess.SubprocessError) as error:
        return f"git cannot be run here ({error})"
    if listed.returncode != 0:
        return f"{root} is not a git repository ({listed.stderr.decode().strip()})"
    names = listed.stdout.decode().split() if tags else []
    wanted, reason = (names[0], f"tag {names[0]}") if names else (pinned, "the pinned commit")
    resolved = _git("rev-parse", "--verify", "--quiet", f"{wanted}^{{commit}}", root=root)
    if resolved.returncode != 0:
        shallow = _git("rev-parse", "--is-shallow-repository", root=root).stdout.strip()
        hint = " (this is a shallow clone)" if shallow == b"true" else ""
        return f"the baseline {wanted} ({reason}) is not in this repository{hint}"
    commit = resolved.stdout.decode().strip()
    source = checkouts / commit
    if not (source / ".complete").is_file():
        archive = _git("archive", "--format=tar", commit, *SOURCES, root=root)
        if archive.returncode != 0:
            return f"git archive of {commit} failed: {archive.stderr.decode().strip()}"
        source.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(source, filter="data")
        (source / ".complete").write_text(commit + "\n")
    return Baseline(commit=commit, reason=reason, source=source)
