"""terraform/aws applied for real against the AWS emulator and checked with boto3 (the destroy check has
its own apply: tests/integration/test_terraform_destroy.py).

    uv run pytest tests/integration/test_terraform_integration.py -v   # apply ~60 s, destroy ~15 s
    uv run pytest tests/integration/ -k Config                          # config checks, no emulator

The module declares no provider; a throw-away root module plus a generated provider override
(llmpyramid.emulators.terraform, like `tflocal`) sends every API call to the emulator. Names carry
a per-run suffix so parallel runs against one emulator never collide.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from llmpyramid.emulators.terraform import AWS_SERVICES, TerraformRun, provider_override
from llmpyramid.iac.inputs import load_module
from llmpyramid.iac.paths import module_dir

MODULE_DIR = module_dir("aws")
WORLD = ("0.0.0.0/0", "::/0")

# What terraform/aws creates with create_network = true (see terraform/aws/main.tf).
EXPECTED_TYPES = {
    "aws_s3_bucket", "aws_s3_bucket_ownership_controls", "aws_s3_bucket_public_access_block",
    "aws_s3_bucket_versioning", "aws_s3_bucket_server_side_encryption_configuration",
    "aws_s3_bucket_lifecycle_configuration", "aws_s3_bucket_policy", "aws_iam_role", "aws_iam_policy",
    "aws_iam_role_policy_attachment", "aws_iam_instance_profile", "aws_vpc", "aws_default_security_group",
    "aws_subnet", "aws_security_group",
}  # fmt: skip


# --- config checks: no emulator, no terraform ---------------------------------------------------


@pytest.fixture(scope="module")
def hcl() -> dict[str, list[Any]]:
    """terraform/aws parsed by the IaC layer's HCL loader (string quotes stripped)."""
    return load_module(MODULE_DIR)


