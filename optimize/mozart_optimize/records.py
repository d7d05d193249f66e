"""Writing what `mozart optimize` admitted: model.json's `artifacts` list and the card's section.

Both files are rewritten whole through a temporary file and a rename, so a server
polling the repository never reads half of one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mozart_server.engines.artifacts import Artifact

CARD_FILE = "MODEL_CARD.md"
CARD_BEGIN = "<!-- mozart optimize: begin -->"
CARD_END = "<!-- mozart optimize: end -->"


def write_atomically(path: Path, text: str) -> None:
    """Replaces `path` with `text` through a temporary file in the same folder."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.chmod(temporary, mode)  # mkstemp makes it owner-only
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def update_manifest(
    manifest_path: Path, admitted: Iterable[Mapping[str, Any]], dropped: Iterable[str]
) -> list[dict[str, Any]]:
    """Lists the admitted artifacts in model.json, replacing older records of the same file
    and removing those of `dropped` files (re-run and refused). Returns the new list.

    Raises:
        pydantic.ValidationError: a record the server would not accept.
    """
    manifest = json.loads(manifest_path.read_text())
    new = [dict(record) for record in admitted]
    for record in new:
        Artifact.model_validate(record)  # the server's own schema
    replaced = {record["file"] for record in new} | set(dropped)
    kept = [record for record in manifest.get("artifacts", []) if record["file"] not in replaced]
    artifacts: list[dict[str, Any]] = kept + new
    manifest["artifacts"] = artifacts
    write_atomically(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return artifacts


def card_section(artifacts: Iterable[Mapping[str, Any]]) -> str:
    """The card's "Optimized artifacts" section, from the model.json records."""
    lines = [
        CARD_BEGIN,
        "## Optimized artifacts",
        "",
        "Written by `mozart optimize` and admitted by its gates (docs/optimize.md). Ratios are",
        "to `model.onnx` (FP32) in the same run on the same machine; above 1 is faster.",
        "",
        "| file | precision | provider | agreement with FP32 | accuracy drop (points) "
        "| batch-1 latency ratio | best throughput ratio | size |",
        "|---|---|---|---|---|---|---|---|",
    ]
    listed = False
    notes: list[str] = []
    for record in artifacts:
        listed = True
        splits = record.get("accuracy", {}).get("splits", {})
        agreement = ", ".join(f"{name} {s['agreement']:.2%}" for name, s in splits.items())
        drop = ", ".join(f"{name} {s['accuracy_drop_points']:.2f}" for name, s in splits.items())
        speed = record.get("speed", {})
        lines.append(
            f"| `{record['file']}` | {record['precision']} | {record['provider']} | {agreement} "
            f"| {drop} | {speed.get('batch1_latency_ratio', 1.0):.2f} "
            f"| {speed.get('best_throughput_ratio', 1.0):.2f} "
            f"(batch {speed.get('best_batch_size', '-')}) "
            f"| {record.get('size_bytes', 0) / 1e6:.2f} MB |"
        )
        quantization = record.get("quantization")
        if quantization:
            calibration = quantization["calibration"]
            notes.append(
                f"`{record['file']}`: static {quantization['format']}, weights "
                f"{quantization['weights']}, activations {quantization['activations']} over "
                f"{calibration['windows']} windows of `{calibration['split']}` (seed "
                f"{calibration['seed']}); kept in FP32: the log-mel front end and "
                f"`{quantization['kept_fp32'][-1]}`."
            )
    if not listed:
        lines.append("| none admitted | | | | | | | |")
    lines += ["", *notes] if notes else []
    lines.append(CARD_END)
    return "\n".join(lines)


def update_card(card_path: Path, artifacts: Iterable[Mapping[str, Any]]) -> bool:
    """Writes the section into the model card, replacing an earlier one; False if no card."""
    if not card_path.is_file():
        return False
    text = card_path.read_text()
    section = card_section(artifacts)
    pattern = re.compile(re.escape(CARD_BEGIN) + ".*?" + re.escape(CARD_END), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    write_atomically(card_path, text)
    return True
