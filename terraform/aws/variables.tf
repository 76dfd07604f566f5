variable "project" {
  description = "Project name; first part of every resource name (lowercase letters, digits, hyphens)."
  type        = string
  default     = "llmpyramid"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}[a-z0-9]$", var.project))
    error_message = "project must be 3-22 chars of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Deployment environment."
  type        = string

  validation {
    condition     = contains(["dev", "test", "staging", "prod"], var.environment)
    error_message = "environment must be one of: dev, test, staging, prod."
  }
}

variable "name_suffix" {
  description = "Optional suffix appended to names so parallel runs (CI, emulators) do not collide."
  type        = string
  default     = ""

  validation {
    condition     = var.name_suffix == "" || can(regex("^[a-z0-9]{1,12}$", var.name_suffix))
    error_message = "name_suffix must be empty or 1-12 lowercase letters/digits."
  }
}

variable "cost_center" {
  description = "Cost center tag value."
  type        = string
  default     = "inference"

  validation {
    condition     = can(regex("^[a-z0-9-]{2,32}$", var.cost_center))
    error_message = "cost_center must be 2-32 lowercase letters, digits or hyphens."
  }
}

variable "extra_tags" {
  description = "Additional tags; cannot override the required tag set."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setintersection(keys(var.extra_tags), [
      "project", "environment", "layer", "managed-by", "cost-center"
    ])) == 0
    error_message = "extra_tags must not redefine required tags (project, environment, layer, managed-by, cost-center)."
  }
}

variable "checkpoint_noncurrent_days" {
  description = "Days after which non-current checkpoint object versions are deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.checkpoint_noncurrent_days >= 1 && var.checkpoint_noncurrent_days <= 365
    error_message = "checkpoint_noncurrent_days must be between 1 and 365."
  }
}

variable "checkpoint_transition_days" {
  description = "Days after which current checkpoints move to STANDARD_IA (minimum 30 for S3)."
  type        = number
  default     = 30

  validation {
    condition     = var.checkpoint_transition_days >= 30
    error_message = "checkpoint_transition_days must be at least 30 (S3 minimum for STANDARD_IA)."
  }
}

variable "kms_key_arn" {
  description = "Optional customer-managed KMS key ARN; empty uses SSE-S3 (AES256)."
  type        = string
  default     = ""

  validation {
    condition     = var.kms_key_arn == "" || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be empty or a KMS key ARN."
  }
}

variable "force_destroy" {
  description = "Allow destroying a non-empty bucket (test/emulator runs only)."
  type        = bool
  default     = false
}

variable "create_network" {
  description = "Create a VPC, subnet and security group for burst inference nodes."
  type        = bool
  default     = false
}

variable "vpc_cidr" {
  description = "CIDR of the burst VPC (only when create_network = true)."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr must be a valid IPv4 CIDR."
  }
}

variable "inference_port" {
  description = "TCP port of the llama.cpp server."
  type        = number
  default     = 8080

  validation {
    condition     = var.inference_port >= 1024 && var.inference_port <= 65535
    error_message = "inference_port must be an unprivileged port (1024-65535)."
  }
}

variable "inference_allowed_cidrs" {
  description = "CIDRs allowed to reach the inference port (e.g. the Hetzner base layer / load balancer)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.inference_allowed_cidrs : can(cidrhost(c, 0)) && try(tonumber(split("/", c)[1]) >= (strcontains(c, ":") ? 32 : 8), false)])
    error_message = "inference_allowed_cidrs must be valid CIDRs no wider than /8 (IPv4) or /32 (IPv6); wider ranges such as 0.0.0.0/1 or ::/0 open the port to the internet."
  }
}

variable "admin_cidrs" {
  description = "CIDRs allowed to SSH to burst nodes; each no wider than /8 (IPv4) or /32 (IPv6)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && try(tonumber(split("/", c)[1]) >= (strcontains(c, ":") ? 32 : 8), false)])
    error_message = "admin_cidrs must be valid CIDRs no wider than /8 (IPv4) or /32 (IPv6); wider ranges such as 0.0.0.0/1 or ::/0 open the port to the internet."
  }
}
