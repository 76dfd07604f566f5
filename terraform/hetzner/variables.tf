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

variable "location" {
  description = "Hetzner Cloud location for the network zone, staging VM and load balancer."
  type        = string
  default     = "fsn1"

  validation {
    condition     = contains(["fsn1", "nbg1", "hel1"], var.location)
    error_message = "location must be an eu-central location: fsn1, nbg1 or hel1."
  }
}

variable "network_cidr" {
  description = "Private network range shared by the load balancer, staging VM and dedicated nodes (vSwitch)."
  type        = string
  default     = "10.60.0.0/16"

  validation {
    condition     = can(cidrhost(var.network_cidr, 0)) && tonumber(split("/", var.network_cidr)[1]) <= 24
    error_message = "network_cidr must be a valid IPv4 CIDR of /24 or larger."
  }
}

variable "ssh_public_keys" {
  description = "Admin SSH public keys, by name."
  type        = map(string)

  validation {
    condition     = length(var.ssh_public_keys) > 0
    error_message = "ssh_public_keys must contain at least one key."
  }

  validation {
    condition     = alltrue([for k in values(var.ssh_public_keys) : can(regex("^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/=]+( .*)?$", k))])
    error_message = "ssh_public_keys values must be OpenSSH public keys (ssh-ed25519, ecdsa-sha2-*, ssh-rsa)."
  }
}

variable "admin_cidrs" {
  description = "CIDRs allowed to SSH to the nodes; each no wider than /8 (IPv4) or /32 (IPv6)."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && try(tonumber(split("/", c)[1]) >= (strcontains(c, ":") ? 32 : 8), false)])
    error_message = "admin_cidrs must be a non-empty list of valid CIDRs no wider than /8 (IPv4) or /32 (IPv6); wider ranges such as 0.0.0.0/1 or ::/0 open SSH to the internet."
  }
}

variable "inference_allowed_cidrs" {
  description = "CIDRs allowed to reach the inference port directly (the load balancer uses the private network)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.inference_allowed_cidrs : can(cidrhost(c, 0)) && try(tonumber(split("/", c)[1]) >= (strcontains(c, ":") ? 32 : 8), false)])
    error_message = "inference_allowed_cidrs must be valid CIDRs no wider than /8 (IPv4) or /32 (IPv6); wider ranges such as 0.0.0.0/1 or ::/0 open the port to the internet."
  }
}

variable "inference_port" {
  description = "TCP port of the llama.cpp server on each node."
  type        = number
  default     = 8080

  validation {
    condition     = var.inference_port >= 1024 && var.inference_port <= 65535
    error_message = "inference_port must be an unprivileged port (1024-65535)."
  }
}

variable "staging_enabled" {
  description = "Create the on-demand staging VM (seed: Hetzner Cloud CPX31, spin up for testing)."
  type        = bool
  default     = true
}

variable "staging_server_type" {
  description = "Server type of the staging VM."
  type        = string
  default     = "cpx31"

  validation {
    condition     = contains(["cpx11", "cpx21", "cpx31", "cpx41", "cx22", "cx32", "cx42"], var.staging_server_type)
    error_message = "staging_server_type must be a shared-vCPU type up to 8 vCPU (cpx11-cpx41, cx22-cx42)."
  }
}

variable "staging_image" {
  description = "OS image of the staging VM."
  type        = string
  default     = "ubuntu-24.04"
}

variable "staging_api_key" {
  description = "Per-run API key the staging VM's llama.cpp server requires; set by invoke staging through TF_VAR_staging_api_key. Empty: no server is installed (plain VM)."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.staging_api_key == "" || length(var.staging_api_key) >= 16
    error_message = "staging_api_key must be empty or at least 16 characters."
  }
}

# staging_repo_url/staging_repo_ref reach the cloud-init YAML and a git command line, so only plain values
# pass. The patterns are llmpyramid.staging's REPO_URL_PATTERN/REPO_REF_PATTERN, which check them before
# terraform runs: they must agree (tests/unit/test_staging.py checks that they do).
variable "staging_repo_url" {
  description = "https:// URL of this repository, cloned by the staging VM's cloud-init (llmpyramid.cloud.node serves the model)."
  type        = string
  default     = ""

  validation {
    condition     = var.staging_repo_url == "" || can(regex("^https://[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$", var.staging_repo_url))
    error_message = "staging_repo_url must be empty or a plain https:// URL: host, optional port and path of letters, digits and . _ ~ / - only (no credentials, quotes, spaces, $ or backticks)."
  }
}

variable "staging_repo_ref" {
  description = "Commit, branch or tag the staging VM checks out (invoke staging passes the tested commit)."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}$", var.staging_repo_ref))
    error_message = "staging_repo_ref must be a plain git ref or commit: letters, digits and . _ / - only, not starting with - . or /."
  }
}

variable "dedicated_nodes" {
  description = "Dedicated bare-metal base nodes (e.g. AX42), created outside the hcloud API; their public IPs become load balancer targets."
  type = list(object({
    name = string
    ip   = string
  }))
  default = []

  validation {
    condition     = alltrue([for n in var.dedicated_nodes : can(cidrhost("${n.ip}/32", 0)) && can(regex("^[a-z0-9-]{1,40}$", n.name))])
    error_message = "dedicated_nodes entries need a lowercase name and a valid IPv4 address."
  }

  validation {
    condition     = length(distinct([for n in var.dedicated_nodes : n.ip])) == length(var.dedicated_nodes)
    error_message = "dedicated_nodes IPs must be unique."
  }
}

variable "load_balancer_type" {
  description = "Hetzner load balancer type."
  type        = string
  default     = "lb11"

  validation {
    condition     = contains(["lb11", "lb21", "lb31"], var.load_balancer_type)
    error_message = "load_balancer_type must be lb11, lb21 or lb31."
  }
}

variable "tls_domain_names" {
  description = "Domain names (in a Hetzner DNS zone) for the load balancer's managed TLS certificate. Set: the load balancer is public and serves HTTPS on 443. Empty: it has no public interface and serves HTTP on 80 inside the private network only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for d in var.tls_domain_names : can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", d))])
    error_message = "tls_domain_names must be lowercase DNS names such as inference.example.com."
  }
}