def _blocks(doc: dict[str, list[Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for block in doc.get(kind, []) for name, body in block.items()}


def _resource_types(doc: dict[str, list[Any]]) -> set[str]:
    return {rtype for block in doc.get("resource", []) for rtype in block}


class TestAwsModuleConfig:
    """Module defaults and outputs are sane, read from the HCL (seed: `pytest tests/integration/ -k Config`)."""

    def test_module_leaves_the_provider_to_the_caller(self, hcl):
        assert "provider" not in hcl

    def test_every_variable_is_typed_and_documented(self, hcl):
        for name, body in _blocks(hcl, "variable").items():
            assert body.get("description"), f"variable {name} has no description"
            assert body.get("type"), f"variable {name} has no type"

    def test_defaults_are_safe(self, hcl):
        variables = _blocks(hcl, "variable")
        assert variables["force_destroy"]["default"] is False
        assert variables["create_network"]["default"] is False
        assert variables["admin_cidrs"]["default"] == []
        assert variables["inference_allowed_cidrs"]["default"] == []
        assert variables["checkpoint_transition_days"]["default"] >= 30
        assert 1 <= variables["checkpoint_noncurrent_days"]["default"] <= 365

    @pytest.mark.parametrize("variable", ["admin_cidrs", "inference_allowed_cidrs"])
    def test_cidrs_wider_than_a_slash_8_are_refused(self, hcl, variable):
        """0.0.0.0/0, ::/0 and every other world-sized range (0.0.0.0/1, ...) fail validation by prefix length."""
        validation = _blocks(hcl, "variable")[variable]["validation"]
        condition = (validation[0] if isinstance(validation, list) else validation)["condition"]
        assert f"for c in var.{variable} :" in condition and "can(cidrhost(c, 0))" in condition
        assert re.search(r'tonumber\(split\("/", c\)\[1\]\) >= \(strcontains\(c, ":"\) \? 32 : 8\)', condition), (
            condition
        )

    def test_outputs_are_documented_and_cover_what_callers_need(self, hcl):
        outputs = _blocks(hcl, "output")
        for name, body in outputs.items():
            assert body.get("description"), f"output {name} has no description"
        assert {"bucket_name", "bucket_arn", "role_arn", "policy_arn", "instance_profile_name"} <= set(outputs)
        assert {"vpc_id", "subnet_id", "security_group_id"} <= set(outputs)

    def test_bucket_hardening_resources_are_declared(self, hcl):
        assert _resource_types(hcl) >= EXPECTED_TYPES


class TestEmulatorOverrideConfig:
    """The generated provider override routes every AWS service the module uses to the emulator."""

    SERVICE_OF: ClassVar[dict[str, str]] = {
        "aws_s3_": "s3",
        "aws_iam_": "iam",
        "aws_vpc": "ec2",
        "aws_subnet": "ec2",
        "aws_default_": "ec2",
        "aws_security_group": "ec2",
    }

    def test_override_covers_every_service_the_module_calls(self, hcl):
        types = _resource_types(hcl)
        used = {svc for rtype in types for prefix, svc in self.SERVICE_OF.items() if rtype.startswith(prefix)}
        unknown = {r for r in types if not any(r.startswith(p) for p in self.SERVICE_OF)}
        assert not unknown, f"map these resource types to an AWS service: {sorted(unknown)}"
        assert used | {"sts"} <= set(AWS_SERVICES)

    def test_override_points_at_the_endpoint_with_emulator_settings(self):
        hcl = provider_override("http://127.0.0.1:1234")
        for svc in AWS_SERVICES:
            assert re.search(rf'^\s*{svc}\s*=\s*"http://127.0.0.1:1234"$', hcl, re.M), svc
        assert "s3_use_path_style           = true" in hcl
        assert "skip_credentials_validation = true" in hcl

    def test_override_endpoint_is_escaped(self):
        assert json.dumps('http://x/"y') in provider_override('http://x/"y')


# --- apply / verify against the emulator -----------------------------------------------


@dataclass
class Applied:
    run: TerraformRun
    resources: list[str]  # managed resource addresses in state after apply
    outputs: dict[str, Any]


@pytest.fixture(scope="module")
def applied(aws_apply: TerraformRun) -> Applied:
    """The session's apply (started in the background by conftest), waited for."""
    outputs = aws_apply.wait_apply()
    return Applied(aws_apply, aws_apply.managed_resources(), outputs)


@pytest.fixture(scope="module")
def out(applied: Applied) -> dict[str, Any]:
    return applied.outputs


APPLY_MARKS = [pytest.mark.localstack, pytest.mark.terraform, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.mark.usefixtures("applied")
class TestApplyAgainstEmulator:
    pytestmark = APPLY_MARKS

    def test_apply_creates_every_declared_resource(self, applied):
        types = {re.sub(r"\[\d+\]$", "", addr).split(".")[-2] for addr in applied.resources}
        assert types == EXPECTED_TYPES
        assert len(applied.resources) == len(EXPECTED_TYPES)

    def test_names_carry_the_run_suffix(self, out, run_id):
        assert run_id in out["bucket_name"] and run_id in out["role_name"]


class TestBucket:
    pytestmark = APPLY_MARKS

    def test_versioning_enabled(self, s3, out):
        assert s3.get_bucket_versioning(Bucket=out["bucket_name"])["Status"] == "Enabled"

    def test_encrypted_at_rest(self, s3, out):
        rules = s3.get_bucket_encryption(Bucket=out["bucket_name"])["ServerSideEncryptionConfiguration"]["Rules"]
        assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")

    def test_lifecycle_rules(self, s3, out):
        rules = s3.get_bucket_lifecycle_configuration(Bucket=out["bucket_name"])["Rules"]
        assert len(rules) == 1
        rule = rules[0]
        assert rule["Status"] == "Enabled"
        assert rule["Transitions"] == [{"Days": 30, "StorageClass": "STANDARD_IA"}]
        assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
        assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7

    def test_public_access_fully_blocked(self, s3, out):
        block = s3.get_public_access_block(Bucket=out["bucket_name"])["PublicAccessBlockConfiguration"]
        assert block == {
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
        }  # fmt: skip

    def test_bucket_policy_denies_insecure_transport(self, s3, out):
        policy = json.loads(s3.get_bucket_policy(Bucket=out["bucket_name"])["Policy"])
        deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
        assert deny, policy
        assert deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert set(deny[0]["Resource"]) == {out["bucket_arn"], f"{out['bucket_arn']}/*"}
        assert not [
            s for s in policy["Statement"] if s["Effect"] == "Allow" and s.get("Principal") in ("*", {"AWS": "*"})
        ]

    def test_object_ownership_enforced(self, s3, out):
        rules = s3.get_bucket_ownership_controls(Bucket=out["bucket_name"])["OwnershipControls"]["Rules"]
        assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]

    def test_required_tags(self, s3, out):
        tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=out["bucket_name"])["TagSet"]}
        assert {k: tags.get(k) for k in out["tags"]} == out["tags"]


