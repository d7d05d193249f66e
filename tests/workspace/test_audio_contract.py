"""One list of audio containers (mozart_proto/v1/audio_formats.py), and everything that
names formats agrees with it: the proto enum and its comments, the server's encodings,
the SDK's names, the trainer's file suffixes, and the formats tables of the docs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import soundfile

from mozart_client import cli
from mozart_client.audio import ENCODINGS
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1.audio_formats import AUDIO_SUFFIXES, CONTAINER_NAMES, CONTAINERS
from mozart_server.api.v1.conversion import audio_format
from mozart_server.audio.decode import CONTAINER_ENCODINGS, Encoding

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto" / "mozart_proto" / "v1" / "audio_classifier.proto"
NOT_CONTAINERS = {"UNSPECIFIED", "PCM_S16LE", "PCM_F32LE", "AUTO"}
TABLE_HEADER = "| container | encoding | SDK name | file suffixes | holds |"


def _expected_rows() -> list[tuple[str, ...]]:
    return [
        (c.name, f"`AUDIO_ENCODING_{c.wire_name}`", f"`{c.key}`",
         ", ".join(f"`{s}`" for s in c.suffixes), c.holds)
        for c in CONTAINERS
    ]  # fmt: skip


def _doc_table(text: str) -> list[tuple[str, ...]]:
    lines = text.splitlines()
    start = lines.index(TABLE_HEADER)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(tuple(cell.strip() for cell in line.strip().strip("|").split("|")))
    return rows


def test_the_list_is_well_formed_and_libsndfile_reads_it() -> None:
    available = soundfile.available_formats()
    for container in CONTAINERS:
        assert set(container.libsndfile_formats) <= set(available), container.name
        assert all(s.startswith(".") and s == s.lower() for s in container.suffixes)
    assert len(set(AUDIO_SUFFIXES)) == len(AUDIO_SUFFIXES)
    assert len({c.key for c in CONTAINERS}) == len(CONTAINERS)
    formats = [f for c in CONTAINERS for f in c.libsndfile_formats]
    assert len(set(formats)) == len(formats)


def _proto_enum() -> list[tuple[str, str]]:
    """(value name without the prefix, its comment) of every AudioEncoding value."""
    body = re.search(r"enum AudioEncoding \{(.*?)\n\}", PROTO.read_text(), re.DOTALL)
    assert body is not None
    values, comment = [], []
    for raw_line in body[1].splitlines():
        line = raw_line.strip()
        if line.startswith("//"):
            comment.append(line.removeprefix("//").strip())
        elif line.startswith("AUDIO_ENCODING_"):
            name = line.split("=")[0].strip().removeprefix("AUDIO_ENCODING_")
            values.append((name, " ".join(comment)))
            comment = []
    return values


def test_the_proto_enum_has_one_value_per_container_and_says_its_suffixes() -> None:
    values = _proto_enum()
    containers = [(name, comment) for name, comment in values if name not in NOT_CONTAINERS]
    assert [name for name, _ in containers] == [c.wire_name for c in CONTAINERS]
    for (_, comment), container in zip(containers, CONTAINERS, strict=True):
        assert container.name in comment
        mentioned = re.findall(r"(\.[a-z0-9]+)\b", comment)
        assert [s for s in mentioned if s in AUDIO_SUFFIXES] == list(container.suffixes)


def test_the_server_decodes_every_container_under_its_wire_value() -> None:
    assert set(CONTAINER_ENCODINGS) == {Encoding(c.key) for c in CONTAINERS}
    for container in CONTAINERS:
        value = pb.AudioEncoding.Value(f"AUDIO_ENCODING_{container.wire_name}")
        message = pb.AudioFormat(encoding=value)  # type: ignore[arg-type]
        assert audio_format(message).encoding == Encoding(container.key)
    auto = audio_format(pb.AudioFormat(encoding=pb.AUDIO_ENCODING_AUTO))
    assert auto.encoding is Encoding.AUTO


def test_the_sdk_names_every_container() -> None:
    for container in CONTAINERS:
        value = pb.AudioEncoding.Value(f"AUDIO_ENCODING_{container.wire_name}")
        assert ENCODINGS[container.key] == value
    assert ENCODINGS["auto"] == pb.AUDIO_ENCODING_AUTO


def test_the_trainer_reads_exactly_the_containers_classify_takes() -> None:
    from mozart_trainer import corpus  # noqa: PLC0415 - the trainer, only for this test
    from mozart_trainer.data import manifest  # noqa: PLC0415

    assert manifest.AUDIO_SUFFIXES == AUDIO_SUFFIXES
    assert corpus.AUDIO_SUFFIXES == AUDIO_SUFFIXES


@pytest.mark.parametrize("doc", ["server.md", "cli.md", "sdk.md"])
def test_the_docs_formats_table_is_the_list(doc: str) -> None:
    rows = _doc_table((ROOT / "docs" / doc).read_text())
    expected = _expected_rows()
    assert rows == expected, (
        "docs/"
        + doc
        + " should hold:\n"
        + "\n".join("| " + " | ".join(row) + " |" for row in expected)
    )


def test_the_data_guide_lists_the_trainer_suffixes() -> None:
    text = (ROOT / "docs" / "data.md").read_text()
    sentence = re.search(r"Audio files are those whose names end in.*?Classify` takes", text,
                         re.DOTALL)  # fmt: skip
    assert sentence is not None
    assert tuple(re.findall(r"`(\.[a-z0-9]+)`", sentence[0])) == AUDIO_SUFFIXES


def test_the_cli_help_names_the_containers() -> None:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    assert f"classify audio files ({CONTAINER_NAMES})" in parser.format_help()
    assert CONTAINER_NAMES == "WAV, FLAC, Ogg, MP3, AIFF"
