output "name" {
  description = "Name prefix used for every resource (<project>-<environment>-<layer>[-<suffix>])."
  value       = local.name
}

output "tags" {
  description = "Tags applied to every resource (required set plus extra_tags)."
  value       = local.tags
}

output "bucket_name" {
  description = "Checkpoint bucket name."
  value       = aws_s3_bucket.checkpoints.bucket
}

output "bucket_arn" {
  description = "Checkpoint bucket ARN."
  value       = aws_s3_bucket.checkpoints.arn
}

output "role_name" {
  description = "IAM role assumed by burst inference nodes."
  value       = aws_iam_role.inference.name
}

output "role_arn" {
  description = "ARN of the inference IAM role."
  value       = aws_iam_role.inference.arn
}

output "instance_profile_name" {
  description = "Instance profile wrapping the inference role."
  value       = aws_iam_instance_profile.inference.name
}

output "policy_arn" {
  description = "ARN of the least-privilege checkpoint policy."
  value       = aws_iam_policy.inference.arn
}

output "vpc_id" {
  description = "Burst VPC id, or null when create_network = false."
  value       = var.create_network ? aws_vpc.burst[0].id : null
}

output "subnet_id" {
  description = "Burst subnet id, or null when create_network = false."
  value       = var.create_network ? aws_subnet.burst[0].id : null
}

output "security_group_id" {
  description = "Inference security group id, or null when create_network = false."
  value       = var.create_network ? aws_security_group.inference[0].id : null
}
