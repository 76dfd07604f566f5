"""Prices from SkyPilot's catalog code over pinned catalog files, the cost estimate and its guard.

The files in `catalogs/` are rows copied verbatim from SkyPilot's hosted catalog
(github.com/skypilot-org/skypilot-catalog, schema v8 for AWS and GCP; the Azure rows come from the
v6 file, the newest Azure catalog available offline — same columns). They are pinned so that a run
prices the same way with or without network, and so that the emulated run (no network at all) has
a catalog: SkyPilot treats catalog files without a `.meta/*.md5` as user-modified and never
re-fetches them. Prices are computed by SkyPilot's own `get_hourly_cost_impl`, never by a table here.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from llmpyramid.cloud.settings import CloudSettings
from llmpyramid.errors import ConfigError

CATALOG_VERSION = "v8"  # SkyPilot 0.14's CATALOG_SCHEMA_VERSION (checked in tests/unit)
AWS_IMAGE_TAG = "skypilot:custom-cpu-ubuntu"


def pinned_dir() -> Path:
    return Path(str(resources.files("llmpyramid.cloud").joinpath("catalogs")))


def _frame(cloud: str) -> Any:
    import pandas as pd  # a SkyPilot dependency; loaded only for pricing

    path = pinned_dir() / cloud / "vms.csv"
    return pd.read_csv(path)


def zone_prices(cloud: str, instance_type: str, region: str, use_spot: bool) -> dict[str, float]:
    """Hourly price per zone (per region for Azure, whose catalog has no zones), via SkyPilot's code."""
    from sky.catalog import common

    df = _frame(cloud)
    rows = df[(df["InstanceType"] == instance_type) & (df["Region"].str.lower() == region.lower())]
    if rows.empty:
        raise ConfigError(
            f"{instance_type} in {cloud}/{region} is not in the pinned catalog "
            f"({pinned_dir() / cloud / 'vms.csv'}); choose a listed instance/region or add its catalog rows"
        )
    if "AvailabilityZone" not in df.columns:
        return {region: common.get_hourly_cost_impl(df, instance_type, use_spot, region, None)}
    zones = sorted(set(rows["AvailabilityZone"]))
    return {z: common.get_hourly_cost_impl(df, instance_type, use_spot, region, z) for z in zones}


def pinned_spot_hourly(cloud: str, instance_type: str, region: str) -> tuple[float, float]:
    """(cheapest, dearest) spot price per hour over the region's zones, read from the pinned catalog rows
    without SkyPilot (the hybrid layer's cost per request; the cloud layer prices through SkyPilot's code)."""
    import csv

    with (pinned_dir() / cloud / "vms.csv").open(newline="") as f:
        prices = [float(row["SpotPrice"]) for row in csv.DictReader(f)
                  if row["InstanceType"] == instance_type and row["Region"].lower() == region.lower()
                  and row.get("SpotPrice")]  # fmt: skip
    if not prices:
        raise ConfigError(f"no spot price for {instance_type} in {cloud}/{region} in the pinned catalog")
    return min(prices), max(prices)


@dataclass(frozen=True)
class Estimate:
    cloud: str
    instance_type: str
    region: str
    use_spot: bool
    hourly_low_usd: float  # cheapest zone (what SkyPilot's optimizer shows)
    hourly_high_usd: float  # most expensive zone (what the guard assumes)
    worst_case_seconds: float
    max_cost_usd: float

    @property
    def worst_case_usd(self) -> float:
        return cost_usd(self.hourly_high_usd, self.worst_case_seconds)

    def describe(self) -> str:
        kind = "spot" if self.use_spot else "on-demand"
        return (
            f"{self.cloud} {self.instance_type} {kind} in {self.region}: ${self.hourly_low_usd:.4f}-"
            f"{self.hourly_high_usd:.4f}/h (SkyPilot catalog); worst case {self.worst_case_seconds / 60:.0f} min "
            f"= ${self.worst_case_usd:.4f} (cap CLOUD_MAX_COST_USD=${self.max_cost_usd:.2f})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "hourly_low_usd": round(self.hourly_low_usd, 6),
            "hourly_high_usd": round(self.hourly_high_usd, 6),
            "worst_case_usd": round(self.worst_case_usd, 6),
            "max_cost_usd": self.max_cost_usd,
        }


def cost_usd(hourly_usd: float, seconds: float) -> float:
    return hourly_usd * max(seconds, 0.0) / 3600.0


def estimate(settings: CloudSettings) -> Estimate:
    prices = zone_prices(settings.cloud, settings.instance, settings.region_name, settings.use_spot)
    return Estimate(
        settings.cloud,
        settings.instance,
        settings.region_name,
        settings.use_spot,
        min(prices.values()),
        max(prices.values()),
        settings.worst_case_seconds,
        settings.max_cost_usd,
    )


def guard(est: Estimate) -> None:
    """Refuse to launch when the worst case could cost more than the cap (exit 3)."""
    if est.worst_case_usd > est.max_cost_usd:
        raise ConfigError(
            f"cost guard: {est.describe()} exceeds the cap; raise CLOUD_MAX_COST_USD or lower the CLOUD_*_TIMEOUTs"
        )


def install(home: Path, cloud: str, image_id: str | None = None) -> Path:
    """Copy the pinned catalog into `home`'s SkyPilot catalog dir (no .meta md5: never re-fetched).

    `image_id` replaces every AMI in images.csv (the emulator maps SkyPilot's image to a moto image).
    """
    dest = home / ".sky" / "catalogs" / CATALOG_VERSION / cloud
    dest.mkdir(parents=True, exist_ok=True)
    for src in (pinned_dir() / cloud).glob("*.csv"):
        shutil.copy(src, dest / src.name)
    images = dest / "images.csv"
    if image_id and images.exists():
        images.write_text(re.sub(r"\bami-[0-9a-f]+\b", image_id, images.read_text()))
    return dest
