# Plan-only tests with a mocked hcloud provider: no token, no network.
mock_provider "hcloud" {
  override_during = plan

  # hcloud ids are numeric strings; the generated mock strings would not convert to the number
  # attributes that reference them (load_balancer_id, network_id, firewall_ids, certificates).
  mock_resource "hcloud_network" {
    defaults = { id = "101" }
  }
  mock_resource "hcloud_firewall" {
    defaults = { id = "102" }
  }
  mock_resource "hcloud_load_balancer" {
    defaults = { id = "103" }
  }
  mock_resource "hcloud_server" {
    defaults = { id = "104" }
  }
  mock_resource "hcloud_managed_certificate" {
    defaults = { id = "105" }
  }
}

run "setup" {
  module {
    source = "./tests/setup"
  }
}

variables {
  environment     = "staging"
  ssh_public_keys = run.setup.ssh_public_keys
  admin_cidrs     = run.setup.admin_cidrs
  dedicated_nodes = run.setup.dedicated_nodes
}

run "naming" {
  command = plan

  variables {
    name_suffix = "ci7"
  }

  assert {
    condition     = hcloud_network.base.name == "llmpyramid-staging-base-ci7"
    error_message = "network name must follow <project>-<environment>-<layer>-<suffix>"
  }

  assert {
    condition     = hcloud_server.staging[0].name == "llmpyramid-staging-base-ci7-staging"
    error_message = "staging VM name must follow the naming convention"
  }

  assert {
    condition     = hcloud_load_balancer.inference.name == "llmpyramid-staging-base-ci7-lb"
    error_message = "load balancer name must follow the naming convention"
  }
}

run "labels" {
  command = plan

  variables {
    extra_labels = { owner = "platform" }
  }

  assert {
    condition = alltrue([
      for labels in [hcloud_network.base.labels, hcloud_firewall.base.labels, hcloud_server.staging[0].labels, hcloud_load_balancer.inference.labels] :
      alltrue([for k in ["project", "environment", "layer", "managed-by", "cost-center"] : contains(keys(labels), k)])
    ])
    error_message = "every labelled resource must carry the required label set"
  }

  assert {
    condition     = hcloud_server.staging[0].labels["layer"] == "base" && hcloud_server.staging[0].labels["owner"] == "platform"
    error_message = "labels must combine the required set with extra_labels"
  }
}

run "firewall_restricts_ssh" {
  command = plan

  assert {
    condition     = one([for r in hcloud_firewall.base.rule : r.source_ips if r.port == "22"]) == toset(["203.0.113.0/24"])
    error_message = "SSH must only be open to admin_cidrs"
  }

  assert {
    condition     = length(hcloud_firewall.base.rule) == 1
    error_message = "without inference_allowed_cidrs only the SSH rule may exist"
  }
}

run "staging_vm_defaults_to_cpx31" {
  command = plan

  assert {
    condition     = hcloud_server.staging[0].server_type == "cpx31"
    error_message = "the staging VM must default to CPX31 (seed: Staging)"
  }

  assert {
    condition     = contains(hcloud_server.staging[0].firewall_ids, hcloud_firewall.base.id)
    error_message = "the staging VM must be behind the firewall"
  }
}

run "load_balancer_targets_dedicated_nodes" {
  command = plan

  assert {
    condition     = length(hcloud_load_balancer_target.dedicated) == 2 && hcloud_load_balancer_target.dedicated["ax42-1"].ip == "198.51.100.10"
    error_message = "each dedicated node must become an IP target"
  }

  assert {
    condition     = one(hcloud_load_balancer_service.inference.health_check).http[0].path == "/health"
    error_message = "the load balancer must health-check /health"
  }
}

run "load_balancer_private_without_tls" {
  command = plan

  assert {
    condition     = hcloud_load_balancer_network.inference.enable_public_interface == false
    error_message = "without tls_domain_names the load balancer must have no public interface"
  }

  assert {
    condition     = hcloud_load_balancer_service.inference.protocol == "http" && hcloud_load_balancer_service.inference.listen_port == 80 && length(hcloud_managed_certificate.inference) == 0
    error_message = "a private load balancer serves HTTP on 80 and has no certificate"
  }
}

run "load_balancer_terminates_tls_when_public" {
  command = plan

  variables {
    tls_domain_names = ["inference.example.com"]
  }

  assert {
    condition     = hcloud_load_balancer_network.inference.enable_public_interface == true
    error_message = "with tls_domain_names the load balancer is public"
  }

  assert {
    condition     = hcloud_load_balancer_service.inference.protocol == "https" && hcloud_load_balancer_service.inference.listen_port == 443
    error_message = "a public load balancer must terminate TLS on 443"
  }

  assert {
    condition     = length(one(hcloud_load_balancer_service.inference.http).certificates) == 1 && contains(hcloud_managed_certificate.inference[0].domain_names, "inference.example.com")
    error_message = "the HTTPS service must use the managed certificate for tls_domain_names"
  }
}

run "rejects_bad_tls_domain" {
  command = plan

  variables {
    tls_domain_names = ["Not A Domain"]
  }

  expect_failures = [var.tls_domain_names]
}

run "staging_is_optional" {
  command = plan

  variables {
    staging_enabled = false
  }

  assert {
    condition     = length(hcloud_server.staging) == 0 && length(hcloud_load_balancer_target.staging) == 0
    error_message = "no staging VM when staging_enabled = false"
  }
}

run "rejects_world_open_ssh" {
  command = plan

  variables {
    admin_cidrs = ["0.0.0.0/0"]
  }

  expect_failures = [var.admin_cidrs]
}

# World-open by prefix length (< /8 IPv4, < /32 IPv6), however it is spelled.
run "rejects_split_world_ssh" {
  command = plan

  variables {
    admin_cidrs = ["0.0.0.0/1", "128.0.0.0/1"]
  }

  expect_failures = [var.admin_cidrs]
}

run "rejects_ipv6_world_spelled_out" {
  command = plan

  variables {
    admin_cidrs = ["::0/0"]
  }

  expect_failures = [var.admin_cidrs]
}

run "rejects_prefix_zero_with_host_bits" {
  command = plan

  variables {
    admin_cidrs = ["1.2.3.4/0"]
  }

  expect_failures = [var.admin_cidrs]
}

run "rejects_world_open_inference" {
  command = plan

  variables {
    inference_allowed_cidrs = ["0::/0"]
  }

  expect_failures = [var.inference_allowed_cidrs]
}

run "rejects_invalid_environment" {
  command = plan

  variables {
    environment = "Prod"
  }

  expect_failures = [var.environment]
}

run "rejects_invalid_project_name" {
  command = plan

  variables {
    project = "9pyramid"
  }

  expect_failures = [var.project]
}

run "rejects_overriding_required_labels" {
  command = plan

  variables {
    extra_labels = { layer = "burst" }
  }

  expect_failures = [var.extra_labels]
}

run "rejects_expensive_staging_type" {
  command = plan

  variables {
    staging_server_type = "ccx63"
  }

  expect_failures = [var.staging_server_type]
}

run "rejects_bad_ssh_key" {
  command = plan

  variables {
    ssh_public_keys = { bad = "not-a-key" }
  }

  expect_failures = [var.ssh_public_keys]
}

run "rejects_invalid_dedicated_ip" {
  command = plan

  variables {
    dedicated_nodes = [{ name = "ax42-1", ip = "999.1.1.1" }]
  }

  expect_failures = [var.dedicated_nodes]
}
