# Burst-layer AWS resources: S3 checkpoint storage, an IAM identity for inference nodes and an
# optional network. No provider block: the caller configures the provider (region, endpoints).

locals {
  layer = "burst"
  # Naming convention shared by all modules: <project>-<environment>-<layer>[-<suffix>]
  name = join("-", compact([var.project, var.environment, local.layer, var.name_suffix]))

  required_tags = {
    project       = var.project
    environment   = var.environment
    layer         = local.layer
    "managed-by"  = "terraform"
    "cost-center" = var.cost_center
  }
  tags = merge(var.extra_tags, local.required_tags)

  bucket_name = "${local.name}-checkpoints"
  use_kms     = var.kms_key_arn != ""
}

# --- checkpoint bucket ------------------------------------------------------------------------

resource "aws_s3_bucket" "checkpoints" {
  bucket        = local.bucket_name
  force_destroy = var.force_destroy
  tags          = merge(local.tags, { Name = local.bucket_name })
}

resource "aws_s3_bucket_ownership_controls" "checkpoints" {
  bucket = aws_s3_bucket.checkpoints.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "checkpoints" {
  bucket                  = aws_s3_bucket.checkpoints.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "checkpoints" {
  bucket = aws_s3_bucket.checkpoints.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "checkpoints" {
  bucket = aws_s3_bucket.checkpoints.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.use_kms ? "aws:kms" : "AES256"
      kms_master_key_id = local.use_kms ? var.kms_key_arn : null
    }
    bucket_key_enabled = local.use_kms
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "checkpoints" {
  bucket = aws_s3_bucket.checkpoints.id

  rule {
    id     = "checkpoints"
    status = "Enabled"

    filter {}

    transition {
      days          = var.checkpoint_transition_days
      storage_class = "STANDARD_IA"
    }

    noncurrent_version_expiration {
      noncurrent_days = var.checkpoint_noncurrent_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Versioning must exist before noncurrent-version rules are meaningful.
  depends_on = [aws_s3_bucket_versioning.checkpoints]
}

resource "aws_s3_bucket_policy" "checkpoints" {
  bucket = aws_s3_bucket.checkpoints.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.checkpoints.arn, "${aws_s3_bucket.checkpoints.arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })

  # A policy written before the public access block could be rejected as public.
  depends_on = [aws_s3_bucket_public_access_block.checkpoints]
}

# --- IAM identity for burst inference nodes -----------------------------------------------------

resource "aws_iam_role" "inference" {
  name = "${local.name}-inference"
  path = "/${var.project}/"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

locals {
  # Least privilege: list the bucket, read/write checkpoint objects; nothing else.
  inference_statements = concat(
    [
      {
        Sid      = "ListCheckpointBucket"
        Effect   = "Allow"
        Action   = ["s3:ListBucket", "s3:GetBucketLocation"]
        Resource = [aws_s3_bucket.checkpoints.arn]
      },
      {
        Sid      = "ReadWriteCheckpoints"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
        Resource = ["${aws_s3_bucket.checkpoints.arn}/*"]
      },
    ],
    local.use_kms ? [{
      Sid      = "UseCheckpointKey"
      Effect   = "Allow"
      Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
      Resource = [var.kms_key_arn]
    }] : [],
  )
}

resource "aws_iam_policy" "inference" {
  name        = "${local.name}-checkpoints-rw"
  path        = "/${var.project}/"
  description = "Read/write access to the ${local.bucket_name} checkpoint bucket only."
  policy      = jsonencode({ Version = "2012-10-17", Statement = local.inference_statements })
  tags        = local.tags
}

resource "aws_iam_role_policy_attachment" "inference" {
  role       = aws_iam_role.inference.name
  policy_arn = aws_iam_policy.inference.arn
}

resource "aws_iam_instance_profile" "inference" {
  name = "${local.name}-inference"
  path = "/${var.project}/"
  role = aws_iam_role.inference.name
  tags = local.tags
}

# --- optional network for burst nodes -----------------------------------------------------------

resource "aws_vpc" "burst" {
  count                = var.create_network ? 1 : 0
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(local.tags, { Name = local.name })
}

# Lock down the VPC's default security group so nothing lands in an open group by accident.
resource "aws_default_security_group" "burst" {
  count  = var.create_network ? 1 : 0
  vpc_id = aws_vpc.burst[0].id
  tags   = merge(local.tags, { Name = "${local.name}-default-deny" })
}

resource "aws_subnet" "burst" {
  count                   = var.create_network ? 1 : 0
  vpc_id                  = aws_vpc.burst[0].id
  cidr_block              = cidrsubnet(var.vpc_cidr, 8, 0)
  map_public_ip_on_launch = false
  tags                    = merge(local.tags, { Name = "${local.name}-a" })
}

resource "aws_security_group" "inference" {
  count       = var.create_network ? 1 : 0
  name        = "${local.name}-inference"
  description = "Burst inference nodes: inference port from allowed CIDRs, SSH from admin CIDRs"
  vpc_id      = aws_vpc.burst[0].id
  tags        = merge(local.tags, { Name = "${local.name}-inference" })

  dynamic "ingress" {
    for_each = length(var.inference_allowed_cidrs) > 0 ? [1] : []
    content {
      description = "llama.cpp server"
      from_port   = var.inference_port
      to_port     = var.inference_port
      protocol    = "tcp"
      cidr_blocks = var.inference_allowed_cidrs
    }
  }

  dynamic "ingress" {
    for_each = length(var.admin_cidrs) > 0 ? [1] : []
    content {
      description = "SSH from admin networks"
      from_port   = 22
      to_port     = 22
      protocol    = "tcp"
      cidr_blocks = var.admin_cidrs
    }
  }

  egress {
    description = "HTTPS for model and checkpoint downloads"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}
