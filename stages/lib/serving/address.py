"""Where a local server listens: whether it can, and whether only this machine can reach it.

Shared by the servers the project starts (``stages.serve``'s embeddings API, ``stages.ui``'s pages), so both
fail before loading a model when the port is taken, and both say when they are reachable from elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket

from stages.lib.common.errors import UserError


def check_listen(host: str, port: int) -> None:
    """Fail now, not after loading the model, when the address is taken or cannot be listened on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UserError(f"--host {host}: not an address of this machine ({error.strerror}).") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as error:
            raise UserError(f"Cannot listen on {host}:{port}: {error.strerror}. Is another server running there? "
                            "Pick another port with --port.") from None


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
