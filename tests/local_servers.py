"""What the tests' local servers share: a free port, waiting for a server process to listen, and an HTTP
server answering on a background thread."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(process: subprocess.Popen, port: int, name: str, why_it_exited, timeout_s: float = 30) -> None:
    """Return once ``process`` accepts connections on ``port``; raise if it exits or never listens.
    ``why_it_exited()`` gives the text to show when it exited (its log or stderr)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited: {why_it_exited()}") from None
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not start listening on port {port} within {timeout_s:.0f}s")


class _Server(ThreadingHTTPServer):
    # The default listen backlog of 5 drops connections when many clients connect at once,
    # and each dropped SYN costs the client a one-second retransmit.
    request_queue_size = 256
    daemon_threads = True


class BackgroundHTTPServer:
    """A ThreadingHTTPServer on 127.0.0.1:<free port>, serving from a daemon thread between start and stop."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def send_json(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None,
              send_body: bool = True) -> None:
    """One JSON answer with its length; ``send_body=False`` for HEAD."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    if send_body:
        # The client may have given up (a timeout): some tests are about exactly that.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(body)
