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


# Training, optimizing and the benchmark smoke run hold a worker for minutes per file: under
# `--dist loadfile`, a long file handed out last leaves the other worker idle at the end.
SLOW_FOLDERS_FIRST = ("tests/trainer/", "tests/optimize/", "tests/benchmarks/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Runs the slow folders' files first (a stable sort: the order inside stays)."""
    items.sort(key=lambda item: not item.nodeid.startswith(SLOW_FOLDERS_FIRST))
