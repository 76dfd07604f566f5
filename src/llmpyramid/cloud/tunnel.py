"""The node's API through an SSH tunnel: port 8080 is never opened to the internet, and the per-run key
travels inside SSH, not as a Bearer token over plain HTTP.

    tunnel = Tunnel(run_dir, cluster)
    url = tunnel.open(endpoint, timeout=120)   # http://127.0.0.1:<free port> -> the node's 127.0.0.1:8080
    tunnel.close()

The node serves on its own loopback only (the task files' SERVE_HOST); the cloud firewall opens only
SSH, which SkyPilot needs anyway. The ssh client is a managed service (llmpyramid.procs): state file,
identity, the owner's death ends it, and `close()` stops it. The endpoint (user, address, port, key)
is what SkyPilot's own `ssh <cluster>` uses.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmpyramid.cloud import SERVE_PORT
from llmpyramid.errors import InfrastructureError
from llmpyramid.procs import ManagedService, private_dir, write_private


@dataclass(frozen=True)
class SshEndpoint:
    user: str
    host: str
    port: int
    key: Path


def endpoint_of(record: Any, key_dir: Path) -> SshEndpoint:
    """The head node's SSH endpoint from a SkyPilot status record fetched with its credentials. A key sent
    as content (a remote API server) is written to `key_dir`, readable by this user only."""
    handle, credentials = record.get("handle"), record.get("credentials") or {}
    host = getattr(handle, "head_ip", None)
    if handle is None or not host or not credentials.get("ssh_user"):
        raise InfrastructureError(f"SkyPilot gave no SSH endpoint for {record.get('name')} (is it UP?)")
    key = credentials.get("ssh_private_key")
    if content := credentials.get("ssh_private_key_content"):
        key = private_dir(key_dir) / f"{record.get('name')}.key"
        write_private(key, content)
    if not key:
        raise InfrastructureError(f"SkyPilot gave no SSH key for {record.get('name')}")
    port = int(getattr(handle, "head_ssh_port", 22) or 22)
    return SshEndpoint(credentials["ssh_user"], str(host), port, Path(key))


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


class Tunnel:
    def __init__(self, run_dir: Path, cluster: str, *, ssh: Sequence[str] = ("ssh",)) -> None:
        self.service = ManagedService(f"tunnel-{cluster}", run_dir)
        self.ssh = list(ssh)
        self.url: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self, endpoint: SshEndpoint, local_port: int) -> list[str]:
        return [
            *self.ssh, "-N", "-T",
            "-i", str(endpoint.key), "-p", str(endpoint.port),
            # SkyPilot's own options for its nodes: a fresh instance has an unknown host key
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=15",
            "-o", "ConnectTimeout=30",
            "-L", f"127.0.0.1:{local_port}:127.0.0.1:{SERVE_PORT}",
            f"{endpoint.user}@{endpoint.host}",
        ]  # fmt: skip

    def open(self, endpoint: SshEndpoint, timeout: float) -> str:
        """Start the tunnel and wait (bounded) until its local end accepts connections; its URL."""
        self.close()  # a relaunch (preemption) gets a fresh tunnel to the new address
        port = _free_loopback_port()
        with self.service.locked():
            self.proc, _ = self.service.spawn(self.argv(endpoint, port), owner_pid=os.getpid())
        proc = self.proc
        deadline = time.monotonic() + timeout
        while not _accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = "exited" if proc.poll() is not None else f"not listening after {timeout:.0f}s"
                last = self.service.last_log_line()
                self.close()
                raise InfrastructureError(
                    f"SSH tunnel to {endpoint.user}@{endpoint.host}:{endpoint.port} {why}: {last}"
                )
            time.sleep(0.2)
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def close(self) -> None:
        self.service.stop()
        if self.proc is not None:  # collect it, so no zombie stays behind
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self.proc, self.url = None, None
