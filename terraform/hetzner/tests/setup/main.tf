# Test fixture inputs for the hetzner tests; needs no provider, so it also runs offline.
terraform {
  required_version = ">= 1.7.0"
}

output "ssh_public_keys" {
  value = {
    ci = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk0dGVzdGtleWZvcnRlcnJhZm9ybXRlc3RzMDAwMDAw ci@llmpyramid"
  }
}

output "admin_cidrs" {
  value = ["203.0.113.0/24"]
}

output "dedicated_nodes" {
  value = [
    { name = "ax42-1", ip = "198.51.100.10" },
    { name = "ax42-2", ip = "198.51.100.11" },
  ]
}
