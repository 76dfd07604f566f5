"""Cloud smoke: a SkyPilot spot launch of the llama.cpp server, health, inference, teardown.

    settings.py      CLOUD_* knobs (instance type per cloud, region, timeouts, cost cap)
    catalog.py       hourly prices from SkyPilot's catalog code over pinned catalog files; cost guard
    tasks/           the SkyPilot task files (one per cloud) and the node's setup/run scripts
    node.py          what runs on the instance: fetch the model, serve it on port 8080
    skypilot.py      the few SkyPilot SDK calls used here, with errors mapped to exit codes
    api_server.py    SkyPilot's API server as a managed service (llmpyramid.procs) that dies with its owner
    ownership.py     run id, owner and end (labels on every instance) and the rule of what a sweep may remove
    tunnel.py        the node's API through SSH (no port of the node is open to the internet)
    smoke.py         the steps (credentials, launch, health, inference, teardown) and their timings
    suite.py         the results document (seed schema + `cloud` block), /tmp/cloud_smoke_results.json
    sweeper.py       remove this run's and expired clusters (SkyPilot status + EC2/GCE/Azure labels)
    emulator.py      SkyPilot against moto in a loopback-only network namespace (offline proof)
    pytest_plugin.py --cloud / --skip-teardown for tests/test_cloud_smoke.py

SkyPilot is imported lazily (the `cloud` dependency group), so the rest of llmpyramid works without it.
"""

from __future__ import annotations

CLOUDS = ("aws", "gcp", "azure")
CLUSTER_PREFIX = "wf-smoke-"
SERVE_PORT = 8080
