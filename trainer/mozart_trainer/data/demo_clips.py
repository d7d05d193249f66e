"""Cuts the demo clips (`demo/clips/`) from a built corpus's test split, one per composer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import soundfile

from mozart_trainer.data.corpus import REPORT_NAME
from mozart_trainer.data.manifest import load_manifest

#: Composers shown in the demo, in this order.
DEMO_CLASSES = ("mozart", "bach", "beethoven", "palestrina", "monteverdi")
DEMO_CLIP_S = 6.0


@dataclass(frozen=True)
class DemoClip:
    """One demo clip and where it came from."""

    file: str
    label: str
    work: str
    score: str
    instruments: tuple[str, ...]


def write_demo_clips(corpus_root: Path, out: Path) -> list[DemoClip]:
    """Writes one ``DEMO_CLIP_S`` clip per demo composer from the test split, plus README.md.

    The clip is the opening of the composer's first test work (by id), 16 kHz
    mono FLAC, so the demo streams music the default model never trained on.
    """
    manifest = load_manifest(corpus_root)
    report = json.loads((corpus_root / REPORT_NAME).read_text())
    out.mkdir(parents=True, exist_ok=True)
    clips: list[DemoClip] = []
    for label in DEMO_CLASSES:
        candidates = sorted(
            (e for e in manifest.split("test") if e.label == label), key=lambda e: e.path
        )
        if not candidates:
            continue
        entry = candidates[0]
        audio, rate = soundfile.read(str(corpus_root / entry.path), dtype="float32")
        name = f"{entry.group}.flac"
        soundfile.write(out / name, audio[: round(DEMO_CLIP_S * rate)], rate, "PCM_16")
        work = report["works"][entry.group]
        clips.append(
            DemoClip(name, label, entry.group, work["score"], tuple(work["instruments"]["test"]))
        )
    _write_readme(out, clips, manifest.dataset_digest)
    return clips


def _write_readme(out: Path, clips: list[DemoClip], digest: str) -> None:
    rows = "\n".join(
        f"| `{c.file}` | {c.label} | music21 `{c.score}` | {', '.join(c.instruments)} |"
        for c in clips
    )
    (out / "README.md").write_text(
        f"""# Demo clips

Short excerpts ({DEMO_CLIP_S:.0f} s, 16 kHz mono FLAC) of real scores from music21's corpus,
rendered with FluidSynth and the TimGM6mb soundfont by `mozart data build-corpus`. Each
comes from the TEST split of the default corpus (dataset digest `{digest[:16]}`), so
the default model never heard these works in training. Instruments are one per part,
drawn from the corpus's training palette, the same for every composer (see
docs/data.md). `make demo` streams them.

| file | composer | work | instruments (one per part) |
| --- | --- | --- | --- |
{rows}

Regenerate (from the repository root):

```bash
mozart data build-corpus          # prints the corpus root, data/corpus/<config digest>
mozart data demo-clips data/corpus/<digest> --out demo/clips
```
"""
    )
