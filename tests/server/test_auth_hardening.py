"""Bearer auth that fails closed: no empty tokens, tokens from files, named clients,
refusal before the body is read, throttled and bounded failure logs, and TLS files
checked at start-up."""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import cast

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.support.lifecycle import rpc_error, wait_for
from tests.support.server import running_server, spawned_server

TOKEN = "s3cret-token"


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _start(model_repository: Path, *flags: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Runs `python -m mozart_server` that must fail at start-up."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MOZART_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "mozart_server", "--model-repository", str(model_repository),
         "--port", "0", "--metrics-port", "0", "--http-port", "0", *flags],
        capture_output=True, text=True, timeout=60, check=False, env=environment,
    )  # fmt: skip


def _retry_after_ms(error: grpc.RpcError) -> int:
    trailing = cast("Sequence[tuple[str, str]]", error.trailing_metadata())
    return int(dict(trailing)["retry-after-ms"])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("how", ["variable", "flag"])
def test_an_empty_token_is_a_start_up_error(model_repository: Path, how: str) -> None:
    if how == "variable":
        completed = _start(model_repository, MOZART_AUTH_TOKEN="")
    else:
        completed = _start(model_repository, "--auth-token", " ")
    assert completed.returncode == 2
    assert "invalid setting network.auth_token" in completed.stderr
    assert "empty" in completed.stderr


