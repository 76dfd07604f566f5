"""SkyPilot against moto, offline: the emulated cloud for the `cloud_emulated` layer.

    python -m llmpyramid.cloud netns -- pytest tests/cloud_emulated   # loopback-only network namespace (root)

    with EmulatedAWS(tmp_dir) as aws:      # inside that namespace
        ...                                # real SkyPilot SDK + API server, moto as EC2/IAM/STS/S3

What it takes (measured with skypilot 0.14.1 + moto 5.2.5, see ../shared/ENVIRONMENT.md):
- a private HOME (SkyPilot state, API server, catalogs) with the pinned catalog whose images.csv maps
  SkyPilot's image to a moto AMI; fake keys and AWS_ENDPOINT_URL set *before* the API server starts
  (it keeps the environment it was started with);
- moto seeded with SkyPilot's `skypilot-v1` role/instance profile (moto rejects SkyPilot's own IAM
  setup) and an internet gateway + 0.0.0.0/0 route (else "All candidate subnets are private");
- PIP_NO_BUILD_ISOLATION=0: SkyPilot builds its own wheel for the instance, and pip's isolated build
  would fetch setuptools from PyPI;
- a network namespace with only loopback: SkyPilot probes the fake public IPs moto hands out, and no
  packet may leave the machine. SSH to the instance is therefore impossible by design: launches stop
  at the SSH phase, which is what the emulated tests assert. In a namespace this run created, ephemeral
  ports stay below SkyPilot's queue-manager range (api_server.queue_manager_port), so none can take it;
  a namespace someone else made is used as it is.
moto and SkyPilot's API server are started here as managed services (llmpyramid.procs), so SkyPilot's
client never daemonizes a server of its own; leaving the context stops both with their workers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from llmpyramid.cloud import api_server, catalog
from llmpyramid.cloud.api_server import ApiServer
from llmpyramid.config import patched_environ
from llmpyramid.emulators.manager import EmulatorManager, EmulatorSettings
from llmpyramid.errors import InfrastructureError
from llmpyramid.procs import ProcessIdentity, private_dir

MOTO_AMI = "ami-785db401"  # an Ubuntu image in moto's built-in list
REGION = "us-east-1"
UNAVAILABLE_ENV = "LLMPYRAMID_NETNS_UNAVAILABLE"  # why the namespace could not be created
CREATED_FROM_ENV = "LLMPYRAMID_NETNS_CREATED_FROM"  # run_in_netns -> its `--inside` child: the namespace it left
OWNED_ENV = "LLMPYRAMID_NETNS_OWNED"  # inside_netns -> the command: the namespace this run created and set up
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
# Ephemeral ports (outgoing sockets, bind to port 0) in our namespace: below [50000, 60000), where
# SkyPilot's server binds its queue manager ~10 s after checking the port is free.
EPHEMERAL_PORTS = (32768, 49999)
PORT_RANGE_SYSCTL = Path("/proc/sys/net/ipv4/ip_local_port_range")  # per network namespace
_ASSUME_ROLE = {
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
}


# --- the loopback-only network namespace ------------------------------------------------------------


def interfaces() -> list[str]:
    """Interfaces of *this process's* network namespace (sysfs would show the mount namespace's)."""
    return sorted(name for _, name in socket.if_nameindex())


def _lo_flags(sock: socket.socket) -> int:
    request = struct.pack("16sH14s", b"lo", 0, b"\0" * 14)
    return int(struct.unpack("16sH14s", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1])


def loopback_only_reason() -> str | None:
    """None inside a namespace whose only interface is an up loopback; else why not."""
    names = interfaces()
    if names != ["lo"]:
        return f"network interfaces {', '.join(names)} besides loopback: not an isolated namespace"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if not _lo_flags(sock) & _IFF_UP:
            return "loopback is down"
    return None


def bring_loopback_up() -> None:
    """`ip link set lo up` without iproute2: SIOCSIFFLAGS on lo."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = _lo_flags(sock) | _IFF_UP
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags, b"\0" * 14))


