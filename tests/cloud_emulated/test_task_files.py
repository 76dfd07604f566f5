"""The task files, parsed by SkyPilot itself in a child process with its own HOME (SkyPilot fixes its
paths from HOME on import): instance, spot, port, setup/run scripts, and the key as a secret only."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmpyramid.cloud import catalog
from tests.cloud_emulated.groups import FRONT_DOORS

# Never imported in this process: SkyPilot fixes its paths from HOME on import, and this worker may run the
# emulated cloud's tests (own HOME, own API server) next. The parse runs in a child with its own HOME.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sky") is None, reason="SkyPilot is in the `cloud` dependency group: nox -s cloud_emulated"
)

_PARSE = """
import json, sys, sky
from pathlib import Path
from llmpyramid.cloud.settings import CloudSettings
from llmpyramid.cloud.smoke import build_task, task_file
out = {}
for cloud in ("aws", "gcp", "azure"):
    plain = sky.Task.from_yaml(str(task_file(cloud)))
    (r,) = plain.resources
    built = build_task(CloudSettings.from_env({}, cloud=cloud), "sk-secret-value",
                       workdir=Path(sys.argv[1]) / cloud)  # fmt: skip
    (b,) = built.resources
    out[cloud] = {"cloud": str(r.cloud), "instance": r.instance_type, "spot": r.use_spot, "ports": r.ports,
                  "setup": plain.setup, "run": plain.run, "envs": sorted(plain.envs), "host": plain.envs["SERVE_HOST"],
                  "built_instance": b.instance_type, "built_region": b.region, "built_ports": b.ports,
                  "secret_in_envs": "sk-secret-value" in json.dumps(built.envs),
                  "secret_set": "API_KEY" in built.secrets, "workdir": built.workdir,
                  "unresolved": [ref.name for ref in built.managed_secret_refs],
                  "plain_unresolved": [ref.name for ref in plain.managed_secret_refs]}
print(json.dumps(out))
"""


@FRONT_DOORS
def test_task_files_are_valid_skypilot_tasks(tmp_path):
    for cloud in ("aws", "gcp", "azure"):
        catalog.install(tmp_path, cloud)  # SkyPilot validates instance types against its catalog
    env = {**os.environ, "HOME": str(tmp_path), "SKYPILOT_DISABLE_USAGE_COLLECTION": "1"}
    argv = [sys.executable, "-c", _PARSE, str(tmp_path / "workdirs")]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    expected = {"aws": ("AWS", "r7a.large"), "gcp": ("GCP", "n2d-highmem-2"), "azure": ("Azure", "Standard_E2s_v5")}
    for cloud, (name, instance) in expected.items():
        task = parsed[cloud]
        assert (task["cloud"], task["instance"], task["spot"]) == (name, instance, True)
        # no port opened to the internet: the node serves on its loopback, reached through an SSH tunnel
        assert task["ports"] is None and task["built_ports"] is None and task["host"] == "127.0.0.1"
        assert task["built_instance"] == instance
        assert task["secret_set"] and not task["secret_in_envs"]
        assert task["plain_unresolved"] == ["API_KEY"], "the task file must demand the key at launch"
        assert task["unresolved"] == [], "SkyPilot refuses to launch with an unresolved secret"
        for command in (task["setup"], task["run"]):
            script = command.split()[-1]
            assert (catalog.pinned_dir().parents[3] / script).is_file(), script
        assert "SERVE_PORT" in task["envs"] and "API_KEY" not in task["envs"]
        uploaded = {str(p.relative_to(task["workdir"])) for p in Path(task["workdir"]).rglob("*") if p.is_file()}
        assert {"pyproject.toml", "uv.lock", "src/llmpyramid/cloud/tasks/setup.sh"} <= uploaded
        assert not [n for n in uploaded if not n.startswith("src/llmpyramid/") and "/" in n], "only the node's files"
        assert not [n for n in uploaded if n.startswith(("tests/", "terraform/", ".github/", ".env"))]
