"""Which engines a run measures (`--engines fp32,int8`), each checked before any load runs.

An engine here is a value of the server's `engine` setting. The runner gives it to the
ceiling and to the server alike, so both build the same artifact through the same
EngineFactory; a choice the model cannot serve on this machine stops the run at once with
the factory's own message, not after minutes of load against the other engines.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.ceiling import find_version
from mozart_server.engines import EngineFactory
from mozart_server.engines.artifacts import Artifact
from mozart_server.models.manifest import read_manifest
from mozart_server.settings import EngineChoice, ServerSettings


@dataclass(frozen=True)
class EngineUnderTest:
    """One engine a run measures: the server settings that select it and what it serves."""

    choice: str  # the model's `engine` setting: auto, fp32, int8 or tensorrt
    overrides: dict[str, str]  # server settings by name, for the server and the ceiling
    settings: ServerSettings
    artifact: Artifact  # what the factory picks for the model with these settings


def parse_engines(text: str) -> tuple[EngineChoice, ...]:
    """Reads `--engines`: engine choices separated by commas, in order, each once.

    Raises:
        argparse.ArgumentTypeError: an empty item, an unknown choice or one named twice.
    """
    names = [name.strip() for name in text.split(",")]
    valid = ", ".join(choice.value for choice in EngineChoice)
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected engines separated by commas, got {text!r}")
    unknown = [name for name in names if name not in {choice.value for choice in EngineChoice}]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown engine {unknown[0]!r}: choose from {valid}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"an engine is named twice in {text!r}")
    return tuple(EngineChoice(name) for name in names)


def engines_under_test(
    model_repository: Path,
    model: str,
    overrides: Mapping[str, str],
    engines: Sequence[EngineChoice] | None,
) -> tuple[EngineUnderTest, ...]:
    """The engines a run measures: each of `engines`, or the configured one when None.

    Raises:
        ValueError: `--engines` and the `engine` or `model_engines` settings disagree, or a
            setting is invalid.
        LookupError: the repository has no such model.
        ModelLoadError: an engine has no artifact of this model that runs here.
    """
    if engines is None:
        selections = [dict(overrides)]
    elif "engine" in overrides:
        raise ValueError("--engines replaces --set engine=...: give one or the other")
    else:
        selections = [{**overrides, "engine": choice.value} for choice in engines]
    chosen = []
    for selection in selections:
        settings = ServerSettings(model_repository=model_repository, **selection)
        choice = settings.engine.choice_for(model)
        if "engine" in selection and choice.value != selection["engine"]:
            raise ValueError(
                f"model_engines sets {model}={choice.value}, which overrides "
                f"--engines {selection['engine']}: leave {model} out of model_engines"
            )
        version = find_version(settings, model)
        manifest = read_manifest(version)
        artifact = EngineFactory(settings.engine).choose(
            manifest.name, version.path, manifest.artifacts
        )
        chosen.append(EngineUnderTest(choice.value, selection, settings, artifact))
    return tuple(chosen)