def test_an_empty_or_malformed_credential_is_refused(model_repository: Path) -> None:
    with (
        running_server(model_repository, auth_token=TOKEN) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        request = pb.ListModelsRequest()
        for value in ("Bearer ", "Bearer", "Bearer  ", f"Basic {TOKEN}", TOKEN):
            metadata = (("authorization", value),)
            error = rpc_error(partial(stub.ListModels, request, metadata=metadata, timeout=10))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, value
        assert stub.ListModels(pb.ListModelsRequest(), metadata=_bearer(TOKEN), timeout=10)
        assert wait_for(
            lambda: server.metric("mozart_auth_failures_total", reason="malformed") == 5
        )


def test_the_token_can_come_from_a_file(model_repository: Path, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(f"  {TOKEN}\n")  # as a Kubernetes Secret volume may hold it
    with (
        running_server(model_repository, auth_token_file=secret) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        assert stub.ListModels(pb.ListModelsRequest(), metadata=_bearer(TOKEN), timeout=10)
        error = rpc_error(lambda: stub.ListModels(pb.ListModelsRequest(), timeout=10))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_missing_empty_or_malformed_token_file_stops_start_up(
    model_repository: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    malformed = tmp_path / "tokens"
    malformed.write_text("alice:one\nbob\n")
    for flags, needle in [
        (["--auth-token-file", str(tmp_path / "absent")], "auth_token_file"),
        (["--auth-token-file", str(empty)], "is empty"),
        (["--auth-tokens-file", str(malformed)], "line 2: expected name:token"),
        (["--auth-token", TOKEN, "--auth-token-file", str(empty)], "at most one"),
    ]:
        completed = _start(model_repository, *flags)
        assert completed.returncode == 2, completed.stderr
        assert needle in completed.stderr


def test_named_tokens_name_the_client_in_logs_and_metrics(
    model_repository: Path, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# name:token\nalice:token-of-alice\nbob:token-of-bob\n")
    with spawned_server(model_repository, "--auth-tokens-file", str(tokens)) as server:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.AudioClassifierStub(channel)
            for _ in range(2):
                stub.ListModels(pb.ListModelsRequest(), metadata=_bearer("token-of-alice"))
            stub.ListModels(pb.ListModelsRequest(), metadata=_bearer("token-of-bob"))
            missing = pb.GetModelRequest(model=pb.ModelRef(name="nope"))
            error = rpc_error(lambda: stub.GetModel(missing, metadata=_bearer("token-of-bob")))
            assert error.code() == grpc.StatusCode.NOT_FOUND
            assert wait_for(
                lambda: server.metric("mozart_client_requests_total", client="bob") == 2
            )
            assert server.metric("mozart_client_requests_total", client="alice", code="OK") == 2
        refusals = [entry for entry in server.logs if entry.get("message") == "call refused"]
        assert [entry.get("client") for entry in refusals] == ["bob"]
        assert all("token-of" not in str(entry) for entry in server.logs)


def test_failed_authentication_is_throttled_and_logged_at_a_bounded_rate(
    model_repository: Path,
) -> None:
    flags = ("--auth-token", TOKEN, "--auth-failures-per-s", "1", "--auth-failure-burst", "5")
    with spawned_server(model_repository, *flags) as server:
        before = len(server.logs)
        started = time.monotonic()
        codes = []
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.AudioClassifierStub(channel)
            for attempt in range(200):
                guess = _bearer(f"guess-{attempt}")
                error = rpc_error(
                    partial(stub.ListModels, pb.ListModelsRequest(), metadata=guess, timeout=10)
                )
                codes.append(error.code())
                if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    assert 0 < _retry_after_ms(error) <= 1000
                    assert "too many failed authentications" in str(error.details())
            elapsed_s = time.monotonic() - started
            # The right token still works from the throttled address.
            assert stub.ListModels(pb.ListModelsRequest(), metadata=_bearer(TOKEN), timeout=10)
        assert codes[:5] == [grpc.StatusCode.UNAUTHENTICATED] * 5
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 150
        assert wait_for(lambda: server.metric("mozart_auth_failures_total") == 200)
        assert server.metric("mozart_auth_failures_total", reason="throttled") >= 150
        logged = [entry for entry in server.logs[before:]
                  if entry.get("message") == "authentication failed"]  # fmt: skip
        # At most one line a second; each says how many it held back.
        assert 1 <= len(logged) <= elapsed_s + 2
        assert all(entry["level"] == "WARNING" for entry in logged)
        assert sum(entry["suppressed"] for entry in logged) + len(logged) <= 200
        assert not any(entry.get("message") == "call refused" for entry in server.logs[before:])


def test_an_unauthenticated_request_is_refused_before_its_body_is_received(
    model_repository: Path,
) -> None:
    garbage = b"\x0a" + b"\xff" * 60_000_000  # 60 MB that would not even parse
    with spawned_server(model_repository, "--auth-token", TOKEN) as server:
        options = [("grpc.max_send_message_length", 100 * 1024 * 1024)]
        with grpc.insecure_channel(server.address, options=options) as channel:
            classify = channel.unary_unary(
                "/mozart.v1.AudioClassifier/Classify",
                request_serializer=None,
                response_deserializer=None,
            )
            rss_before = _rss_mib(server.process.pid)
            for _ in range(3):
                error = rpc_error(lambda: classify(garbage, timeout=30))
                # UNAUTHENTICATED, not INVALID_ARGUMENT: the body was never parsed.
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            growth_mib = _rss_mib(server.process.pid) - rss_before
    # 180 MB were sent; the server took in no more than flow control let through.
    assert growth_mib < 30


def _certificate(key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mozart.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_tls_file_errors_name_the_setting_and_exit_2(
    model_repository: Path, tmp_path: Path
) -> None:
    key, other_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    cert, key_file, other_key_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "o.pem"
    cert.write_bytes(_certificate(key))
    key_file.write_bytes(_key_pem(key))
    other_key_file.write_bytes(_key_pem(other_key))
    for flags, needle in [
        (["--tls-cert-file", str(tmp_path / "absent.pem"), "--tls-key-file", str(key_file)],
         "tls_cert_file"),
        (["--tls-cert-file", str(cert), "--tls-key-file", str(other_key_file)],
         "is not the private key of tls_cert_file"),
        (["--tls-cert-file", str(key_file), "--tls-key-file", str(key_file)],
         "holds no PEM certificate"),
        (["--tls-cert-file", str(cert), "--tls-key-file", str(key_file),
          "--tls-client-ca-file", str(key_file)], "tls_client_ca_file"),
    ]:  # fmt: skip
        completed = _start(model_repository, *flags)
        assert completed.returncode == 2, completed.stderr
        assert needle in completed.stderr
        assert "Traceback" not in completed.stderr
        assert "Failed to bind" not in completed.stderr


def test_a_port_that_cannot_be_bound_is_named_with_exit_2(model_repository: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for flags, needle in [
            (["--host", "127.0.0.1", "--port", port], "(host, port)"),
            (["--metrics-host", "127.0.0.1", "--metrics-port", port], "metrics_port"),
        ]:
            completed = _start(model_repository, *flags)
            assert completed.returncode == 2, completed.stderr
            assert needle in completed.stderr
            assert "Traceback" not in completed.stderr
