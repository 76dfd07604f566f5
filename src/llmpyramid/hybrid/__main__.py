"""`python -m llmpyramid.hybrid [--router litellm|haproxy | --router-url URL ...] [--output json]`: the hybrid layer.

Prints the results document (json) or a summary (text); exit 0 passed, 1 failures, 2 infrastructure
unreachable (names which), 3 configuration error, 130 interrupted (everything started is stopped).
"""

from __future__ import annotations

import json
import sys

from llmpyramid import results
from llmpyramid.cli import ArgumentParser, guarded
from llmpyramid.hybrid.suite import OPTION_NAMES, run_hybrid, settings_from


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m llmpyramid.hybrid", description=__doc__)
    p.add_argument("--router", help="the reference router to build: litellm (default) or haproxy (HYBRID_ROUTER)")
    p.add_argument("--router-url", help="test this router (else HYBRID_ROUTER_URL; else build the reference topology)")
    p.add_argument("--base-url", help="the base backend behind the router (health, capacity from /props)")
    p.add_argument("--burst-url", help="the burst backend behind the router")
    p.add_argument("--base-stop-cmd", help="command that stops base (scenarios c, d)")
    p.add_argument("--base-start-cmd", help="command that starts base again (scenario d)")
    p.add_argument("--burst-stop-cmd", help="command that stops burst (scenario e)")
    p.add_argument("--output", choices=("json", "text"), default="text")
    with guarded():
        args = p.parse_args(argv)
        options = {k: getattr(args, k) for k in OPTION_NAMES}
        doc, code = run_hybrid(settings_from(options))
        results.validate(doc)
        if args.output == "json":
            print(json.dumps(doc, indent=2))
        else:
            for t in doc["tests"]:
                print(f"{t['status'].upper():8} {t['name']}" + (f": {t.get('error') or t.get('reason')}"
                      if t.get("error") or t.get("reason") else ""))  # fmt: skip
            h = doc["hybrid"]
            print(f"wall {h['wall_seconds']}s; router cpu {h.get('router_cpu_seconds')}s, "
                  f"peak rss {h.get('router_peak_rss_bytes')}; plot {h['artifacts'].get('plot')}")  # fmt: skip
        return int(code)
    return 1


if __name__ == "__main__":
    sys.exit(main())
