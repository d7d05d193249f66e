"""Fixtures every test folder can use: a test model repository and a real server on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.models import build_test_model
from tests.support.server import InProcessServer, running_server


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding the tiny test model `tiny` version 1 (16 kHz, 0.5 s)."""
    repository = tmp_path_factory.mktemp("models")
    build_test_model(repository)
    return repository


@pytest.fixture(scope="module")
def server(model_repository: Path) -> Iterator[InProcessServer]:
    """A real server on 127.0.0.1:0 serving `model_repository`, shared by a test module."""
    with running_server(model_repository) as running:
        yield running


# Training, optimizing, the benchmark smoke run and the longest server files hold a worker
# for minutes per file: under `--dist loadfile`, a long file handed out last leaves the other
# worker idle at the end (a fresh clone's --durations: the drift reference 219 s, the
# lifecycle stress 61 s, the chunking test 41 s).
SLOW_FOLDERS_FIRST = (
    "tests/server/test_drift_statistics.py",
    "tests/server/test_lifecycle_stress.py",
    "tests/server/test_streaming.py",
    "tests/trainer/",
    "tests/optimize/",
    "tests/benchmarks/",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Runs the slow files first, in SLOW_FOLDERS_FIRST's order (a stable sort: the order
    inside each stays)."""

    def rank(item: pytest.Item) -> int:
        for index, prefix in enumerate(SLOW_FOLDERS_FIRST):
            if item.nodeid.startswith(prefix):
                return index
        return len(SLOW_FOLDERS_FIRST)

    items.sort(key=rank)
