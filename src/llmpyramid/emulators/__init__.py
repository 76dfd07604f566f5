"""Emulated clouds for the LocalStack layer: moto (AWS) and fake-gcs-server (GCS) on loopback.

See `llmpyramid.emulators.manager` for the lifecycle and the endpoint resolution order.
"""

from llmpyramid.emulators.manager import (
    EMULATOR_CREDENTIALS,
    KINDS,
    EmulatorManager,
    EmulatorSettings,
    EmulatorState,
    Endpoint,
    check_reachable,
    client_env,
    emulators,
    normalize_url,
    user_endpoint,
)

__all__ = [
    "EMULATOR_CREDENTIALS",
    "KINDS",
    "EmulatorManager",
    "EmulatorSettings",
    "EmulatorState",
    "Endpoint",
    "check_reachable",
    "client_env",
    "emulators",
    "normalize_url",
    "user_endpoint",
]
