"""Two pytest workers, each with its own moto and SkyPilot API server: the cases that wait on a front door
in a child process (a deliberate 60 s launch timeout, launches interrupted by signals, the task scripts)
run beside the ones that drive SkyPilot in-process, so those waits overlap (`--dist loadgroup`)."""

from __future__ import annotations

import pytest

FRONT_DOORS = pytest.mark.xdist_group("front_doors")
IN_PROCESS = pytest.mark.xdist_group("in_process")