def netns_id() -> str | None:
    """This process's network namespace ('net:[4026531840]'); None where /proc does not say."""
    try:
        return os.readlink("/proc/self/ns/net")
    except OSError:
        return None


def created_by_this_run(environ: Mapping[str, str] | None = None) -> bool:
    """The namespace this process is in was created by `run_in_netns` for this run: the creator's marker names
    the namespace it ran in, and this is another one (`netns --inside` run by hand finds no marker, or its own)."""
    left = (os.environ if environ is None else environ).get(CREATED_FROM_ENV)
    here = netns_id()
    return left is not None and here is not None and left != here


def namespace_is_ours() -> bool:
    """For the command: it runs in the namespace this run created and narrowed (see inside_netns)."""
    here = netns_id()
    return here is not None and os.environ.get(OWNED_ENV) == here


def _cannot_create_netns() -> str | None:
    """None when `unshare -n` works here; else why not."""
    if os.geteuid() != 0:
        return "creating a network namespace needs root (unshare -n)"
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -n failed: {probe.stderr.strip() or probe.returncode}"


def run_in_netns(command: list[str]) -> int:
    """Run `command` in a fresh loopback-only namespace (`unshare -n`, needs root).

    A namespace this run creates is ours to set up (loopback up, ephemeral port range). Where none can be
    created, a loopback-only namespace we are already in (the user's own) is used as it is, never changed;
    elsewhere the command still runs, with UNAVAILABLE_ENV saying why, so the emulated tests report
    themselves skipped with that reason instead of passing or touching a network.
    """
    reason = _cannot_create_netns()
    if reason is None:
        inner = [sys.executable, "-m", "llmpyramid.cloud", "netns", "--inside", "--", *command]
        unshare = shutil.which("unshare") or "unshare"
        return subprocess.call([unshare, "-n", "--", *inner], env={**os.environ, CREATED_FROM_ENV: netns_id() or "?"})
    if loopback_only_reason() is None:
        print(f"cloud_emulated: {reason}; using this loopback-only namespace as it is (not ours: its ephemeral "
              "port range is left alone)", file=sys.stderr, flush=True)  # fmt: skip
        return subprocess.call(command)
    print(f"cloud_emulated: {reason}; the emulated tests will be skipped", file=sys.stderr, flush=True)
    return subprocess.call(command, env={**os.environ, UNAVAILABLE_ENV: reason})


def inside_netns(command: list[str]) -> int:
    """`netns --inside`: set up the namespace `run_in_netns` just created, run `command` in it."""
    env = {k: v for k, v in os.environ.items() if k != CREATED_FROM_ENV}
    if not created_by_this_run():  # run by hand: nothing here is ours to change
        print("cloud_emulated: this network namespace was not created by this run: left as it is",
              file=sys.stderr, flush=True)  # fmt: skip
        return subprocess.call(command, env=env)
    bring_loopback_up()
    reason = loopback_only_reason()
    if reason:
        print(f"cloud_emulated: namespace check failed: {reason}", file=sys.stderr, flush=True)
        return 2
    with narrowed_ephemeral_ports():
        return subprocess.call(command, env={**env, OWNED_ENV: netns_id() or ""})


