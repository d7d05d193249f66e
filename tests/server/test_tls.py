"""TLS and mTLS through real handshakes: a test CA signs the server's and a client's keys."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.support.server import running_server


@dataclass(frozen=True)
class Pem:
    """A key and the certificate the test CA issued for it."""

    key: bytes
    certificate: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Name] | None, *, server: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    signing_key, issuer_name = issuer if issuer is not None else (key, _name(subject))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                False,
            )
    return key, builder.sign(signing_key, hashes.SHA256())


def _pem(key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> Pem:
    return Pem(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate.public_bytes(serialization.Encoding.PEM),
    )


@dataclass(frozen=True)
class Pki:
    """The server's files, and the CA and client keys a test connects with."""

    folder: Path
    ca: Pem
    client: Pem


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca_certificate = _issue("mozart test CA", None, server=False)
    issuer = (ca_key, ca_certificate.subject)
    server = _pem(*_issue("mozart server", issuer, server=True))
    client = _pem(*_issue("mozart client", issuer, server=False))
    ca = _pem(ca_key, ca_certificate)
    (folder / "server.key").write_bytes(server.key)
    (folder / "server.pem").write_bytes(server.certificate)
    (folder / "ca.pem").write_bytes(ca.certificate)
    return Pki(folder, ca, client)


def _list_models(channel: grpc.Channel) -> list[str]:
    response = pb_grpc.AudioClassifierStub(channel).ListModels(pb.ListModelsRequest(), timeout=10)
    return [model.name for model in response.models]


def test_tls_serves_clients_that_trust_its_ca_only(model_repository: Path, pki: Pki) -> None:
    folder, ca = pki.folder, pki.ca
    with running_server(
        model_repository,
        tls_cert_file=folder / "server.pem",
        tls_key_file=folder / "server.key",
    ) as server:
        trusted = grpc.ssl_channel_credentials(root_certificates=ca.certificate)
        with grpc.secure_channel(server.address, trusted) as channel:
            assert _list_models(channel) == ["tiny"]
        # Plain text, or TLS that trusts another CA, never gets an answer.
        with (
            grpc.insecure_channel(server.address) as channel,
            pytest.raises(grpc.RpcError) as plain,
        ):
            _list_models(channel)
        assert plain.value.code() == grpc.StatusCode.UNAVAILABLE
        stranger = _pem(*_issue("another CA", None, server=False))
        untrusted = grpc.ssl_channel_credentials(root_certificates=stranger.certificate)
        with (
            grpc.secure_channel(server.address, untrusted) as channel,
            pytest.raises(grpc.RpcError) as refused,
        ):
            _list_models(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_needs_a_client_certificate_from_the_ca(model_repository: Path, pki: Pki) -> None:
    folder, ca, client = pki.folder, pki.ca, pki.client
    with running_server(
        model_repository,
        tls_cert_file=folder / "server.pem",
        tls_key_file=folder / "server.key",
        tls_client_ca_file=folder / "ca.pem",
    ) as server:
        with_certificate = grpc.ssl_channel_credentials(
            root_certificates=ca.certificate,
            private_key=client.key,
            certificate_chain=client.certificate,
        )
        with grpc.secure_channel(server.address, with_certificate) as channel:
            assert _list_models(channel) == ["tiny"]
        without = grpc.ssl_channel_credentials(root_certificates=ca.certificate)
        with (
            grpc.secure_channel(server.address, without) as channel,
            pytest.raises(grpc.RpcError) as refused,
        ):
            _list_models(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
