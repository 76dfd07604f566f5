# Base layer on Hetzner: private network, firewall, SSH keys, a load balancer in front of the base
# nodes (dedicated servers by IP plus the staging VM) and the on-demand staging VM.

locals {
  layer = "base"
  # Naming convention shared by all modules: <project>-<environment>-<layer>[-<suffix>]
  name = join("-", compact([var.project, var.environment, local.layer, var.name_suffix]))

  required_labels = {
    project       = var.project
    environment   = var.environment
    layer         = local.layer
    "managed-by"  = "terraform"
    "cost-center" = var.cost_center
  }
  labels = merge(var.extra_labels, local.required_labels)

  # Hetzner load balancers take no firewall, so a public one would bypass inference_allowed_cidrs:
  # it is public only with TLS terminated on it (managed certificate), else private-network only.
  load_balancer_public = length(var.tls_domain_names) > 0
}

resource "hcloud_network" "base" {
  name     = local.name
  ip_range = var.network_cidr
  labels   = local.labels
}

resource "hcloud_network_subnet" "cloud" {
  network_id   = hcloud_network.base.id
  type         = "cloud"
  network_zone = "eu-central"
  ip_range     = cidrsubnet(var.network_cidr, 8, 1)
}

resource "hcloud_ssh_key" "admin" {
  for_each   = var.ssh_public_keys
  name       = "${local.name}-${each.key}"
  public_key = each.value
  labels     = local.labels
}

resource "hcloud_firewall" "base" {
  name   = local.name
  labels = local.labels

  rule {
    description = "SSH from admin networks only"
    direction   = "in"
    protocol    = "tcp"
    port        = "22"
    source_ips  = var.admin_cidrs
  }

  dynamic "rule" {
    for_each = length(var.inference_allowed_cidrs) > 0 ? [1] : []
    content {
      description = "llama.cpp server from allowed networks"
      direction   = "in"
      protocol    = "tcp"
      port        = tostring(var.inference_port)
      source_ips  = var.inference_allowed_cidrs
    }
  }
}

resource "hcloud_server" "staging" {
  count        = var.staging_enabled ? 1 : 0
  name         = "${local.name}-staging"
  server_type  = var.staging_server_type
  image        = var.staging_image
  location     = var.location
  ssh_keys     = [for k in hcloud_ssh_key.admin : k.id]
  firewall_ids = [hcloud_firewall.base.id]
  labels       = merge(local.labels, { role = "staging" })
  # cloud-init installs and starts the llama.cpp server with the test model (invoke staging)
  user_data = var.staging_api_key == "" ? null : templatefile("${path.module}/templates/staging-cloud-init.yaml.tftpl", {
    api_key  = var.staging_api_key
    port     = var.inference_port
    repo_url = var.staging_repo_url
    repo_ref = var.staging_repo_ref
  })

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  network {
    network_id = hcloud_network.base.id
  }

  depends_on = [hcloud_network_subnet.cloud]
}

resource "hcloud_load_balancer" "inference" {
  name               = "${local.name}-lb"
  load_balancer_type = var.load_balancer_type
  location           = var.location
  labels             = local.labels
}

resource "hcloud_load_balancer_network" "inference" {
  load_balancer_id        = hcloud_load_balancer.inference.id
  network_id              = hcloud_network.base.id
  enable_public_interface = local.load_balancer_public

  depends_on = [hcloud_network_subnet.cloud]
}

resource "hcloud_managed_certificate" "inference" {
  count        = local.load_balancer_public ? 1 : 0
  name         = "${local.name}-tls"
  domain_names = var.tls_domain_names
  labels       = local.labels
}

# Public: HTTPS on 443 with the managed certificate, plain HTTP only from the load balancer to the
# nodes. Private: plain HTTP on 80, reachable from the private network only.
resource "hcloud_load_balancer_service" "inference" {
  load_balancer_id = hcloud_load_balancer.inference.id
  protocol         = local.load_balancer_public ? "https" : "http"
  listen_port      = local.load_balancer_public ? 443 : 80
  destination_port = var.inference_port

  dynamic "http" {
    for_each = local.load_balancer_public ? [1] : []
    content {
      certificates  = hcloud_managed_certificate.inference[*].id
      redirect_http = false
    }
  }

  health_check {
    protocol = "http"
    port     = var.inference_port
    interval = 10
    timeout  = 5
    retries  = 3

    http {
      path         = "/health"
      status_codes = ["200"]
    }
  }
}

# Dedicated servers are not created by the hcloud API; they join as IP targets.
resource "hcloud_load_balancer_target" "dedicated" {
  for_each         = { for n in var.dedicated_nodes : n.name => n }
  type             = "ip"
  load_balancer_id = hcloud_load_balancer.inference.id
  ip               = each.value.ip
}

resource "hcloud_load_balancer_target" "staging" {
  count            = var.staging_enabled ? 1 : 0
  type             = "server"
  load_balancer_id = hcloud_load_balancer.inference.id
  server_id        = hcloud_server.staging[0].id
  use_private_ip   = true

  depends_on = [hcloud_load_balancer_network.inference]
}
