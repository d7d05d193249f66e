"""Settings: nested sections, one flat name per setting for flags, variables, keywords and TOML."""

from __future__ import annotations

import argparse
import re
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from mozart_server.cli import add_arguments, main
from mozart_server.settings import (
    CONFIG_FILE_VARIABLE,
    EngineChoice,
    ServerSettings,
    flat_fields,
)


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


def _from_flags(*flags: str) -> ServerSettings:
    """Settings from `mozart serve` flags, parsed as the CLI parses them."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(list(flags))
    given = {name: value for name in flat_fields() if (value := getattr(args, name)) is not None}
    return ServerSettings(**given)


def test_the_engine_choice_comes_from_a_flag_or_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServerSettings().engine.engine is EngineChoice.AUTO
    settings = _from_flags("--engine", "int8", "--model-engines", "tiny=fp32")
    assert settings.engine.engine is EngineChoice.INT8
    assert settings.engine.choice_for("tiny") is EngineChoice.FP32
    assert settings.engine.choice_for("composer-cnn") is EngineChoice.INT8
    monkeypatch.setenv("MOZART_ENGINE", "fp32")
    monkeypatch.setenv("MOZART_MODEL_ENGINES", " a=int8, b=fp32 ,c=tensorrt")
    settings = ServerSettings()
    assert settings.engine.engine is EngineChoice.FP32
    assert settings.engine.model_engines == {
        "a": EngineChoice.INT8, "b": EngineChoice.FP32, "c": EngineChoice.TENSORRT
    }  # fmt: skip
    assert _from_flags("--engine", "auto").engine.engine is EngineChoice.AUTO  # flag over variable


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"engine": "turbo"}, r"engine\.engine\n.*'auto', 'fp32', 'int8' or 'tensorrt'"),
        ({"model_engines": "a"}, r"engine\.model_engines\n.*name=value pairs.*got 'a'"),
        ({"model_engines": "=int8"}, r"engine\.model_engines\n.*got '=int8'"),
        ({"model_engines": "a=turbo"}, r"engine\.model_engines\.a\n.*'auto', 'fp32', 'int8'"),
    ],
    ids=["choice", "pair", "no-name", "pair-choice"],
)
def test_a_bad_engine_choice_or_pair_is_named(values: dict[str, str], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        ServerSettings(**values)


def test_the_cli_refuses_a_bad_engine_choice_with_exit_code_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--engine", "turbo"]) == 2
    error = capsys.readouterr().err
    assert "invalid setting engine.engine" in error
    assert "'auto', 'fp32', 'int8' or 'tensorrt'" in error


def test_a_toml_engine_table_holds_the_choice_beside_the_engine_sections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "mozart.toml"
    config.write_text(
        '[engine]\nengine = "int8"\nmodel_engines = { tiny = "fp32" }\n'
        "[engine.onnx]\ninstances = 2\n[engine.tensorrt]\ntensorrt_instances = 3\n"
    )
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(config))
    settings = ServerSettings()
    assert settings.engine.engine is EngineChoice.INT8
    assert settings.engine.model_engines == {"tiny": EngineChoice.FP32}
    assert settings.engine.onnx.instances == 2
    assert settings.engine.tensorrt.tensorrt_instances == 3
    # Flat names in the file, and a variable over the file's table.
    config.write_text('engine = "fp32"\ninstances = 4\ncuda_device = 1\n')
    assert ServerSettings().engine.engine is EngineChoice.FP32
    assert ServerSettings().engine.tensorrt.cuda_device == 1
    monkeypatch.setenv("MOZART_ENGINE", "tensorrt")
    assert ServerSettings().engine.engine is EngineChoice.TENSORRT
    assert ServerSettings().engine.onnx.instances == 4


def test_model_engines_as_a_mapping_under_its_flat_name() -> None:
    settings = ServerSettings(model_engines={"tiny": "int8"})
    assert settings.engine.model_engines == {"tiny": EngineChoice.INT8}


def _documented_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return ",".join(f"{key}={choice}" for key, choice in value.items())
    return str(value)


def test_the_settings_table_in_docs_server_md_is_the_settings() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "server.md").read_text()
    row = r"^\| `([a-z_.]+)` \| `MOZART_([A-Z0-9_]+)` \| `(--[a-z0-9-]+)` \| `([^`]*)` \| (.+) \|$"
    table = {
        variable.lower(): (section, flag, default, meaning)
        for section, variable, flag, default, meaning in re.findall(row, docs, re.MULTILINE)
    }
    settings = {
        name: (
            ".".join(path),
            "--" + name.replace("_", "-"),
            _documented_default(field.get_default(call_default_factory=True)),
            field.description,
        )
        for name, (path, field) in flat_fields().items()
    }
    assert table == settings
