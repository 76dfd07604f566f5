"""Load tests (seed: "Load Tests"): LLM-aware locust users against an OpenAI-compatible server.

    uv run locust -f tests/locustfile.py --headless -u 10 -r 2 -t 60s --json

Target: --host, else BASE_URL (+ API_KEY, MODEL), else a running embedded stack, else the
embedded llama.cpp stack is started for the run and stopped afterwards. `-t` is a minimum: the
run goes on until LOAD_MIN_REQUESTS (20) requests are answered, at most LOAD_MAX_DURATION, and
fewer completed requests are an "inconclusive" verdict (exit 1). Besides locust's own statistics,
every run writes results/load/load_results.json (verdict, TTFT, ITL, TPOT, output tokens/s, SLOs),
the raw samples, PNG plots and llm_report.html; LOAD_* and SLO_* variables configure it (see
llmpyramid.load.config). Richer front doors: `python -m llmpyramid.load`, `invoke load`,
`nox -s load`, `scripts/run_tests.py --suite load`.
"""

from llmpyramid.load.plugin import install

install(globals())
