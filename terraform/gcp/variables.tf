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
  description = "Optional suffix appended to names so parallel runs do not collide."
  type        = string
  default     = ""

  validation {
    condition     = var.name_suffix == "" || can(regex("^[a-z0-9]{1,12}$", var.name_suffix))
    error_message = "name_suffix must be empty or 1-12 lowercase letters/digits."
  }
}

variable "cost_center" {
  description = "Cost center label value."
  type        = string
  default     = "inference"

  validation {
    condition     = can(regex("^[a-z0-9-]{2,32}$", var.cost_center))
    error_message = "cost_center must be 2-32 lowercase letters, digits or hyphens."
  }
}

variable "extra_labels" {
  description = "Additional labels; cannot override the required label set."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setintersection(keys(var.extra_labels), [
      "project", "environment", "layer", "managed-by", "cost-center"
    ])) == 0
    error_message = "extra_labels must not redefine required labels (project, environment, layer, managed-by, cost-center)."
  }
}

variable "gcp_project_id" {
  description = "GCP project id that owns the resources."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.gcp_project_id))
    error_message = "gcp_project_id must be a valid GCP project id (6-30 chars, lowercase)."
  }
}

variable "region" {
  description = "GCP region for the instance group, autoscaler and subnet."
  type        = string
  default     = "europe-west4"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must look like a GCP region, e.g. europe-west4."
  }
}

variable "machine_type" {
  description = "Machine type of burst spot VMs (seed: n2d-highmem-2)."
  type        = string
  default     = "n2d-highmem-2"

  validation {
    condition     = can(regex("^(e2|n2|n2d|n4|c3|c3d|t2d)-(standard|highmem|highcpu)-(2|4|8|16)$", var.machine_type))
    error_message = "machine_type must be an e2/n2/n2d/n4/c3/c3d/t2d standard/highmem/highcpu type with 2-16 vCPU."
  }
}

variable "source_image" {
  description = "Boot image of burst VMs."
  type        = string
  default     = "projects/debian-cloud/global/images/family/debian-12"
}

variable "termination_action" {
  description = "What GCP does when it reclaims a spot VM."
  type        = string
  default     = "DELETE"

  validation {
    condition     = contains(["STOP", "DELETE"], var.termination_action)
    error_message = "termination_action must be STOP or DELETE."
  }
}

variable "autoscaler_min" {
  description = "Minimum burst replicas (0 = scale to zero when idle)."
  type        = number
  default     = 0

  validation {
    condition     = var.autoscaler_min >= 0 && floor(var.autoscaler_min) == var.autoscaler_min
    error_message = "autoscaler_min must be a non-negative integer."
  }
}

variable "autoscaler_max" {
  description = "Maximum burst replicas; capped to keep a runaway autoscaler cheap."
  type        = number
  default     = 4

  validation {
    condition     = var.autoscaler_max >= 1 && var.autoscaler_max <= 10 && floor(var.autoscaler_max) == var.autoscaler_max
    error_message = "autoscaler_max must be an integer between 1 and 10."
  }

  validation {
    condition     = var.autoscaler_max >= var.autoscaler_min
    error_message = "autoscaler_max must be >= autoscaler_min."
  }
}

variable "autoscaler_cpu_target" {
  description = "CPU utilisation target of the autoscaler."
  type        = number
  default     = 0.6

  validation {
    condition     = var.autoscaler_cpu_target > 0 && var.autoscaler_cpu_target <= 0.9
    error_message = "autoscaler_cpu_target must be in (0, 0.9]."
  }
}

variable "subnet_cidr" {
  description = "CIDR of the burst subnet."
  type        = string
  default     = "10.70.0.0/20"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0))
    error_message = "subnet_cidr must be a valid IPv4 CIDR."
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
  description = "CIDRs allowed to reach the inference port (e.g. the Hetzner load balancer)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.inference_allowed_cidrs : can(cidrhost(c, 0)) && try(tonumber(split("/", c)[1]) >= (strcontains(c, ":") ? 32 : 8), false)])
    error_message = "inference_allowed_cidrs must be valid CIDRs no wider than /8 (IPv4) or /32 (IPv6); wider ranges such as 0.0.0.0/1 or ::/0 open the port to the internet."
  }
}

variable "admin_cidrs" {
  description = "CIDRs allowed to SSH to burst VMs; each no wider than /8 (IPv4) or /32 (IPv6) (IAP range 35.235.240.0/20 is typical)."
  type        = list(string)
  default     = ["35.235.240.0/20"]

  validation {
    condition     = alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && try(tonumber(split("/", c)[1]) >= (strcontains(c, ":") ? 32 : 8), false)])
    error_message = "admin_cidrs must be valid CIDRs no wider than /8 (IPv4) or /32 (IPv6); wider ranges such as 0.0.0.0/1 or ::/0 open the port to the internet."
  }
}

variable "bucket_location" {
  description = "Location of the models/checkpoints bucket."
  type        = string
  default     = "EU"
}

variable "checkpoint_versions_kept" {
  description = "Non-current object versions kept per checkpoint before deletion."
  type        = number
  default     = 3

  validation {
    condition     = var.checkpoint_versions_kept >= 1 && var.checkpoint_versions_kept <= 20
    error_message = "checkpoint_versions_kept must be between 1 and 20."
  }
}

variable "noncurrent_retention_days" {
  description = "Days a non-current object version is kept at most."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_retention_days >= 1 && var.noncurrent_retention_days <= 365
    error_message = "noncurrent_retention_days must be between 1 and 365."
  }
}

variable "force_destroy" {
  description = "Allow destroying a non-empty bucket (test runs only)."
  type        = bool
  default     = false
}
