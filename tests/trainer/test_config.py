"""Config files load, validate, and take command-line overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from mozart_trainer.config import load_config
from mozart_trainer.paths import project_root

CONFIGS = project_root() / "trainer" / "configs"


@pytest.mark.parametrize("name", ["default.yaml", "smoke.yaml"])
def test_shipped_configs_validate(name: str) -> None:
    config = load_config(CONFIGS / name)
    assert config.data.window_samples == 48_000
    assert config.data.sample_rate_hz == 16_000


def test_overrides_reach_nested_fields_and_parse_as_yaml() -> None:
    config = load_config(
        CONFIGS / "default.yaml",
        ["optim.epochs=3", "model.channels=[4, 8]", "data.root=/tmp/x", "export_dir=null"],
    )
    assert config.optim.epochs == 3
    assert config.model.channels == (4, 8)
    assert config.data.root == Path("/tmp/x")
    assert config.export_dir is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.epoch=3", "epoch"),
        ("optim.epochs=many", "epochs"),
        ("no-equals-sign", "key=value"),
    ],
)
def test_bad_overrides_name_the_problem(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(CONFIGS / "default.yaml", [override])
