"""`mozart models rollout status|set|clear` and the SDK's rollout methods, on a real server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mozart_client import AsyncClient, Client
from mozart_client.errors import InvalidInputError, NotFoundError, ServerError
from mozart_client.results import RolloutState
from tests.client.test_cli import mozart
from tests.support.models import build_test_model
from tests.support.rollout import build_candidate, clip
from tests.support.server import running_server


def test_the_cli_sets_shows_and_clears_a_rollout_and_shows_a_rollback(tmp_path: Path) -> None:
    build_test_model(tmp_path, version="1")
    build_candidate(tmp_path, "tiny", "2", nan_above=0.9)
    with running_server(tmp_path, latest_versions=1) as server:
        address = ("--server", server.address)
        none = mozart("models", "rollout", "status", "tiny", *address)
        assert none.returncode == 0, none.stderr
        assert "state:    NONE" in none.stdout

        set_ = mozart("models", "rollout", "set", "tiny", "--weights", "1=50,2=50",
                      "--max-error-ratio", "0.2", "--min-samples", "5", "--window-size", "20",
                      *address)  # fmt: skip
        assert set_.returncode == 0, set_.stderr
        assert "weights:  1=50, 2=50" in set_.stdout

        with Client(server.address) as client:
            loud = clip(0.5, peak=0.95)
            for _ in range(200):
                try:
                    client.classify(loud, sample_rate_hz=16_000, encoding="pcm_s16le")
                except ServerError:  # the candidate's own INTERNAL errors until the rollback
                    continue
                if client.rollout_status("tiny").state is RolloutState.ROLLED_BACK:
                    break
            status = client.rollout_status("tiny")
        assert status.state is RolloutState.ROLLED_BACK
        assert status.weights == {"1": 100, "2": 0}

        shown = mozart("models", "rollout", "status", "tiny", *address)
        assert shown.returncode == 0, shown.stderr
        print(shown.stdout)
        assert "state:    ROLLED_BACK" in shown.stdout
        assert "last:     rolled_back version 2" in shown.stdout
        assert "error_ratio=1" in shown.stdout

        as_json = json.loads(
            mozart("models", "rollout", "status", "tiny", *address, "--json").stdout
        )
        assert as_json["state"] == "ROLLED_BACK"
        assert as_json["last_event"]["figures"]["samples"] == 5

        bad = mozart("models", "rollout", "set", "tiny", "--weights", "1=50,2=40", *address)
        assert bad.returncode == 5  # INVALID_ARGUMENT: the input
        assert "sum to 100" in bad.stderr
        missing = mozart("models", "rollout", "status", "nosuch", *address)
        assert missing.returncode == 6
        usage = mozart("models", "rollout", "set", "tiny", *address)
        assert usage.returncode == 2
        assert "--weights" in usage.stderr

        cleared = mozart("models", "rollout", "clear", "tiny", *address)
        assert cleared.returncode == 0, cleared.stderr
        assert "state:    NONE" in cleared.stdout


def test_the_sdk_refuses_bad_rollouts_with_typed_errors(tmp_path: Path) -> None:
    build_test_model(tmp_path, version="1")
    build_test_model(tmp_path, version="2", seed=2)
    with running_server(tmp_path) as server, Client(server.address) as client:
        status = client.set_rollout("tiny", {"1": 90, "2": 10}, min_samples=50)
        assert status.state is RolloutState.ACTIVE
        assert status.weights == {"1": 90, "2": 10}
        assert status.baseline == "1"
        with pytest.raises(InvalidInputError, match="does not have"):
            client.set_rollout("tiny", {"1": 90, "9": 10})
        with pytest.raises(NotFoundError):
            client.rollout_status("nosuch")
        with pytest.raises(InvalidInputError):
            client.rollout_status("")
        assert client.set_rollout("tiny", None).state is RolloutState.NONE


def test_the_async_client_sets_and_reads_a_rollout(tmp_path: Path) -> None:
    build_test_model(tmp_path, version="1")
    build_test_model(tmp_path, version="2", seed=2)

    async def scenario(address: str) -> None:
        async with AsyncClient(address) as client:
            status = await client.set_rollout("tiny", {"1": 0, "2": 100}, shadow="")
            assert status.weights == {"1": 0, "2": 100}
            assert (await client.rollout_status("tiny")).state is RolloutState.ACTIVE
            with pytest.raises(InvalidInputError, match="sum to 100"):
                await client.set_rollout("tiny", {"1": 1})
            assert (await client.set_rollout("tiny", None)).state is RolloutState.NONE

    with running_server(tmp_path) as server:
        asyncio.run(scenario(server.address))
