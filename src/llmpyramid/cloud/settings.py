"""CLOUD_* settings: env var -> typed, bounded field; a bad value is a ConfigError (exit 3) naming it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llmpyramid.cloud import CLOUDS
from llmpyramid.config import (
    PROJECT_ROOT,
    Settings,
    knob,
    parse_bool,
    parse_duration,
    parse_float,
    parse_path,
    parse_str,
)
from llmpyramid.errors import ConfigError

# The seed's instance per cloud, and a region whose pinned catalog rows price it.
DEFAULT_INSTANCE = {"aws": "r7a.large", "gcp": "n2d-highmem-2", "azure": "Standard_E2s_v5"}
DEFAULT_REGION = {"aws": "us-east-1", "gcp": "us-central1", "azure": "eastus"}
# What `sky check` cannot fix by itself: the command that sets credentials up for each cloud.
CREDENTIALS_FIX = {
    "aws": "aws configure  (or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), then: sky check aws",
    "gcp": "gcloud init && gcloud auth application-default login, then: sky check gcp",
    "azure": "az login && az account set -s <subscription-id>, then: sky check azure",
}


@dataclass(frozen=True)
class CloudSettings(Settings):
    """One cloud smoke run. Timeouts bound the cost guard: price x (launch + health + teardown)."""

    section: ClassVar[str] = "cloud setting"
    cloud: str = knob("aws", "CLOUD", parse_str, choices=CLOUDS)
    instance_type: str | None = knob(None, "CLOUD_INSTANCE_TYPE", parse_str)  # default: DEFAULT_INSTANCE
    region: str | None = knob(None, "CLOUD_REGION", parse_str)  # default: DEFAULT_REGION
    use_spot: bool = knob(True, "CLOUD_USE_SPOT", parse_bool)
    launch_timeout: float = knob(1200.0, "CLOUD_LAUNCH_TIMEOUT", parse_duration, minimum=1, maximum=6 * 3600)
    health_timeout: float = knob(600.0, "CLOUD_HEALTH_TIMEOUT", parse_duration, minimum=1, maximum=6 * 3600)
    teardown_timeout: float = knob(600.0, "CLOUD_TEARDOWN_TIMEOUT", parse_duration, minimum=1, maximum=3600)
    request_timeout: float = knob(120.0, "CLOUD_REQUEST_TIMEOUT", parse_duration, minimum=1, maximum=3600)
    # Refuse to launch when the worst-case estimate (highest zone price x all timeouts) exceeds this.
    max_cost_usd: float = knob(1.0, "CLOUD_MAX_COST_USD", parse_float, minimum=0, maximum=1000)
    model_url: str | None = knob(None, "CLOUD_MODEL_URL", parse_str)  # s3:// or gs:// (invoke model.publish)
    model_sha256: str | None = knob(None, "CLOUD_MODEL_SHA256", parse_str)
    # SkyPilot's API server, when this run has to start one: its state and log (0700 directory, 0600 files)
    run_dir: Path = knob(PROJECT_ROOT / ".run" / "cloud", "CLOUD_RUN_DIR", parse_path)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model_sha256 and (len(self.model_sha256) != 64 or not _is_hex(self.model_sha256)):
            raise ConfigError(f"CLOUD_MODEL_SHA256 must be 64 hex characters, got {self.model_sha256!r}")
        if self.model_url and not self.model_url.startswith(("s3://", "gs://")):
            raise ConfigError(f"CLOUD_MODEL_URL must start with s3:// or gs://, got {self.model_url!r}")

    @property
    def instance(self) -> str:
        return self.instance_type or DEFAULT_INSTANCE[self.cloud]

    @property
    def region_name(self) -> str:
        return self.region or DEFAULT_REGION[self.cloud]

    @property
    def worst_case_seconds(self) -> float:
        """How long one run may keep an instance: every phase at its timeout."""
        return self.launch_timeout + self.health_timeout + self.teardown_timeout + 2 * self.request_timeout


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)