class TestIam:
    pytestmark = APPLY_MARKS

    def test_role_is_assumable_by_ec2_only(self, iam, out):
        doc = iam.get_role(RoleName=out["role_name"])["Role"]["AssumeRolePolicyDocument"]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        assert [s["Principal"] for s in doc["Statement"]] == [{"Service": "ec2.amazonaws.com"}]

    def test_policy_statements_are_least_privilege(self, iam, out):
        version = iam.get_policy(PolicyArn=out["policy_arn"])["Policy"]["DefaultVersionId"]
        doc = iam.get_policy_version(PolicyArn=out["policy_arn"], VersionId=version)["PolicyVersion"]["Document"]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        statements = {s["Sid"]: s for s in doc["Statement"]}
        assert set(statements) == {"ListCheckpointBucket", "ReadWriteCheckpoints"}
        for s in statements.values():
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
            assert s["Effect"] == "Allow"
            assert all(a.startswith("s3:") and "*" not in a for a in actions), actions
            assert all(r.startswith(out["bucket_arn"]) for r in resources), resources
        assert "s3:DeleteObject" not in statements["ReadWriteCheckpoints"]["Action"]

    def test_policy_attached_to_role_and_profile(self, iam, out):
        attached = iam.list_attached_role_policies(RoleName=out["role_name"])["AttachedPolicies"]
        assert [p["PolicyArn"] for p in attached] == [out["policy_arn"]]
        profile = iam.get_instance_profile(InstanceProfileName=out["instance_profile_name"])["InstanceProfile"]
        assert [r["RoleName"] for r in profile["Roles"]] == [out["role_name"]]


def _cidrs(permission: dict[str, Any]) -> set[str]:
    return {r["CidrIp"] for r in permission.get("IpRanges", [])} | {
        r["CidrIpv6"] for r in permission.get("Ipv6Ranges", [])
    }


def _covers(permission: dict[str, Any], port: int) -> bool:
    if permission.get("IpProtocol") == "-1":
        return True
    return permission.get("FromPort", 0) <= port <= permission.get("ToPort", 65535)


@pytest.fixture(scope="module")
def sg(ec2, out) -> dict[str, Any]:
    return ec2.describe_security_groups(GroupIds=[out["security_group_id"]])["SecurityGroups"][0]


class TestNetwork:
    pytestmark = APPLY_MARKS

    def test_no_ssh_from_the_internet(self, sg):
        for perm in sg["IpPermissions"]:
            if _covers(perm, 22):
                assert not _cidrs(perm) & set(WORLD), perm

    def test_ssh_only_from_admin_cidrs(self, sg, applied):
        ssh = [p for p in sg["IpPermissions"] if _covers(p, 22)]
        assert ssh and all(_cidrs(p) == set(applied.run.variables["admin_cidrs"]) for p in ssh)

    def test_inference_port_only_from_allowed_cidrs(self, sg, applied):
        rules = [p for p in sg["IpPermissions"] if _covers(p, 8080)]
        assert rules and all(_cidrs(p) == set(applied.run.variables["inference_allowed_cidrs"]) for p in rules)

    def test_nothing_else_is_open(self, sg):
        ports = sorted((p["FromPort"], p["ToPort"], p["IpProtocol"]) for p in sg["IpPermissions"])
        assert ports == [(22, 22, "tcp"), (8080, 8080, "tcp")]

    def test_egress_is_https_only(self, sg):
        egress = [(p.get("FromPort"), p.get("ToPort"), p["IpProtocol"]) for p in sg["IpPermissionsEgress"]]
        assert egress == [(443, 443, "tcp")]

    def test_default_security_group_is_locked_down(self, ec2, out):
        groups = ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [out["vpc_id"]]}, {"Name": "group-name", "Values": ["default"]}]
        )["SecurityGroups"]
        assert len(groups) == 1
        assert groups[0]["IpPermissions"] == [] and groups[0]["IpPermissionsEgress"] == []

    def test_subnet_assigns_no_public_ips(self, ec2, out):
        subnet = ec2.describe_subnets(SubnetIds=[out["subnet_id"]])["Subnets"][0]
        assert subnet["VpcId"] == out["vpc_id"]
        assert subnet["MapPublicIpOnLaunch"] is False
