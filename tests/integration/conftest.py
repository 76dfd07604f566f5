"""Fixtures for the emulated-cloud layer (marker `localstack`).

Each emulator starts lazily, once per session, only when a test asks for it:
`AWS_ENDPOINT_URL` / `STORAGE_EMULATOR_HOST` (e.g. a LocalStack container) are used when set, else
the emulators from `invoke emulators.up`, else moto / fake-gcs-server are started on free loopback
ports and stopped at the end (they also die with this process). Config checks (`-k Config`) use
none of these fixtures and need no emulator.

An unreachable emulator aborts the session with exit 2 and one line naming the endpoint.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from llmpyramid.emulators import Endpoint, client_env, emulators
from llmpyramid.errors import PyramidError
from llmpyramid.suites import write_abort


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
