"""A session with Triton's own Python client (`tritonclient[grpc]`), run in its own process.

tritonclient registers its compiled copy of Triton's protos (package `inference`)
in protobuf's default descriptor pool, and so does `mozart_proto.inference`: the
two cannot be imported into one interpreter. The tests therefore run this
script in a child process that imports nothing of Mozart, the way a Triton user
would, and read its JSON report.

Usage: python tritonclient_session.py HOST:PORT WINDOWS.npy [--transcript]
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

MODEL = "tiny"


def _infer(
    client: Any, waveforms: np.ndarray, outputs: tuple[str | tuple[str, int], ...], **kwargs: Any
) -> Any:
    """Infers `outputs`: a name, or (name, class_count) for Triton's classification extension."""
    tensor = triton.InferInput("waveform", list(waveforms.shape), "FP32")
    tensor.set_data_from_numpy(waveforms.astype(np.float32))
    requested = [
        triton.InferRequestedOutput(*((output,) if isinstance(output, str) else output))
        for output in outputs
    ]
    return client.infer(MODEL, [tensor], outputs=requested, client_timeout=30, **kwargs)


def _strings(result: Any, name: str) -> list[list[str]]:
    return [[item.decode() for item in row] for row in result.as_numpy(name)]


def _classification(client: Any, windows: np.ndarray) -> dict[str, Any]:
    """The classification extension, and the scores it was computed from."""
    top_probabilities = _infer(client, windows, (("probabilities", 2), "logits"))
    top_logits = _infer(client, windows, ("probabilities", ("logits", 2)))
    wide = _infer(client, windows[:1], (("probabilities", 99), ("embedding", 3)))
    return {
        "outputs": [
            {"name": o.name, "datatype": o.datatype, "shape": [int(d) for d in o.shape]}
            for o in top_probabilities.get_response().outputs
        ],
        "probabilities": top_logits.as_numpy("probabilities").tolist(),
        "logits": top_probabilities.as_numpy("logits").tolist(),
        "top_probabilities": _strings(top_probabilities, "probabilities"),
        "top_logits": _strings(top_logits, "logits"),
        "wide_probabilities": _strings(wide, "probabilities"),
        "embedding_classes": _strings(wide, "embedding"),
        "embedding": _infer(client, windows[:1], ("embedding",)).as_numpy("embedding").tolist(),
    }


def _error(call: Any) -> dict[str, str]:
    try:
        call()
    except InferenceServerException as error:
        return {"status": str(error.status()), "message": str(error.message())}
    return {"status": "OK", "message": ""}


def _bad_tensor(model: str, shape: list[int], datatype: str, dtype: Any) -> Any:
    def call(client: Any) -> Any:
        tensor = triton.InferInput("waveform", shape, datatype)
        tensor.set_data_from_numpy(np.zeros(shape, dtype))
        return client.infer(model, [tensor], client_timeout=30)

    return call


def run_session(address: str, windows: np.ndarray) -> dict[str, Any]:
    """Every call a Triton user would make, with what came back."""
    report: dict[str, Any] = {}
    with triton.InferenceServerClient(url=address) as client:
        report["server_live"] = client.is_server_live()
        report["server_ready"] = client.is_server_ready()
        report["model_ready"] = client.is_model_ready(MODEL)
        report["model_version_ready"] = client.is_model_ready(MODEL, "1")
        report["unknown_model_ready"] = client.is_model_ready("no-such-model")
        report["server_metadata"] = client.get_server_metadata(as_json=True)
        report["model_metadata"] = client.get_model_metadata(MODEL, as_json=True)
        report["model_config"] = client.get_model_config(MODEL, as_json=True)
        before = client.get_inference_statistics(MODEL, as_json=True)

        result = _infer(client, windows, ("probabilities", "embedding"), request_id="req-42")
        report["infer"] = {
            "id": result.get_response().id,
            "model_version": result.get_response().model_version,
            "probabilities": result.as_numpy("probabilities").tolist(),
            "embedding_shape": list(result.as_numpy("embedding").shape),
        }
        report["infer_one_by_one"] = [
            _infer(client, row[None], ("probabilities",)).as_numpy("probabilities")[0].tolist()
            for row in windows
        ]
        report["infer_all_outputs"] = sorted(
            output.name for output in _infer(client, windows[:1], ()).get_response().outputs
        )
        after = client.get_inference_statistics(MODEL, as_json=True)
        report["statistics_before"] = before
        report["statistics_after"] = after

        report["classification"] = _classification(client, windows)
        report["classes_alone"] = _strings(
            _infer(client, windows, (("probabilities", 2),)), "probabilities"
        )
        limit = int(report["model_config"]["config"]["max_batch_size"])
        before_refusal = client.get_inference_statistics(MODEL, as_json=True)
        too_many = np.zeros((limit + 1, windows.shape[1]), np.float32)
        report["over_max_batch_size"] = _error(lambda: _infer(client, too_many, ()))
        report["at_max_batch_size"] = list(
            _infer(client, too_many[:limit], ("probabilities",)).as_numpy("probabilities").shape
        )
        report["statistics_around_refusal"] = [
            before_refusal,
            client.get_inference_statistics(MODEL, as_json=True),
        ]

        window = windows.shape[1]
        cases = {
            "unknown_model": _bad_tensor("no-such-model", [1, window], "FP32", np.float32),
            "wrong_window": _bad_tensor(MODEL, [1, window - 1], "FP32", np.float32),
            "no_batch_axis": _bad_tensor(MODEL, [window], "FP32", np.float32),
            "fp64": _bad_tensor(MODEL, [1, window], "FP64", np.float64),
            "unknown_output": lambda c: _infer(c, windows[:1], ("logits_of_doom",)),
            "negative_class_count": lambda c: _infer(c, windows[:1], (("probabilities", -1),)),
            "output_twice": lambda c: _infer(c, windows[:1], ("logits", ("logits", 2))),
        }
        report["errors"] = {name: _error(lambda f=f: f(client)) for name, f in cases.items()}
        report["ready_after_errors"] = client.is_server_ready()
    return report


def _transcript(report: dict[str, Any]) -> str:
    lines = []
    for key, value in report.items():
        text = json.dumps(value)
        lines.append(f"{key}: {text if len(text) < 400 else text[:400] + ' ...'}")
    return "\n".join(lines)


if __name__ == "__main__":
    session = run_session(sys.argv[1], np.load(sys.argv[2]))
    print(_transcript(session) if "--transcript" in sys.argv else json.dumps(session))
