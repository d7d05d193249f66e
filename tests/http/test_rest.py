"""Mozart REST and the v2 REST endpoints over real HTTP (httpx), every error status."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from mozart_proto.v1 import audio_classifier_pb2 as pb
from tests.server.test_tls import Pki, pki  # noqa: F401 (the fixture)
from tests.support.audio import encode, music_clip
from tests.support.server import running_server

LABELS = ["baroque", "classical", "jazz", "romantic"]  # the tiny test model
WINDOW = 8_000


@pytest.fixture(scope="module")
def wav() -> bytes:
    return encode(music_clip(2.0), 16_000, pb.AUDIO_ENCODING_WAV)


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    return str(body["message"])


def test_classify_a_wav_body_answers_like_grpc(client: httpx.Client, wav: bytes) -> None:
    response = client.post(
        "/v1/models/tiny/classify", content=wav, headers={"content-type": "audio/wav"},
        params={"top_k": 2, "hop_ms": 500},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["labels"] == LABELS
    assert body["model_version"] == "1"
    assert len(body["windows"]) == 4  # 2 s, 0.5 s windows, 0.5 s hop
    assert [w["start_ms"] for w in body["windows"]] == [0, 500, 1000, 1500]
    assert all(len(w["top_k"]) == 2 for w in body["windows"])
    assert body["summary"]["window_count"] == 4
    assert body["summary"]["audio_duration_ms"] == 2000
    assert body["request_id"] == response.headers["x-request-id"]
    assert abs(sum(body["summary"]["scores"]) - 1.0) < 1e-4


def test_detection_multipart_and_raw_pcm_agree(client: httpx.Client, wav: bytes) -> None:
    detected = client.post("/v1/models/tiny/classify", content=wav).json()
    uploaded = client.post(
        "/v1/models/tiny/classify", files={"file": ("clip.wav", wav, "audio/wav")}
    ).json()
    pcm = encode(music_clip(2.0), 16_000, pb.AUDIO_ENCODING_PCM_S16LE)
    raw = client.post(
        "/v1/models/tiny/classify", content=pcm,
        params={"encoding": "pcm_s16le", "sample_rate_hz": 16_000, "channels": 1},
    ).json()  # fmt: skip
    scores = [np.array(r["summary"]["scores"]) for r in (detected, uploaded, raw)]
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-6)
    np.testing.assert_allclose(scores[0], scores[2], atol=1e-4)


def test_list_models(client: httpx.Client) -> None:
    models = client.get("/v1/models").json()["models"]
    assert [(m["name"], m["versions"], m["labels"]) for m in models] == [("tiny", ["1"], LABELS)]
    assert models[0]["window_ms"] == 500


def test_bad_input_is_400_with_the_error_shape(client: httpx.Client, wav: bytes) -> None:
    message = _error(
        client.post("/v1/models/tiny/classify", content=b"not audio"), 400, "INVALID_ARGUMENT"
    )
    assert "cannot be decoded" in message
    message = _error(
        client.post("/v1/models/tiny/classify", content=wav, params={"top_k": 9}),
        400, "INVALID_ARGUMENT",
    )  # fmt: skip
    assert "top_k" in message
    response = client.post("/v1/models/tiny/classify", content=wav, params={"top_k": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_ARGUMENT"
    message = _error(
        client.post("/v1/models/tiny/classify", content=wav, params={"encoding": "opus9"}),
        400, "INVALID_ARGUMENT",
    )  # fmt: skip
    assert "encoding" in message
    message = _error(
        client.post("/v1/models/tiny/classify", files={"other": ("a", b"x")}),
        400, "INVALID_ARGUMENT",
    )  # fmt: skip
    assert "file" in message


def test_unknown_model_and_route_are_404(client: httpx.Client, wav: bytes) -> None:
    message = _error(client.post("/v1/models/nope/classify", content=wav), 404, "NOT_FOUND")
    assert "nope" in message
    assert client.get("/v1/nothing").status_code == 404
    assert client.get("/v1/nothing").json()["error"]["code"] == "NOT_FOUND"
    assert client.get("/v2/models/nope").json() == {
        "error": "model 'nope' is not loaded (loaded: ['tiny'])"
    }


def test_a_request_id_is_kept(client: httpx.Client) -> None:
    response = client.get("/v1/models", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


def test_v2_endpoints(client: httpx.Client) -> None:
    assert client.get("/v2").json()["name"] == "mozart"
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2/models/tiny/ready").status_code == 200
    assert client.get("/v2/models/tiny/versions/1/ready").status_code == 200
    assert client.get("/v2/models/tiny/versions/7/ready").status_code == 400
    assert client.get("/v2/models/nope/ready").status_code == 400
    metadata = client.get("/v2/models/tiny/versions/1").json()
    assert metadata["inputs"] == [{"name": "waveform", "datatype": "FP32", "shape": [-1, WINDOW]}]
    config = client.get("/v2/models/tiny/config").json()
    assert config["name"] == "tiny"
    assert config["input"][0]["dims"] == [WINDOW]
    assert config["max_batch_size"] > 0
    stats = client.get("/v2/models/tiny/stats").json()["model_stats"]
    assert [(s["name"], s["version"]) for s in stats] == [("tiny", "1")]
    assert client.get("/v2/models/stats").json()["model_stats"][0]["name"] == "tiny"
    index = client.post("/v2/repository/index", json={}).json()
    assert index[0]["name"] == "tiny"
    assert index[0]["state"] == "READY"


def test_v2_infer_json_and_binary(client: httpx.Client) -> None:
    windows = np.stack([music_clip(0.5, seed=seed) for seed in range(2)])
    response = client.post("/v2/models/tiny/infer", json={
        "id": "r1",
        "inputs": [{"name": "waveform", "shape": [2, WINDOW], "datatype": "FP32",
                    "data": windows.tolist()}],
        "outputs": [{"name": "probabilities"}],
    })  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "r1"
    assert [o["name"] for o in body["outputs"]] == ["probabilities"]
    json_scores = np.array(body["outputs"][0]["data"]).reshape(2, 4)
    # The same windows as binary tensors, answered in binary.
    header = (
        b'{"inputs":[{"name":"waveform","shape":[2,8000],"datatype":"FP32",'
        b'"parameters":{"binary_data_size":64000}}],'
        b'"outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]}'
    )
    response = client.post(
        "/v2/models/tiny/infer",
        content=header + windows.astype("<f4").tobytes(),
        headers={"inference-header-content-length": str(len(header)),
                 "content-type": "application/octet-stream"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    size = int(response.headers["inference-header-content-length"])
    head = httpx.Response(200, content=response.content[:size]).json()
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 32
    binary_scores = np.frombuffer(response.content[size:], dtype="<f4").reshape(2, 4)
    np.testing.assert_allclose(binary_scores, json_scores, atol=1e-6)


def test_v2_errors_use_the_protocol_shape(client: httpx.Client) -> None:
    bad_shape = {"inputs": [{"name": "waveform", "shape": [1, 3], "datatype": "FP32",
                             "data": [0.0, 0.0, 0.0]}]}  # fmt: skip
    response = client.post("/v2/models/tiny/infer", json=bad_shape)
    assert response.status_code == 400
    assert "shape" in response.json()["error"]
    response = client.post("/v2/models/tiny/infer", content=b"{nope")
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]
    response = client.post(
        "/v2/models/tiny/infer", content=b"{}", headers={"inference-header-content-length": "99"}
    )
    assert response.status_code == 400
    # Model control is off (model_control_mode none): FAILED_PRECONDITION.
    response = client.post("/v2/repository/models/tiny/unload", json={})
    assert response.status_code == 409
    assert "error" in response.json()


def test_openapi_and_docs(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    assert "/v1/models/{name}/classify" in schema["paths"]
    assert {"ErrorBody", "ErrorDetail", "V2ErrorBody"} <= set(schema["components"]["schemas"])
    assert "/v2/models/{name}/infer" in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_auth_rate_limits_size_and_duration(model_repository: Path, wav: bytes) -> None:
    settings = {
        "auth_token": "s3cret", "client_requests_per_s": 1, "client_request_burst": 2,
        "max_message_bytes": 64 * 1024, "max_stream_duration_s": 1.0,
        "http_cors_origins": "http://page.example",
    }  # fmt: skip
    with (
        running_server(model_repository, **settings) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as client,
    ):
        _error(client.get("/v1/models"), 401, "UNAUTHENTICATED")
        preflight = client.options("/v1/models/tiny/classify", headers={
            "origin": "http://page.example", "access-control-request-method": "POST",
            "access-control-request-headers": "authorization",
        })  # fmt: skip
        assert preflight.headers["access-control-allow-origin"] == "http://page.example"
        other = client.get("/v2/health/live", headers={"origin": "http://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers
        response = client.get("/v2/models/tiny", headers={"authorization": "Bearer wrong"})
        assert response.status_code == 401
        assert response.json() == {"error": "the bearer token is wrong"}
        good = {"authorization": "Bearer s3cret"}
        too_long = client.post("/v1/models/tiny/classify", content=wav, headers=good)
        assert "max_stream_duration_s" in _error(too_long, 400, "OUT_OF_RANGE")
        big = client.post("/v1/models/tiny/classify", content=b"\0" * 70_000, headers=good)
        assert "max_message_bytes" in _error(big, 413, "RESOURCE_EXHAUSTED")
        limited = client.get("/v1/models", headers=good)
        assert "client_requests_per_s" in _error(limited, 429, "RESOURCE_EXHAUSTED")
        assert int(limited.headers["retry-after"]) >= 1
        assert server.metric(
            "mozart_http_requests_total", method="ListModels", code="RESOURCE_EXHAUSTED",
            protocol="http",
        ) == 1  # fmt: skip


def test_draining_server_is_503(model_repository: Path) -> None:
    with running_server(model_repository, drain_delay_s=0.5) as server:
        stopping = server.stop_in_background(grace_s=5.0)
        with httpx.Client(base_url=server.http_url, timeout=30) as client:
            while client.get("/v2/health/ready").status_code == 200:
                pass  # health says NOT_SERVING at once; calls are served for the delay
            assert client.get("/v2/health/live").status_code == 200
            while (response := client.get("/v1/models")).status_code == 200:
                pass
            assert "draining" in _error(response, 503, "UNAVAILABLE")
            assert client.get("/v2/health/live").status_code == 200  # live while draining
        stopping.join(60)


def test_a_server_fault_is_500_internal(tmp_path: Path) -> None:
    from tests.server.test_finite_scores import nan_for_negative_audio  # noqa: PLC0415

    nan_for_negative_audio(tmp_path)  # NaN scores for audio whose mean is negative
    negative = np.full(16_000, -0.25, np.float32).astype("<f4").tobytes()
    with (
        running_server(tmp_path) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as client,
    ):
        response = client.post(
            "/v1/models/nanny/classify", content=negative,
            params={"encoding": "pcm_f32le", "sample_rate_hz": 16_000, "channels": 1},
        )  # fmt: skip
        assert "non-finite scores" in _error(response, 500, "INTERNAL")
        assert server.metric(
            "mozart_http_requests_total", method="Classify", code="INTERNAL", protocol="http"
        ) == 1  # fmt: skip


def test_http_can_be_off(model_repository: Path) -> None:
    with running_server(model_repository, http_enabled=False) as server:
        assert server.http_port == 0
        assert server.metric("mozart_active_streams") == 0  # gRPC side serves as before


def test_a_taken_http_port_stops_start_up_naming_the_setting(model_repository: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("MOZART_")}
        done = subprocess.run(
            [sys.executable, "-m", "mozart_server", "--model-repository", str(model_repository),
             "--port", "0", "--metrics-port", "0", "--http-port", str(port)],
            capture_output=True, text=True, timeout=120, check=False, env=environment,
        )  # fmt: skip
    assert done.returncode == 2
    assert f"cannot serve HTTP on 127.0.0.1:{port} (http_host, http_port)" in done.stderr


def test_tls_settings_serve_https_and_mtls(model_repository: Path, pki: Pki) -> None:  # noqa: F811
    files = {"tls_cert_file": pki.folder / "server.pem", "tls_key_file": pki.folder / "server.key"}
    ca = ssl.create_default_context(cadata=pki.ca.certificate.decode())
    with running_server(model_repository, **files) as server:
        url = f"https://127.0.0.1:{server.http_port}/v2/health/live"
        assert httpx.get(url, verify=ca).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(url)  # the system's CAs do not know the test CA
    with running_server(
        model_repository, tls_client_ca_file=pki.folder / "ca.pem", **files
    ) as server:
        url = f"https://127.0.0.1:{server.http_port}/v2/health/live"
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, verify=ca)  # no client certificate
        (pki.folder / "client.pem").write_bytes(pki.client.certificate + pki.client.key)
        ca.load_cert_chain(pki.folder / "client.pem")
        assert httpx.get(url, verify=ca).status_code == 200
