"""Load tests (seed: "Load Tests"): LLM-aware locust users against an OpenAI-compatible server.

    uv run locust -f tests/locustfile.py --headless -u 10 -r 2 -t 60s --json

Target: --host, else BASE_URL (+ API_KEY, MODEL), else a running embedded stack, else the
embedded llama.cpp stack is started for the run and stopped afterwards. Besides locust's own
statistics, every run writes results/load/load_results.json (TTFT, ITL, TPOT, output tokens/s,
SLO verdict), the raw samples and PNG plots; LOAD_* and SLO_* variables configure it (see
llmpyramid.load.config). Richer front doors: `python -m llmpyramid.load`, `invoke load`,
`nox -s load`, `scripts/run_tests.py --suite load`.
"""

from llmpyramid.load.plugin import install

install(globals())
