"""The DevOps guide's environment names, read as aliases of `MOZART_*` settings.

The guide's `.env` (docker/.env.example) names APP_ENV, LOG_LEVEL, API_PORT, MODEL_VERSION,
BATCH_SIZE, ENABLE_MONITORING and METRICS_ENDPOINT. Each one that means something here
stands for settings (table below); a `MOZART_*` variable of the same setting wins.
MAX_SEQUENCE_LENGTH has no meaning for fixed audio windows (model.json's window_samples
sets them) and is ignored. Documented in docker/README.md, "Configuration".

| variable | settings |
| --- | --- |
| APP_ENV | dev, staging or production; production: readiness=all (text logs for dev) |
| LOG_LEVEL | log_level |
| API_PORT | http_port (the HTTP API) |
| MODEL_VERSION | latest: version_policy=latest; a version: specific, specific_versions |
| BATCH_SIZE | max_batch_size |
| ENABLE_MONITORING | true; false is refused: /metrics is always served |
| METRICS_ENDPOINT | /metrics, the only path the server serves it on |
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

ENV_PREFIX = "MOZART_"
APP_ENVS = ("dev", "staging", "production")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
#: Guide variable -> the setting it stands for, where the value passes as it is.
_DIRECT = {"LOG_LEVEL": "log_level", "API_PORT": "http_port", "BATCH_SIZE": "max_batch_size"}


def _refuse(variable: str, value: str, message: str) -> ValidationError:
    error = PydanticCustomError("guide_variable", message)
    details: InitErrorDetails = {"type": error, "loc": (variable,), "input": value}
    return ValidationError.from_exception_data("ServerSettings", [details])


def alias_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """Flat setting values the guide's variables in `environ` stand for.

    A setting that a `MOZART_*` variable sets is left out. A value that cannot mean what
    the guide says raises a ValidationError naming the variable.
    """

    def unset(*names: str) -> bool:
        return not any(ENV_PREFIX + name.upper() in environ for name in names)

    values: dict[str, str] = {}
    for variable, setting in _DIRECT.items():
        if variable in environ and unset(setting):
            values[setting] = environ[variable]

    if "APP_ENV" in environ:
        app_env = environ["APP_ENV"].strip().lower()
        if app_env not in APP_ENVS:
            raise _refuse(
                "APP_ENV", environ["APP_ENV"], "APP_ENV must be dev, staging or production"
            )
        if app_env == "production" and unset("readiness"):
            values["readiness"] = "all"

    version = environ.get("MODEL_VERSION", "").strip()
    if version and unset("version_policy", "specific_versions"):
        if version.lower() == "latest":
            values["version_policy"] = "latest"
        else:
            values["version_policy"] = "specific"
            values["specific_versions"] = version

    if "ENABLE_MONITORING" in environ:
        enabled = environ["ENABLE_MONITORING"].strip().lower()
        if enabled not in _TRUE:
            reason = (
                "the server always serves Prometheus metrics on metrics_port"
                if enabled in _FALSE
                else "ENABLE_MONITORING must be true"
            )
            raise _refuse("ENABLE_MONITORING", environ["ENABLE_MONITORING"], reason)

    if "METRICS_ENDPOINT" in environ and environ["METRICS_ENDPOINT"].strip() != "/metrics":
        raise _refuse(
            "METRICS_ENDPOINT",
            environ["METRICS_ENDPOINT"],
            "the server serves its metrics at /metrics (on metrics_port); set METRICS_ENDPOINT "
            "to /metrics or leave it out",
        )
    return values
