"""The SDK against a real server on 127.0.0.1:0 with real ONNX Runtime and real audio."""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mozart_client import (
    AsyncClient,
    Client,
    InvalidInputError,
    NotFoundError,
    ServingStatus,
    Summary,
    TlsConfig,
    UnauthenticatedError,
    UnavailableError,
    WindowResult,
)
from tests.support.audio import music_clip
from tests.support.server import InProcessServer, running_server

RATE = 16_000


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> Path:
    path: Path = tmp_path_factory.mktemp("audio") / "clip.flac"
    soundfile.write(path, music_clip(2.0, RATE, seed=11), RATE, subtype="PCM_16")
    return path


@pytest.fixture
def client(server: InProcessServer):
    with Client(server.address) as sdk_client:
        yield sdk_client


def test_classify_a_path_bytes_and_an_array_agree(client, clip_path: Path) -> None:
    samples, _ = soundfile.read(clip_path, dtype="float32")
    from_path = client.classify(clip_path, model="tiny", hop_ms=250)
    from_bytes = client.classify(clip_path.read_bytes(), model="tiny", hop_ms=250)
    from_array = client.classify(samples, sample_rate_hz=RATE, model="tiny", hop_ms=250)
    assert from_path.model_name == "tiny"
    assert from_path.model_version == "1"
    assert len(from_path.windows) == 7
    assert from_path.summary.window_count == 7
    assert from_path.summary.label in from_path.labels
    assert from_path.request_id
    for other in (from_bytes, from_array):
        np.testing.assert_allclose(other.summary.scores, from_path.summary.scores, atol=1e-5)
    with pytest.raises(AttributeError):
        from_path.summary.window_count = 0  # frozen


def test_stream_yields_windows_then_one_summary_matching_classify(client, clip_path) -> None:
    results = list(client.stream(clip_path, model="tiny", hop_ms=250, chunk_ms=50))
    windows = [r for r in results if isinstance(r, WindowResult)]
    assert isinstance(results[-1], Summary)
    assert [w.index for w in windows] == list(range(7))
    assert all(w.latency_ms is not None and w.latency_ms >= 0 for w in windows)
    whole = client.classify(clip_path, model="tiny", hop_ms=250)
    np.testing.assert_allclose(
        [w.scores for w in windows], [w.scores for w in whole.windows], atol=1e-4
    )


def test_realtime_streaming_paces_the_audio(client) -> None:
    audio = music_clip(1.0, RATE, seed=12)
    started = time.monotonic()
    results = list(client.stream(audio, sample_rate_hz=RATE, model="tiny", realtime=True))
    elapsed = time.monotonic() - started
    # One second of audio cannot be sent in much less than a second at real-time pace.
    assert elapsed >= 0.9
    assert isinstance(results[-1], Summary)
    assert results[-1].audio_duration_ms == 1000


def test_leaving_a_stream_early_cancels_it_on_the_server(client, server) -> None:
    audio = music_clip(3.0, RATE, seed=13)
    for result in client.stream(audio, sample_rate_hz=RATE, model="tiny", realtime=True):
        assert isinstance(result, WindowResult)
        break
    deadline = time.monotonic() + 10
    while server.metric("mozart_active_streams") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.metric("mozart_active_streams") == 0


def test_async_client_classifies_and_streams_concurrently(server, clip_path) -> None:
    async def scenario():
        async with AsyncClient(server.address) as client:

            async def chunks():
                audio = music_clip(1.0, RATE, seed=14)
                for start in range(0, len(audio), 1600):
                    yield audio[start : start + 1600]

            stream_results = []

            async def consume():
                async for result in client.stream(chunks(), sample_rate_hz=RATE, model="tiny"):
                    stream_results.append(result)

            classified, _ = await asyncio.gather(
                client.classify(clip_path, model="tiny"), consume()
            )
            return classified, stream_results, await client.models(), await client.health()

    classified, stream_results, models, health = asyncio.run(scenario())
    assert classified.summary.window_count > 0
    assert isinstance(stream_results[-1], Summary)
    assert stream_results[-1].audio_duration_ms == 1000
    assert [m.name for m in models] == ["tiny"]
    assert health.serving


