"""Settings: nested sections, one flat name per setting for flags, variables, keywords and TOML."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from mozart_server.settings import CONFIG_FILE_VARIABLE, ServerSettings, flat_fields


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os  # noqa: PLC0415

    for name in [name for name in os.environ if name.startswith("MOZART_")]:
        monkeypatch.delenv(name)


def _leaf_count(model: type[BaseModel]) -> int:
    count = 0
    for field in model.model_fields.values():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            count += _leaf_count(annotation)
        else:
            count += 1
    return count


def test_every_setting_has_one_unique_flat_name_and_a_description() -> None:
    fields = flat_fields()
    assert len(fields) == _leaf_count(ServerSettings)  # no two sections share a name
    assert all(field.description for _, field in fields.values())
    assert fields["max_batch_size"][0] == ("batching",)
    assert fields["instances"][0] == ("engine", "onnx")


def test_keywords_beat_variables_which_beat_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "mozart.toml"
    config.write_text(
        'model_control_mode = "poll"\nmax_batch_size = 4\n'
        "[batching]\nmax_queue_delay_us = 300\n[streams]\ndefault_top_k = 2\n"
    )
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(config))
    monkeypatch.setenv("MOZART_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("MOZART_PREFERRED_BATCH_SIZES", "1,8")
    monkeypatch.setenv("MOZART_DEFAULT_TOP_K", "3")
    settings = ServerSettings(default_top_k=1)
    assert settings.repository.model_control_mode == "poll"  # file
    assert settings.batching.max_queue_delay_us == 300  # file, as a section
    assert settings.batching.max_batch_size == 8  # variable over file
    assert settings.batching.preferred_batch_sizes == [1, 8]
    assert settings.streams.default_top_k == 1  # keyword over variable and file


def test_bad_and_unknown_settings_are_named() -> None:
    with pytest.raises(ValidationError, match=r"batching\.max_batch_size"):
        ServerSettings(max_batch_size=0)
    with pytest.raises(ValidationError, match="repository_pol_s"):
        ServerSettings(repository_pol_s=1)
    with pytest.raises(ValidationError, match="version_policy=specific needs specific_versions"):
        ServerSettings(version_policy="specific")
    with pytest.raises(ValidationError, match="model_control_mode"):
        ServerSettings(model_control_mode="sometimes")
