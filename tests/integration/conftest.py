"""Fixtures for the emulated-cloud layer (marker `localstack`).

Each emulator starts lazily, once per session, only when a test asks for it:
`AWS_ENDPOINT_URL` / `STORAGE_EMULATOR_HOST` (e.g. a LocalStack container) are used when set, else
the emulators from `invoke emulators.up`, else moto / fake-gcs-server are started on free loopback
ports and stopped at the end (they also die with this process). Config checks (`-k Config`) use
none of these fixtures and need no emulator.

terraform/aws is applied once per session (`aws_apply`), started before the first test when any
selected test needs it: the apply is mostly the aws provider waiting (see
llmpyramid.emulators.terraform.TerraformRun.apply), so the other tests run meanwhile. Whatever
happens - failure, Ctrl-C, SIGTERM - it is stopped and what it created is destroyed (bounded).

An unreachable emulator aborts the session with exit 2 and one line naming the endpoint.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from llmpyramid.emulators import Endpoint, client_env, emulators
from llmpyramid.errors import ConfigError, PyramidError
from llmpyramid.runs import write_abort

if TYPE_CHECKING:
    from llmpyramid.emulators.terraform import TerraformRun

# Variables of the session's terraform/aws apply; tests read them back from `aws_apply.variables`.
ADMIN_CIDRS = ["10.99.0.0/16"]
INFERENCE_CIDRS = ["10.98.0.0/16"]
APPLY_FIXTURE = "aws_apply"


def _abort(exc: PyramidError) -> None:
    write_abort(exc)
    pytest.exit(f"error: {exc}", returncode=int(exc.exit_code))


@contextlib.contextmanager
def _endpoint(kind: str) -> Iterator[Endpoint]:
    try:
        with emulators((kind,)) as endpoints:
            endpoint = endpoints[kind]
            with pytest.MonkeyPatch.context() as mp:
                for name, value in client_env(endpoints).items():
                    mp.setenv(name, value)
                yield endpoint
    except PyramidError as exc:
        _abort(exc)


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[Endpoint]:
    """The AWS emulator; AWS_ENDPOINT_URL (+ dummy credentials) point at it while it is in use."""
    with _endpoint("aws") as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[Endpoint]:
    """The GCS emulator; STORAGE_EMULATOR_HOST points at it while it is in use."""
    with _endpoint("gcs") as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def run_id() -> str:
    """Unique per run, so parallel runs against one emulator never collide (name_suffix allows 12)."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def s3(aws_endpoint: Endpoint):
    import boto3

    return boto3.client("s3", endpoint_url=aws_endpoint.url)


@pytest.fixture(scope="session")
def iam(aws_endpoint: Endpoint):
    import boto3

    return boto3.client("iam", endpoint_url=aws_endpoint.url)


@pytest.fixture(scope="session")
def ec2(aws_endpoint: Endpoint):
    import boto3

    return boto3.client("ec2", endpoint_url=aws_endpoint.url)


@pytest.fixture(scope="session")
def gcs(gcs_endpoint: Endpoint):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs_endpoint.url}
    )


@contextlib.contextmanager
def applying(endpoint: Endpoint, suffix: str, work_dir: Path) -> Iterator[TerraformRun]:
    """terraform/aws applied to the AWS emulator in the background (`wait_apply()` for the outputs), named
    with `suffix`; whatever happens, stopped and destroyed at the end unless a test destroyed it.
    Skipped (never passed) without terraform."""
    from llmpyramid.emulators.terraform import TerraformRun
    from llmpyramid.iac.paths import module_dir
    from llmpyramid.iac.terraform import terraform_bin

    try:
        terraform_bin()
    except ConfigError as exc:
        pytest.skip(f"SKIPPED, not passed: {exc}")
    run = TerraformRun(
        module_dir("aws"),
        work_dir,
        endpoint.url,
        variables={
            "environment": "test",
            "name_suffix": suffix,
            "force_destroy": True,
            "create_network": True,
            "admin_cidrs": ADMIN_CIDRS,
            "inference_allowed_cidrs": INFERENCE_CIDRS,
        },
    )
    try:
        run.init()
        run.start_apply()
        yield run
    finally:
        run.cleanup()


@pytest.fixture(scope="session")
def aws_apply(aws_endpoint: Endpoint, run_id: str, tmp_path_factory: pytest.TempPathFactory):
    """The session's terraform/aws apply, shared by the tests that only read what it created."""
    with applying(aws_endpoint, run_id, tmp_path_factory.mktemp("tf-aws")) as run:
        yield run


@pytest.fixture(scope="session", autouse=True)
def _start_apply_early(request: pytest.FixtureRequest) -> None:
    """Begin the apply before the first test when a selected test needs it (it overlaps the others).

    A failure or skip here is cached by pytest and reported by the tests that use the apply."""
    if any(APPLY_FIXTURE in getattr(item, "fixturenames", ()) for item in request.session.items):
        with contextlib.suppress(Exception, pytest.skip.Exception):
            request.getfixturevalue(APPLY_FIXTURE)
