"""Loopback port helpers: is a port free, who holds it, pick a free one, refuse a busy one."""

from __future__ import annotations

import contextlib
import socket

import psutil

from llmpyramid.errors import InfrastructureError


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "busy"
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_owner(port: int) -> str | None:
    """'pid 123 (python)' for the process listening on the port, when the OS lets us see it."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return f"pid {conn.pid}"
    return None


def require_free(port: int, host: str = "127.0.0.1") -> None:
    """Exit 2 naming the holder when `port` is taken: whatever answers there would pass for ours."""
    if not port_is_free(port, host):
        owner = port_owner(port)
        raise InfrastructureError(f"port {port} on {host} is busy" + (f" (held by {owner})" if owner else ""))
