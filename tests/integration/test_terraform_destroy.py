"""terraform/aws destroyed for real against the AWS emulator: every resource the apply created is gone.

The check destroys, so it has its own apply (its own name suffix) instead of the session's: no other
test depends on running before it, and it runs in any order, on any worker.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.integration.conftest import applying

if TYPE_CHECKING:
    from llmpyramid.emulators import Endpoint
    from llmpyramid.emulators.terraform import TerraformRun

pytestmark = [pytest.mark.localstack, pytest.mark.terraform, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def own_apply(aws_endpoint: Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TerraformRun]:
    with applying(aws_endpoint, uuid.uuid4().hex[:10], tmp_path_factory.mktemp("tf-aws-destroy")) as run:
        yield run


def test_destroy_removes_everything(own_apply, s3, iam, ec2):
    from botocore.exceptions import ClientError

    out = own_apply.wait_apply()
    resources = own_apply.managed_resources()
    assert resources, "the apply created nothing to destroy"
    assert own_apply.destroy() == len(resources)
    assert own_apply.managed_resources() == []
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=out["bucket_name"])
    for call, kwargs in [
        (iam.get_role, {"RoleName": out["role_name"]}),
        (iam.get_policy, {"PolicyArn": out["policy_arn"]}),
        (iam.get_instance_profile, {"InstanceProfileName": out["instance_profile_name"]}),
    ]:
        with pytest.raises(ClientError) as err:
            call(**kwargs)
        assert err.value.response["Error"]["Code"] == "NoSuchEntity"
    assert not ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [out["vpc_id"]]}])["Vpcs"]
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [out["security_group_id"]]}])
    assert not groups["SecurityGroups"]
    assert not ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [out["name"]]}])["Vpcs"]
