# Plan-only tests with a mocked provider: no credentials, no network.
mock_provider "aws" {
  override_during = plan

  mock_resource "aws_s3_bucket" {
    defaults = {
      arn = "arn:aws:s3:::mock-bucket"
    }
  }
  mock_resource "aws_iam_policy" {
    defaults = {
      arn = "arn:aws:iam::123456789012:policy/mock"
    }
  }
}

variables {
  environment = "test"
}

run "naming_and_tags" {
  command = plan

  variables {
    name_suffix = "ci42"
  }

  assert {
    condition     = aws_s3_bucket.checkpoints.bucket == "llmpyramid-test-burst-ci42-checkpoints"
    error_message = "bucket name must follow <project>-<environment>-<layer>-<suffix>-checkpoints"
  }

  assert {
    condition     = aws_iam_role.inference.name == "llmpyramid-test-burst-ci42-inference"
    error_message = "role name must follow the naming convention"
  }

  assert {
    condition = alltrue([
      for k in ["project", "environment", "layer", "managed-by", "cost-center"] :
      contains(keys(aws_s3_bucket.checkpoints.tags), k)
    ])
    error_message = "bucket must carry the required tag set"
  }

  assert {
    condition     = aws_iam_role.inference.tags["managed-by"] == "terraform" && aws_iam_role.inference.tags["layer"] == "burst"
    error_message = "role must carry managed-by and layer tags"
  }
}

run "bucket_is_private_versioned_encrypted" {
  command = plan

  assert {
    condition     = aws_s3_bucket_versioning.checkpoints.versioning_configuration[0].status == "Enabled"
    error_message = "versioning must be enabled"
  }

  assert {
    condition = (
      aws_s3_bucket_public_access_block.checkpoints.block_public_acls &&
      aws_s3_bucket_public_access_block.checkpoints.block_public_policy &&
      aws_s3_bucket_public_access_block.checkpoints.ignore_public_acls &&
      aws_s3_bucket_public_access_block.checkpoints.restrict_public_buckets
    )
    error_message = "all four public access block settings must be true"
  }

  assert {
    condition     = one([for r in aws_s3_bucket_server_side_encryption_configuration.checkpoints.rule : one(r.apply_server_side_encryption_by_default).sse_algorithm]) == "AES256"
    error_message = "default encryption must be SSE-S3 when no KMS key is given"
  }

  assert {
    condition     = jsondecode(aws_s3_bucket_policy.checkpoints.policy).Statement[0].Condition.Bool["aws:SecureTransport"] == "false"
    error_message = "bucket policy must deny non-TLS access"
  }

  assert {
    condition     = jsondecode(aws_s3_bucket_policy.checkpoints.policy).Statement[0].Effect == "Deny"
    error_message = "TLS statement must be a Deny"
  }
}

run "kms_key_switches_encryption" {
  command = plan

  variables {
    kms_key_arn = "arn:aws:kms:eu-central-1:123456789012:key/00000000-0000-0000-0000-000000000000"
  }

  assert {
    condition     = one([for r in aws_s3_bucket_server_side_encryption_configuration.checkpoints.rule : one(r.apply_server_side_encryption_by_default).sse_algorithm]) == "aws:kms"
    error_message = "a KMS key must switch encryption to aws:kms"
  }

  assert {
    condition     = contains([for s in jsondecode(aws_iam_policy.inference.policy).Statement : s.Sid], "UseCheckpointKey")
    error_message = "the inference policy must grant use of the KMS key"
  }
}

run "lifecycle" {
  command = plan

  variables {
    checkpoint_noncurrent_days = 14
  }

  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.checkpoints.rule[0].noncurrent_version_expiration[0].noncurrent_days == 14
    error_message = "noncurrent versions must expire after checkpoint_noncurrent_days"
  }

  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.checkpoints.rule[0].abort_incomplete_multipart_upload[0].days_after_initiation == 7
    error_message = "incomplete multipart uploads must be aborted"
  }

  assert {
    condition     = one([for t in aws_s3_bucket_lifecycle_configuration.checkpoints.rule[0].transition : t.storage_class]) == "STANDARD_IA"
    error_message = "current checkpoints must transition to STANDARD_IA"
  }
}