@contextlib.contextmanager
def narrowed_ephemeral_ports() -> Iterator[None]:
    """EPHEMERAL_PORTS inside the block, the previous range after it. Only in a namespace this run created
    (the sysctl is per namespace). Such a namespace ends with its last process, and its sysctl with it; the
    restore covers a process of the command that outlives it and keeps the namespace alive."""
    try:
        previous = PORT_RANGE_SYSCTL.read_text()
        PORT_RANGE_SYSCTL.write_text("{} {}\n".format(*EPHEMERAL_PORTS))
    except OSError as exc:
        raise InfrastructureError(f"cannot set {PORT_RANGE_SYSCTL} in our namespace: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            PORT_RANGE_SYSCTL.write_text(previous)


# --- moto + SkyPilot ------------------------------------------------------------------------------


class EmulatedAWS:
    """moto on loopback, seeded for SkyPilot, and SkyPilot's API server started in moto's environment.

    Both are managed services (llmpyramid.procs) in `<root>/run` (0700; state and logs 0600), owned by
    this process: they die with it, and leaving the context stops each with its whole process family."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.home = self.root / "home"
        self.run_dir = self.root / "run"
        self.emulators = EmulatorManager(EmulatorSettings.from_env(run_dir=self.run_dir))
        self.endpoint = ""
        self.sky_api: ApiServer | None = None
        self._environ: contextlib.ExitStack | None = None

    def env(self) -> dict[str, str]:
        """What SkyPilot's client and server see: set before the server starts (it keeps the environment
        it was started with), and the client is pointed at that server only."""
        assert self.sky_api is not None, "enter the context first"
        return {
            "HOME": str(self.home),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "PIP_NO_BUILD_ISOLATION": "0",  # pip's quirk: 0 turns build isolation *off*
            "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
            api_server.PORT_ENV: str(self.sky_api.port),
            api_server.NO_LOCAL_SERVER_ENV: "1",
        }

    def __enter__(self) -> EmulatedAWS:
        reason = loopback_only_reason()
        if reason:
            raise InfrastructureError(
                f"refusing to run SkyPilot against moto outside a loopback-only namespace: {reason}"
            )
        if not shutil.which("rsync"):
            raise InfrastructureError("rsync is not on PATH (SkyPilot needs it): apt-get install -y rsync")
        private_dir(self.root)
        private_dir(self.home)
        catalog.install(self.home, "aws", image_id=MOTO_AMI)
        self._environ = contextlib.ExitStack()
        try:
            self.endpoint = self.emulators.up("aws", owner_pid=os.getpid()).url
            self.sky_api = ApiServer(self.run_dir, api_server.free_api_port())
            self._environ.enter_context(patched_environ(self.env()))
            self.seed()
            self.sky_api.up(os.environ, owner_pid=os.getpid())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def processes(self) -> list[ProcessIdentity]:
        """Every process this emulator runs now: moto, SkyPilot's API server, its workers and its reaper."""
        moto = self.emulators.service("aws").running()
        return [*([moto.identity] if moto else []), *(self.sky_api.processes() if self.sky_api else [])]

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint)

    def seed(self) -> None:
        iam = self.client("iam")
        iam.create_role(RoleName="skypilot-v1", AssumeRolePolicyDocument=json.dumps(_ASSUME_ROLE))
        iam.create_instance_profile(InstanceProfileName="skypilot-v1")
        iam.add_role_to_instance_profile(InstanceProfileName="skypilot-v1", RoleName="skypilot-v1")
        ec2 = self.client("ec2")
        vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        tables = ec2.describe_route_tables(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "association.main", "Values": ["true"]}]
        )["RouteTables"]
        ec2.create_route(RouteTableId=tables[0]["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)

    # --- what the tests look at -----------------------------------------------------------------

    def instances(self, cluster: str | None = None) -> list[dict[str, Any]]:
        filters = [{"Name": "tag-key", "Values": ["skypilot-cluster-name"]}]
        out = self.client("ec2").describe_instances(Filters=filters)
        found = [i for r in out["Reservations"] for i in r["Instances"]]
        if cluster:
            found = [i for i in found if _tag(i, "skypilot-cluster-name").startswith(cluster)]
        return found

    def live_instances(self, cluster: str | None = None) -> list[dict[str, Any]]:
        return [i for i in self.instances(cluster) if i["State"]["Name"] != "terminated"]

    def security_groups(self, prefix: str = "sky-sg-") -> list[str]:
        groups = self.client("ec2").describe_security_groups()["SecurityGroups"]
        return sorted(g["GroupName"] for g in groups if g["GroupName"].startswith(prefix))

    def wait_instance_running(self, cluster: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [i for i in self.live_instances(cluster) if i["State"]["Name"] == "running"]
            if running:
                return running[0]
            time.sleep(1.0)
        raise InfrastructureError(f"no running instance for {cluster} in moto within {timeout:.0f}s")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.sky_api is not None:
                self.sky_api.down()
        finally:
            self.emulators.down("aws")
            if self._environ is not None:
                self._environ.close()


def _tag(instance: dict[str, Any], key: str) -> str:
    return next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == key), "")
