"""uvicorn serving the HTTP API on the gRPC server's event loop, started and stopped by
`app.MozartServer` with the rest of the server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from mozart_server.errors import StartupError
from mozart_server.settings import HttpSettings, TlsSettings

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 30.0


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own SIGINT/SIGTERM handlers: MozartServer owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leaves the process's signal handlers alone."""
        yield


class HttpServer:
    """The HTTP API's listener: `bind()` (at start-up, so a taken port stops it), `start()`,
    then `stop()` once the calls in flight have ended."""

    def __init__(
        self,
        app: ASGIApp,
        settings: HttpSettings,
        *,
        tls: TlsSettings,
        ws_max_bytes: int,
        closing_s: float,
    ) -> None:
        """Args:
        app: the ASGI application.
        settings: where to listen.
        tls: the gRPC server's TLS files, which HTTPS uses too (with tls_client_ca_file,
            clients must present a certificate from that CA, as over gRPC).
        ws_max_bytes: the largest WebSocket message.
        closing_s: how long connections left at the end of shutdown get to close.
        """
        self._settings = settings
        cert, key, client_ca = tls.tls_cert_file, tls.tls_key_file, tls.tls_client_ca_file
        https = cert is not None and key is not None
        self.tls = https
        self._config = uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,  # the server's logging (JSON) handles uvicorn's loggers too
            access_log=False,
            lifespan="off",
            ws="wsproto",
            ws_max_size=ws_max_bytes,
            timeout_graceful_shutdown=max(int(closing_s), 1),
            server_header=False,
            ssl_certfile=str(cert) if https else None,
            ssl_keyfile=str(key) if https else None,
            ssl_ca_certs=str(client_ca) if https and client_ca is not None else None,
            ssl_cert_reqs=(ssl.CERT_REQUIRED if https and client_ca is not None else ssl.CERT_NONE),
        )
        self._server = _EmbeddedServer(self._config)
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    def bind(self) -> int:
        """Binds the port (0 picks a free one) and returns it.

        Raises:
            StartupError: the address cannot be bound (names http_host, http_port).
        """
        host, port = self._settings.http_host, self._settings.http_port
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family = infos[0][0]
            # IPPROTO_TCP named, so accepted sockets carry it and asyncio sets TCP_NODELAY
            # on them (with proto 0 it does not, and responses wait for delayed ACKs).
            listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
        except OSError as error:
            raise StartupError(
                f"cannot serve HTTP on {host}:{port} (http_host, http_port): "
                f"{error.strerror or error}"
            ) from None
        listener.setblocking(False)
        self._socket = listener
        self.port = int(listener.getsockname()[1])
        return self.port

    async def start(self) -> None:
        """Starts serving on the bound socket.

        Raises:
            StartupError: uvicorn did not start.
        """
        assert self._socket is not None, "bind() first"
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[self._socket])
        )
        deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if self._task.done() or asyncio.get_running_loop().time() > deadline:
                raise StartupError("the HTTP API did not start (http_host, http_port)")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Closes the listener and the connections left, then waits for uvicorn to end."""
        if self._task is None:
            if self._socket is not None:
                self._socket.close()
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(
                asyncio.shield(self._task), (self._config.timeout_graceful_shutdown or 1) + 5
            )
        except TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        except Exception:
            logger.exception("the HTTP API failed while stopping")
        self._task = None
