#!/usr/bin/env python3
"""Agent entry point: run a layer of the test pyramid and print the seed's Test Results Schema.

    uv run python scripts/run_tests.py --suite smoke --output json
    uv run python scripts/run_tests.py --suite integration --base-url http://localhost:8080
    uv run python scripts/run_tests.py --help

Exit codes: 0 all passed, 1 test failures, 2 infrastructure error, 3 configuration error.
All logic lives in llmpyramid.run_tests; this file only calls it.
"""

import sys

from llmpyramid.run_tests import main

if __name__ == "__main__":
    sys.exit(main())
