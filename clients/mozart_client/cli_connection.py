"""The client commands' connection options: the address, TLS, the token and gRPC's own logs."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mozart_client.client import Client
from mozart_client.connection import DEFAULT_TARGET, TlsConfig
from mozart_client.errors import InvalidInputError

_PLAINTEXT_SCHEMES = {"grpc": 8001, "http": 80}
_TLS_SCHEMES = {"grpcs": 443, "https": 443}


@dataclass(frozen=True)
class Target:
    """A server address as gRPC takes it, and whether its scheme asked for TLS."""

    address: str
    tls: bool


def parse_target(text: str) -> Target:
    """Normalises `--server`: `host:port`, or a URL `grpc://`, `http://` (plaintext),
    `https://`, `grpcs://` (TLS); a URL without a port gets its scheme's
    (grpc 8001, Mozart's; http 80; https and grpcs 443).

    Anything else (`dns:///host:port`, `unix:/path`, ...) goes to gRPC as given.

    Raises:
        InvalidInputError: A URL with a path, or with no host.
    """
    scheme, separator, _ = text.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in _PLAINTEXT_SCHEMES | _TLS_SCHEMES:
        return Target(text, tls=False)
    url = urlsplit(text)
    if url.path.strip("/") or url.query or url.fragment:
        raise InvalidInputError(f"--server takes scheme://host:port, with no path; got {text!r}")
    if not url.hostname:
        raise InvalidInputError(f"--server {text!r} names no host")
    try:
        port = url.port or (_TLS_SCHEMES | _PLAINTEXT_SCHEMES)[scheme]
    except ValueError as error:
        raise InvalidInputError(f"--server {text!r}: {error}") from None
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    return Target(f"{host}:{port}", tls=scheme in _TLS_SCHEMES)


def add_arguments(parser: argparse.ArgumentParser, *, timeout_help: str) -> None:
    """Adds the connection options to one command's parser."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--server",
        default=os.environ.get("MOZART_SERVER", DEFAULT_TARGET),
        metavar="ADDRESS",
        help=(
            "HOST:PORT, or grpc://, http:// (plaintext), https://, grpcs:// (TLS) "
            f"URLs (env MOZART_SERVER; default {DEFAULT_TARGET})"
        ),
    )
    group.add_argument("--tls", action="store_true", help="use TLS with the system's trusted CAs")
    group.add_argument(
        "--ca-cert", type=Path, metavar="PEM", help="CA of the server (implies --tls)"
    )
    group.add_argument("--client-cert", type=Path, metavar="PEM", help="client certificate (mTLS)")
    group.add_argument("--client-key", type=Path, metavar="PEM", help="client private key (mTLS)")
    group.add_argument(
        "--server-name", metavar="NAME", help="name to check the server certificate against"
    )
    group.add_argument(
        "--token",
        default=os.environ.get("MOZART_TOKEN"),
        help="bearer token (env MOZART_TOKEN)",
    )
    group.add_argument("--timeout-s", type=float, metavar="S", help=timeout_help)
    group.add_argument(
        "--json", action="store_true", help="print JSON lines for scripts, one per input"
    )
    group.add_argument(
        "--verbose",
        action="store_true",
        help="let gRPC's own log lines through (`mozart` keeps them quiet otherwise)",
    )


def uses_tls(args: argparse.Namespace) -> bool:
    """Whether the command connects with TLS (a flag, a certificate, or an https:// address)."""
    return bool(
        args.tls
        or args.ca_cert
        or args.client_cert
        or args.client_key
        or parse_target(args.server).tls
    )


def open_client(args: argparse.Namespace, *, default_timeout_s: float = 10.0) -> Client:
    """The SDK client for the command's connection options."""
    target = parse_target(args.server)
    tls = None
    if uses_tls(args):
        tls = TlsConfig(
            ca_cert=args.ca_cert,
            client_cert=args.client_cert,
            client_key=args.client_key,
            server_name=args.server_name,
        )
    timeout_s = args.timeout_s if args.timeout_s is not None else default_timeout_s
    return Client(target.address, tls=tls, token=args.token, timeout_s=timeout_s)
