"""The CLI's connection: URL prefixes, TLS hints, quiet gRPC logs, request ids, --version."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from importlib.metadata import version
from pathlib import Path

import grpc
import pytest
import soundfile

from mozart_client.cli_connection import Target, parse_target
from mozart_client.errors import InvalidInputError
from mozart_proto.cli import quiet_grpc_logs
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.client.test_cli import mozart, run_cli
from tests.server.test_tls import _issue, _pem
from tests.support.audio import music_clip
from tests.support.server import InProcessServer, running_server

# The C core's own line for a failed handshake, which the CLI keeps quiet.
HANDSHAKE_LOG = "ssl_transport_security"


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("localhost:8001", Target("localhost:8001", tls=False)),
        ("grpc://10.0.0.5:9000", Target("10.0.0.5:9000", tls=False)),
        ("grpc://mozart", Target("mozart:8001", tls=False)),
        ("http://mozart:8001/", Target("mozart:8001", tls=False)),
        ("HTTP://mozart", Target("mozart:80", tls=False)),
        ("https://mozart.example.com", Target("mozart.example.com:443", tls=True)),
        ("grpcs://[::1]:8443", Target("[::1]:8443", tls=True)),
        ("dns:///mozart:8001", Target("dns:///mozart:8001", tls=False)),
        ("unix:/run/mozart.sock", Target("unix:/run/mozart.sock", tls=False)),
    ],
)
def test_server_addresses_are_normalised(text: str, target: Target) -> None:
    assert parse_target(text) == target


@pytest.mark.parametrize("text", ["http://mozart:8001/v2/models", "https://", "http://h:port"])
def test_server_urls_with_a_path_or_no_host_are_refused(text: str) -> None:
    with pytest.raises(InvalidInputError, match="--server"):
        parse_target(text)


def test_prefixed_addresses_reach_a_plaintext_server(server, capsys, monkeypatch) -> None:
    for prefix in ("grpc://", "http://"):
        code, out, err = run_cli(capsys, monkeypatch, "health", "--server", prefix + server.address)
        assert code == 0, err
        assert out.split()[-1] == "SERVING"
    code, _, err = run_cli(capsys, monkeypatch, "health", "--server", "http://h/v2")
    assert code == 5
    assert "no path" in err


@pytest.fixture(scope="module")
def tls_server(model_repository: Path, tmp_path_factory) -> Iterator[tuple[InProcessServer, Path]]:
    """A TLS server and the PEM of the CA that signed its certificate."""
    folder = tmp_path_factory.mktemp("cli-pki")
    ca_key, ca_certificate = _issue("mozart cli test CA", None, server=False)
    certificate = _pem(*_issue("mozart server", (ca_key, ca_certificate.subject), server=True))
    (folder / "server.key").write_bytes(certificate.key)
    (folder / "server.pem").write_bytes(certificate.certificate)
    (folder / "ca.pem").write_bytes(_pem(ca_key, ca_certificate).certificate)
    with running_server(
        model_repository,
        tls_cert_file=folder / "server.pem",
        tls_key_file=folder / "server.key",
    ) as running:
        yield running, folder / "ca.pem"


def test_https_means_tls_and_mismatches_get_a_hint(tls_server, server, capsys, monkeypatch):
    secure, ca = tls_server
    quick = ("--timeout-s", "2")
    code, _, err = run_cli(
        capsys, monkeypatch, "health", "--server", f"https://{secure.address}", "--ca-cert", str(ca)
    )
    assert code == 0, err
    # Plaintext against the TLS server: gRPC says only "Socket closed".
    code, _, err = run_cli(capsys, monkeypatch, "health", "--server", secure.address, *quick)
    assert code == 3
    assert "Socket closed" in err
    assert "hint: the server closed the connection at once; it may expect TLS" in err
    # TLS against the plaintext server.
    code, _, err = run_cli(capsys, monkeypatch, "health", "--server", server.address, "--tls",
                           *quick)  # fmt: skip
    assert code == 3
    assert "hint: the server does not seem to speak TLS" in err


def test_the_mozart_command_keeps_grpc_handshake_logs_quiet(tls_server) -> None:
    """What `mozart` does before loading any command (`quiet_grpc_logs(argv)`), then the
    client's commands: quiet, unless `--verbose`.

    (The `mozart` dispatcher itself loads every distribution, the trainer's torch too,
    which would make this test several times slower.)
    """
    secure, _ = tls_server
    untrusted = ("health", "--server", f"https://{secure.address}", "--timeout-s", "2")
    setup = (
        "import sys; from mozart_proto.cli import quiet_grpc_logs; quiet_grpc_logs(sys.argv[1:])"
    )
    quiet = _client_commands_after(setup, *untrusted)
    assert quiet.returncode == 3
    assert "hint: the server's certificate is not signed by a CA this client trusts" in quiet.stderr
    assert HANDSHAKE_LOG not in quiet.stderr
    loud = _client_commands_after(setup, *untrusted, "--verbose")
    assert loud.returncode == 3
    assert HANDSHAKE_LOG in loud.stderr


@pytest.mark.parametrize(
    ("argv", "verbosity"),
    [
        (["health", "--server", "h:1"], "NONE"),
        (["classify", "a.wav", "--verbose"], None),
        (["serve", "--port", "0"], None),  # a server's operator wants gRPC's lines
        (["--help"], None),
    ],
)
def test_only_the_client_commands_quiet_grpc(monkeypatch, argv, verbosity) -> None:
    monkeypatch.delenv("GRPC_VERBOSITY", raising=False)
    quiet_grpc_logs(argv)
    assert os.environ.get("GRPC_VERBOSITY") == verbosity
    monkeypatch.setenv("GRPC_VERBOSITY", "DEBUG")
    quiet_grpc_logs(argv)
    assert os.environ["GRPC_VERBOSITY"] == "DEBUG"  # the user's own setting wins


def _client_commands_after(setup: str, *args: str) -> subprocess.CompletedProcess[str]:
    # The client's fast entry point, after `setup` has run before grpc is imported.
    program = f"{setup}; from mozart_client.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


class _FailingPeer(pb_grpc.AudioClassifierServicer):
    """Answers Classify with INTERNAL and a request id in the trailing metadata."""

    def Classify(self, request: pb.ClassifyRequest, context: grpc.ServicerContext) -> None:
        context.set_trailing_metadata((("x-request-id", "req-7f3a"),))
        context.abort(grpc.StatusCode.INTERNAL, "internal error")


def test_internal_errors_print_the_request_id(tmp_path: Path, capsys, monkeypatch) -> None:
    peer = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_AudioClassifierServicer_to_server(_FailingPeer(), peer)
    port = peer.add_insecure_port("127.0.0.1:0")
    peer.start()
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, music_clip(0.5, 16_000), 16_000, subtype="PCM_16")
    try:
        args = ("classify", str(clip), "--model", "tiny", "--server", f"127.0.0.1:{port}")
        code, out, err = run_cli(capsys, monkeypatch, *args, "--json")
    finally:
        peer.stop(grace=None)
    assert code == 9
    assert f"error: {clip}: INTERNAL: internal error" in err
    assert "request id: req-7f3a" in err
    assert '"request_id": "req-7f3a"' in out
    assert '"code": "INTERNAL"' in out


def test_version_names_each_installed_distribution(capsys, monkeypatch) -> None:
    completed = mozart("--version", dispatcher=True)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert f"mozart-proto {version('mozart-proto')}" in lines
    assert f"mozart-client {version('mozart-client')}" in lines
    assert lines == sorted(lines)
    code, out, _ = run_cli(capsys, monkeypatch, "--version")
    assert code == 0
    assert out.splitlines() == lines
