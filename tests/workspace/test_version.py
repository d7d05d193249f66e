"""One version for every distribution: VERSION at the root, read by each pyproject.toml.

Each distribution's folder holds VERSION as a link to ../VERSION, so the file is inside
the project a build sees (its sdist carries a copy; `make dists` builds every sdist and
its wheel from the sdist alone) and there is still one file to change.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import grpc
import pytest
from packaging.version import Version

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from tests.support.server import InProcessServer

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = {
    "proto": "mozart-proto",
    "clients": "mozart-client",
    "server": "mozart-server",
    "trainer": "mozart-trainer",
    "optimize": "mozart-optimize",
}


def _the_version() -> str:
    return (ROOT / "VERSION").read_text().strip()


def test_the_version_file_holds_one_pep_440_version() -> None:
    text = (ROOT / "VERSION").read_text()
    assert text == f"{_the_version()}\n", "VERSION is one line"
    assert str(Version(_the_version())) == _the_version(), "VERSION is in normal form"


@pytest.mark.parametrize("folder", sorted(DISTRIBUTIONS))
def test_each_distribution_reads_the_root_version(folder: str) -> None:
    project = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())
    assert "version" not in project["project"], f"{folder}/pyproject.toml writes a version"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"file": "VERSION"}
    link = ROOT / folder / "VERSION"
    assert link.is_symlink(), f"{folder}/VERSION must link to ../VERSION, not copy it"
    assert link.resolve() == (ROOT / "VERSION").resolve()


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS.values()))
def test_the_installed_distributions_carry_the_version(distribution: str) -> None:
    assert version(distribution) == _the_version(), (
        f"{distribution} was installed at another version: run make venv"
    )


def test_the_server_reports_the_version_in_server_metadata_and_a_metric(
    server: InProcessServer,
) -> None:
    expected = _the_version()
    with grpc.insecure_channel(server.address) as channel:
        metadata = v2_grpc.GRPCInferenceServiceStub(channel).ServerMetadata(
            v2.ServerMetadataRequest(), timeout=10
        )
    assert metadata.version == expected
    assert server.metric("mozart_build_info", version=expected) == 1
