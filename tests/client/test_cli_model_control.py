"""`mozart models status|load|reload|unload` against a real server, run as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.client.test_cli import mozart
from tests.support.lifecycle import wait_for
from tests.support.models import build_test_model
from tests.support.server import running_server


def test_models_commands_change_what_a_real_server_serves(tmp_path: Path) -> None:
    build_test_model(tmp_path, version="1")
    with running_server(tmp_path, model_control_mode="explicit") as server:
        address = ("--server", server.address)
        status = mozart("models", "status", *address)
        assert status.returncode == 0, status.stderr
        assert status.stdout.split()[:4] == ["MODEL", "VERSION", "STATE", "REASON"]
        assert status.stdout.splitlines()[1].split()[:3] == ["tiny", "1", "READY"]

        swaps = server.metric("mozart_model_swaps_total", model="tiny")
        reload = mozart("models", "reload", "tiny", *address, "--json")
        assert reload.returncode == 0, reload.stderr
        assert json.loads(reload.stdout)["versions"][0]["state"] == "READY"
        assert server.metric("mozart_model_swaps_total", model="tiny") == swaps + 1

        unload = mozart("models", "unload", "tiny", *address)
        assert unload.returncode == 0, unload.stderr
        # Answered at once: the version drains (UNLOADING) and then closes.
        assert unload.stdout.splitlines()[1].split()[2] in {"UNLOADING", "UNAVAILABLE"}
        assert wait_for(lambda: server.metric("mozart_engines_open") == 0)
        after = mozart("models", "status", "tiny", *address)
        assert after.stdout.splitlines()[1].split()[2:] == ["UNAVAILABLE", "unloaded"]

        again = mozart("models", "unload", "tiny", *address)
        assert again.returncode == 6  # not loaded
        load = mozart("models", "load", "tiny", *address)
        assert load.returncode == 0, load.stderr
        assert server.metric("mozart_model_loaded", model="tiny", version="1") == 1


def test_model_control_outside_explicit_mode_exits_11(server, tmp_path: Path) -> None:
    refused = mozart("models", "reload", "tiny", "--server", server.address)
    assert refused.returncode == 11
    assert "model_control_mode" in refused.stderr
