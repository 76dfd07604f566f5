output "name" {
  description = "Name prefix used for every resource (<project>-<environment>-<layer>[-<suffix>])."
  value       = local.name
}

output "labels" {
  description = "Labels applied to every resource (required set plus extra_labels)."
  value       = local.labels
}

output "network_id" {
  description = "Private network id."
  value       = hcloud_network.base.id
}

output "firewall_id" {
  description = "Firewall id attached to the staging VM (attach it to other cloud servers too)."
  value       = hcloud_firewall.base.id
}

output "load_balancer_ipv4" {
  description = "Public IPv4 of the inference load balancer, or null when it is private (no tls_domain_names)."
  value       = local.load_balancer_public ? hcloud_load_balancer.inference.ipv4 : null
}

output "load_balancer_private_ip" {
  description = "Private-network IP of the inference load balancer."
  value       = hcloud_load_balancer_network.inference.ip
}

output "inference_url" {
  description = "URL clients use: https://<first TLS domain> when public, http://<private IP> otherwise."
  value       = local.load_balancer_public ? "https://${var.tls_domain_names[0]}" : "http://${hcloud_load_balancer_network.inference.ip}"
}

output "staging_ipv4" {
  description = "Public IPv4 of the staging VM, or null when staging_enabled = false."
  value       = var.staging_enabled ? hcloud_server.staging[0].ipv4_address : null
}

output "dedicated_targets" {
  description = "Dedicated node IPs registered as load balancer targets."
  value       = [for n in var.dedicated_nodes : n.ip]
}