def test_models_model_and_health(client) -> None:
    (model,) = client.models()
    assert model.name == "tiny"
    assert model.versions == ("1",)
    assert model.task == "multiclass"
    assert model.sample_rate_hz == RATE
    assert model.window_ms == 500
    assert len(model.labels) == 4
    assert client.model("tiny") == model
    assert client.health().status is ServingStatus.SERVING
    assert client.health("mozart.v1.AudioClassifier").serving


def test_server_errors_become_sdk_errors_with_their_status(client) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.classify(np.zeros(RATE, np.float32), sample_rate_hz=RATE, model="nope")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    assert "nope" in caught.value.details
    with pytest.raises(InvalidInputError) as caught_invalid:
        # Declared: the SDK's own libsndfile would refuse the bytes before sending them.
        client.classify(b"RIFF\x00\x00\x00\x00WAVEjunk", model="tiny", encoding="wav")
    assert caught_invalid.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(InvalidInputError) as caught_stream:
        list(
            client.stream(
                np.zeros(RATE, np.float32), sample_rate_hz=RATE, hop_ms=10**6, model="tiny"
            )
        )
    assert caught_stream.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert client.health().serving  # the server keeps serving


def test_without_a_model_name_the_servers_only_model_is_used(client) -> None:
    result = client.classify(music_clip(0.5, RATE), sample_rate_hz=RATE)
    assert result.model_name == "tiny"


def test_unreachable_server_is_unavailable_after_retries() -> None:
    with Client("127.0.0.1:1", timeout_s=5) as client, pytest.raises(UnavailableError) as caught:
        client.models()
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


def test_bearer_token(model_repository: Path) -> None:
    with running_server(model_repository, auth_token="s3cret") as secured:
        with Client(secured.address) as anonymous, pytest.raises(UnauthenticatedError):
            anonymous.models()
        with Client(secured.address, token="wrong") as wrong, pytest.raises(UnauthenticatedError):
            wrong.models()
        with Client(secured.address, token="s3cret") as client:
            assert client.models()[0].name == "tiny"
            results = list(client.stream(music_clip(0.6, RATE), sample_rate_hz=RATE))
            assert isinstance(results[-1], Summary)


def _certificate(subject: str, key, issuer_cert=None, issuer_key=None, ca: bool = False):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("mozart.test")]), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write_pki(folder: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for mozart.test and a client certificate."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("Mozart test CA", ca_key, ca=True)
    files: dict[str, Path] = {}
    for role in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(f"mozart-{role}", key, ca_cert, ca_key)
        files[f"{role}_key"] = folder / f"{role}.key"
        files[f"{role}_cert"] = folder / f"{role}.pem"
        files[f"{role}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        files[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["ca"] = folder / "ca.pem"
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return files


def test_mutual_tls(model_repository: Path, tmp_path: Path) -> None:
    pki = _write_pki(tmp_path)
    settings = {
        "tls_cert_file": pki["server_cert"],
        "tls_key_file": pki["server_key"],
        "tls_client_ca_file": pki["ca"],
    }
    with running_server(model_repository, **settings) as secured:
        tls = TlsConfig(
            ca_cert=pki["ca"],
            client_cert=pki["client_cert"],
            client_key=pki["client_key"],
            server_name="mozart.test",
        )
        with Client(secured.address, tls=tls) as client:
            assert client.health().serving
            assert client.classify(music_clip(0.5, RATE), sample_rate_hz=RATE).windows
        # Without a client certificate the handshake fails: the server is unreachable to us.
        no_cert = TlsConfig(ca_cert=pki["ca"], server_name="mozart.test")
        client = Client(secured.address, tls=no_cert, timeout_s=5)
        with client, pytest.raises(UnavailableError):
            client.models()
        with pytest.raises(InvalidInputError, match="both"):
            Client(secured.address, tls=TlsConfig(client_cert=pki["client_cert"]))


def test_many_clients_share_the_server(server: InProcessServer) -> None:
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            with Client(server.address) as client:
                audio = music_clip(1.0, RATE, seed=seed)
                results = list(client.stream(audio, sample_rate_hz=RATE, model="tiny"))
                assert isinstance(results[-1], Summary)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
