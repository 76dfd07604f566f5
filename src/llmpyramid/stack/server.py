"""Child-process entry point: run llama.cpp's C++ server (xllamacpp) until told to stop.

    python -m llmpyramid.stack.server --model M.gguf --port 8080 [--api-key-env VAR] ...

Runs in its own process because the embedded server lives until its process ends. With
--owner-pid it also exits when that process dies (a killed pytest or invoke leaves nothing behind):
see llmpyramid.procs.
"""

from __future__ import annotations

import argparse
import os
import sys

from llmpyramid.procs import exit_when_owner_dies, stop_event_on_signals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--alias", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--ctx-size", type=int, default=8192)
    ap.add_argument("--api-key-env", help="name of the env var holding the API key (keeps it off argv)")
    ap.add_argument("--owner-pid", type=int, help="exit when this process dies")
    args = ap.parse_args(argv)

    if args.owner_pid:
        exit_when_owner_dies(args.owner_pid)
    stop = stop_event_on_signals()

    import xllamacpp  # imported late: the import itself takes a moment

    p = xllamacpp.CommonParams()
    p.model.path = args.model
    p.model_alias = {args.alias}
    p.hostnames = [args.host]
    p.port = args.port
    p.n_ctx = args.ctx_size
    p.n_parallel = args.parallel
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    p.endpoint_metrics = True
    if args.api_key_env and os.environ.get(args.api_key_env):
        p.api_keys = [os.environ[args.api_key_env]]
    try:
        _server = xllamacpp.Server(p)  # serves until the process ends
    except RuntimeError as exc:
        print(f"llama.cpp server failed to start: {exc}", file=sys.stderr, flush=True)
        return 2
    print(f"llmpyramid: serving {args.alias} on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    stop.wait()
    # Exit at once: the C++ server's destructor waits for requests in flight (measured: still hung 20 s
    # after SIGTERM with two long completions running), and its threads need no orderly shutdown.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
