"""The SSH tunnel to a cloud node: its ssh command, its endpoint from SkyPilot's record, and its lifecycle.

A real node is out of reach offline (the emulated layer stops at SSH by design), so a stand-in `ssh` script
plays the client: it listens where `-L` says, or fails like ssh does; the tunnel's own code runs for real.
"""

from __future__ import annotations

import os
import stat
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from llmpyramid.cloud.tunnel import SshEndpoint, Tunnel, endpoint_of
from llmpyramid.errors import InfrastructureError

FAKE_SSH = textwrap.dedent(
    """\
    # stands in for ssh -L 127.0.0.1:LOCAL:127.0.0.1:8080: serves /health on LOCAL, or fails like ssh
    import http.server, os, sys
    if os.environ.get("FAKE_SSH_FAIL"):
        print("user@198.51.100.7: Permission denied (publickey).", file=sys.stderr)
        sys.exit(255)
    local = sys.argv[sys.argv.index("-L") + 1].split(":")
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    http.server.HTTPServer((local[0], int(local[1])), Health).serve_forever()
    """
)


@pytest.fixture
def fake_ssh(tmp_path):
    path = tmp_path / "ssh"
    path.write_text(FAKE_SSH)
    return (sys.executable, str(path))


ENDPOINT = SshEndpoint("ubuntu", "198.51.100.7", 22, Path(os.devnull))


def test_the_forward_binds_loopback_on_both_ends_and_never_opens_a_port():
    argv = Tunnel(Path(os.devnull), "wf-smoke-aws-x").argv(ENDPOINT, 41234)
    assert argv[:3] == ["ssh", "-N", "-T"] and argv[-1] == "ubuntu@198.51.100.7"
    assert argv[argv.index("-L") + 1] == "127.0.0.1:41234:127.0.0.1:8080"
    assert "ExitOnForwardFailure=yes" in argv and "BatchMode=yes" in argv
    assert not any("0.0.0.0" in a or a == "-g" or a.startswith("-R") for a in argv)


def test_open_waits_for_the_local_end_and_close_stops_the_client(fake_ssh, tmp_path):
    tunnel = Tunnel(tmp_path / "run", "wf-smoke-aws-x", ssh=fake_ssh)
    url = tunnel.open(ENDPOINT, timeout=60)
    try:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/health", timeout=10).text == "ok"
        state = tunnel.service.running()
        assert state is not None and state.owner_pid == os.getpid()
    finally:
        tunnel.close()
    assert tunnel.service.running() is None and tunnel.url is None
    assert state.identity.alive() is False


def test_a_refused_ssh_is_an_infrastructure_error_with_its_reason(fake_ssh, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_FAIL", "1")
    tunnel = Tunnel(tmp_path / "run", "wf-smoke-aws-x", ssh=fake_ssh)
    with pytest.raises(InfrastructureError, match=r"exited: .*Permission denied \(publickey\)"):
        tunnel.open(ENDPOINT, timeout=60)
    assert tunnel.service.running() is None


def _record(**credentials):
    handle = SimpleNamespace(head_ip="198.51.100.7", head_ssh_port=2222)
    return {"name": "wf-smoke-aws-x", "handle": handle, "credentials": {"ssh_user": "ubuntu", **credentials}}


def test_endpoint_from_skypilots_record_with_a_key_path(tmp_path):
    assert endpoint_of(_record(ssh_private_key="/home/u/.sky/keys/k"), tmp_path) == SshEndpoint(
        "ubuntu", "198.51.100.7", 2222, Path("/home/u/.sky/keys/k")
    )


def test_a_key_sent_as_content_is_written_for_this_user_only(tmp_path):
    found = endpoint_of(_record(ssh_private_key_content="-----BEGIN KEY-----\n"), tmp_path / "keys")
    assert found.key.read_text() == "-----BEGIN KEY-----\n"
    assert stat.S_IMODE(found.key.stat().st_mode) == 0o600


def test_a_cluster_that_is_not_up_has_no_endpoint(tmp_path):
    with pytest.raises(InfrastructureError, match="no SSH endpoint"):
        endpoint_of({"name": "wf-smoke-aws-x", "handle": None, "credentials": {}}, tmp_path)