run "iam_is_least_privilege" {
  command = plan

  assert {
    condition     = jsondecode(aws_iam_role.inference.assume_role_policy).Statement[0].Principal.Service == "ec2.amazonaws.com"
    error_message = "only EC2 may assume the inference role"
  }

  assert {
    condition = alltrue(flatten([
      for s in jsondecode(aws_iam_policy.inference.policy).Statement : [
        for a in s.Action : !strcontains(a, "*")
      ]
    ]))
    error_message = "the inference policy must not use wildcard actions"
  }

  assert {
    condition = alltrue(flatten([
      for s in jsondecode(aws_iam_policy.inference.policy).Statement : [
        for r in s.Resource : r != "*"
      ]
    ]))
    error_message = "the inference policy must not grant on every resource"
  }

  assert {
    condition     = aws_iam_instance_profile.inference.role == aws_iam_role.inference.name
    error_message = "the instance profile must wrap the inference role"
  }
}

run "network_is_optional" {
  command = plan

  assert {
    condition     = length(aws_vpc.burst) == 0 && length(aws_security_group.inference) == 0
    error_message = "no network resources unless create_network = true"
  }
}

run "network_restricts_ssh" {
  command = plan

  variables {
    create_network          = true
    admin_cidrs             = ["203.0.113.0/24"]
    inference_allowed_cidrs = ["198.51.100.0/24"]
  }

  assert {
    condition     = length(aws_vpc.burst) == 1 && aws_subnet.burst[0].map_public_ip_on_launch == false
    error_message = "network must be created with a private subnet"
  }

  assert {
    condition = alltrue([
      for rule in aws_security_group.inference[0].ingress :
      !contains(rule.cidr_blocks, "0.0.0.0/0")
    ])
    error_message = "no ingress rule may be open to the world"
  }

  assert {
    condition     = contains([for rule in aws_security_group.inference[0].ingress : rule.from_port], 22)
    error_message = "SSH must be allowed from admin CIDRs when given"
  }
}

run "rejects_world_open_ssh" {
  command = plan

  variables {
    create_network = true
    admin_cidrs    = ["0.0.0.0/0"]
  }

  expect_failures = [var.admin_cidrs]
}

# World-open by prefix length (< /8 IPv4, < /32 IPv6), however it is spelled.
run "rejects_split_world_ssh" {
  command = plan

  variables {
    create_network = true
    admin_cidrs    = ["0.0.0.0/1", "128.0.0.0/1"]
  }

  expect_failures = [var.admin_cidrs]
}

run "rejects_ipv6_world_spelled_out" {
  command = plan

  variables {
    create_network = true
    admin_cidrs    = ["::0/0"]
  }

  expect_failures = [var.admin_cidrs]
}

run "rejects_prefix_zero_with_host_bits" {
  command = plan

  variables {
    create_network = true
    admin_cidrs    = ["1.2.3.4/0"]
  }

  expect_failures = [var.admin_cidrs]
}

run "rejects_world_open_inference" {
  command = plan

  variables {
    create_network          = true
    inference_allowed_cidrs = ["0::/0"]
  }

  expect_failures = [var.inference_allowed_cidrs]
}

run "rejects_unknown_environment" {
  command = plan

  variables {
    environment = "production"
  }

  expect_failures = [var.environment]
}

run "rejects_invalid_project_name" {
  command = plan

  variables {
    project = "LLM_Pyramid"
  }

  expect_failures = [var.project]
}

run "rejects_invalid_suffix" {
  command = plan

  variables {
    name_suffix = "Has-Upper"
  }

  expect_failures = [var.name_suffix]
}

run "rejects_overriding_required_tags" {
  command = plan

  variables {
    extra_tags = { "managed-by" = "clickops" }
  }

  expect_failures = [var.extra_tags]
}

run "rejects_short_transition" {
  command = plan

  variables {
    checkpoint_transition_days = 7
  }

  expect_failures = [var.checkpoint_transition_days]
}
