"""Triton's model-repository calls with `tritonclient[grpc]`, run in their own process.

Like tritonclient_session.py, this imports nothing of Mozart (tritonclient's
compiled protos clash with ours in one interpreter) and prints a JSON report.
`explicit` walks index -> unload -> load against a server in explicit mode;
`none` tries load and unload against a server that may not change its models.

Usage: python tritonclient_repository.py HOST:PORT WINDOWS.npy explicit|none
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

MODEL = "tiny"
TIMEOUT_S = 30


def _outcome(call: Callable[[], Any]) -> dict[str, str]:
    try:
        call()
    except InferenceServerException as error:
        return {"status": str(error.status()), "message": str(error.message())}
    return {"status": "OK", "message": ""}


def _infer(client: Any, windows: np.ndarray) -> Any:
    tensor = triton.InferInput("waveform", list(windows.shape), "FP32")
    tensor.set_data_from_numpy(windows.astype(np.float32))
    outputs = [triton.InferRequestedOutput("probabilities")]
    return client.infer(MODEL, [tensor], outputs=outputs, client_timeout=TIMEOUT_S)


def _answer(client: Any, windows: np.ndarray) -> dict[str, Any]:
    result = _infer(client, windows)
    probabilities = result.as_numpy("probabilities")
    return {
        "model_version": result.get_response().model_version,
        "shape": list(probabilities.shape),
        "probabilities": probabilities.tolist(),
    }


def _index(client: Any) -> Any:
    return client.get_model_repository_index(as_json=True, client_timeout=TIMEOUT_S)


def explicit_session(client: Any, windows: np.ndarray) -> dict[str, Any]:
    """Index, unload, load, with readiness and inference between the steps."""
    report: dict[str, Any] = {"index": _index(client)}
    report["ready_before"] = client.is_model_ready(MODEL, client_timeout=TIMEOUT_S)
    report["infer_before"] = _answer(client, windows)

    report["unload"] = _outcome(lambda: client.unload_model(MODEL, client_timeout=TIMEOUT_S))
    report["ready_after_unload"] = client.is_model_ready(MODEL, client_timeout=TIMEOUT_S)
    report["index_after_unload"] = _index(client)
    report["infer_after_unload"] = _outcome(lambda: _infer(client, windows))

    report["load"] = _outcome(lambda: client.load_model(MODEL, client_timeout=TIMEOUT_S))
    report["ready_after_load"] = client.is_model_ready(MODEL, client_timeout=TIMEOUT_S)
    report["infer_after_load"] = _answer(client, windows)
    report["index_after_load"] = _index(client)

    report["load_with_config"] = _outcome(
        lambda: client.load_model(MODEL, config="{}", client_timeout=TIMEOUT_S)
    )
    report["load_unknown"] = _outcome(
        lambda: client.load_model("no-such-model", client_timeout=TIMEOUT_S)
    )
    report["server_ready_at_end"] = client.is_server_ready(client_timeout=TIMEOUT_S)
    return report


def none_session(client: Any, windows: np.ndarray) -> dict[str, Any]:
    """Load and unload on a server whose models may not change; it keeps serving."""
    return {
        "load": _outcome(lambda: client.load_model(MODEL, client_timeout=TIMEOUT_S)),
        "unload": _outcome(lambda: client.unload_model(MODEL, client_timeout=TIMEOUT_S)),
        "index": _index(client),
        "ready_after": client.is_model_ready(MODEL, client_timeout=TIMEOUT_S),
        "infer_after": _answer(client, windows),
    }


if __name__ == "__main__":
    address, windows_path, mode = sys.argv[1:4]
    session = explicit_session if mode == "explicit" else none_session
    with triton.InferenceServerClient(url=address) as triton_client:
        print(json.dumps(session(triton_client, np.load(windows_path))))
