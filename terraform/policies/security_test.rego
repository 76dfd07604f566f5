package terraform.security_test

import data.terraform.lib
import data.terraform.security

labels := {"project": "p", "environment": "test", "layer": "burst", "managed-by": "terraform", "cost-center": "c"}

res(t, values) := {"address": sprintf("%s.x", [t]), "type": t, "name": "x", "values": values, "refs": []}

rules(findings) := {f.rule | some f in findings}

test_aws_sg_world_ssh_denied if {
	sg := res("aws_security_group", {"name": "ok-sg", "tags": labels, "ingress": [{"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_blocks": ["0.0.0.0/0"]}]})
	"ssh_world_open" in rules(security.deny) with input as {"resources": [sg]}
}

test_aws_sg_all_protocols_world_denied if {
	sg := res("aws_security_group", {"name": "ok-sg", "tags": labels, "ingress": [{"protocol": "-1", "from_port": 0, "to_port": 0, "ipv6_cidr_blocks": ["::/0"]}]})
	"ssh_world_open" in rules(security.deny) with input as {"resources": [sg]}
}

test_aws_sg_admin_ssh_allowed if {
	sg := res("aws_security_group", {"name": "ok-sg", "tags": labels, "ingress": [{"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_blocks": ["203.0.113.0/24"]}]})
	count(security.deny) == 0 with input as {"resources": [sg]}
}

test_aws_sg_world_https_allowed if {
	sg := res("aws_security_group", {"name": "ok-sg", "tags": labels, "ingress": [{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}]})
	not "ssh_world_open" in rules(security.deny) with input as {"resources": [sg]}
}

test_hcloud_firewall_world_ssh_denied if {
	fw := res("hcloud_firewall", {"name": "fw-base", "labels": labels, "rule": [{"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["0.0.0.0/0", "::/0"]}]})
	"ssh_world_open" in rules(security.deny) with input as {"resources": [fw]}
}

test_hcloud_firewall_port_range_covering_ssh_denied if {
	fw := res("hcloud_firewall", {"name": "fw-base", "labels": labels, "rule": [{"direction": "in", "protocol": "tcp", "port": "1-1024", "source_ips": ["0.0.0.0/0"]}]})
	"ssh_world_open" in rules(security.deny) with input as {"resources": [fw]}
}

test_hcloud_firewall_unknown_sources_not_judged if {
	fw := res("hcloud_firewall", {"name": "fw-base", "labels": labels, "rule": [{"direction": "in", "protocol": "tcp", "port": "22", "source_ips": "${var.admin_cidrs}"}]})
	count(security.deny) == 0 with input as {"resources": [fw]}
}

test_gcp_firewall_world_ssh_denied if {
	fw := res("google_compute_firewall", {"name": "fw-base", "source_ranges": ["0.0.0.0/0"], "allow": [{"protocol": "tcp", "ports": ["22"]}]})
	"ssh_world_open" in rules(security.deny) with input as {"resources": [fw]}
}

# World-open by prefix length, not by spelling (minimum /8 IPv4, /32 IPv6; see lib.rego).
world_open_forms := ["0.0.0.0/0", "::/0", "0.0.0.0/1", "128.0.0.0/1", "::0/0", "0::/0", "1.2.3.4/0", "10.0.0.0/7", "2000::/3"]

test_world_open_forms_recognised if {
	every cidr in world_open_forms {
		lib.world_open(cidr)
	}
}

test_narrow_and_unknown_networks_not_world_open if {
	every cidr in ["203.0.113.0/24", "10.0.0.0/8", "198.51.100.7/32", "2001:db8::/32", "${var.admin_cidrs}", "10.1.2.3"] {
		not lib.world_open(cidr)
	}
}

hcloud_ssh_from(cidrs) := {"resources": [res("hcloud_firewall", {"name": "fw-base", "labels": labels, "rule": [{"direction": "in", "protocol": "tcp", "port": "22", "source_ips": cidrs}]})]}

test_hcloud_split_halves_denied if {
	"ssh_world_open" in rules(security.deny) with input as hcloud_ssh_from(["203.0.113.0/24", "0.0.0.0/1", "128.0.0.0/1"])
}

test_hcloud_ipv6_spelled_out_denied if {
	"ssh_world_open" in rules(security.deny) with input as hcloud_ssh_from(["::0/0"])
}

test_hcloud_ipv6_leading_zero_denied if {
	"ssh_world_open" in rules(security.deny) with input as hcloud_ssh_from(["0::/0"])
}

test_hcloud_prefix_zero_with_host_bits_denied if {
	"ssh_world_open" in rules(security.deny) with input as hcloud_ssh_from(["1.2.3.4/0"])
}

test_aws_sg_split_halves_denied if {
	sg := res("aws_security_group", {"name": "ok-sg", "tags": labels, "ingress": [{"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_blocks": ["0.0.0.0/1", "128.0.0.0/1"]}]})
	"ssh_world_open" in rules(security.deny) with input as {"resources": [sg]}
}

test_aws_rule_ipv6_spelled_out_denied if {
	r := res("aws_vpc_security_group_ingress_rule", {"ip_protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_ipv6": "0::/0"})
	"ssh_world_open" in rules(security.deny) with input as {"resources": [r]}
}

test_gcp_firewall_prefix_zero_denied if {
	fw := res("google_compute_firewall", {"name": "fw-base", "source_ranges": ["1.2.3.4/0"], "allow": [{"protocol": "tcp", "ports": ["22"]}]})
	"ssh_world_open" in rules(security.deny) with input as {"resources": [fw]}
}

test_hcloud_admin_slash8_allowed if {
	count(security.deny) == 0 with input as hcloud_ssh_from(["10.0.0.0/8", "2001:db8::/32"])
}

lb := {"address": "hcloud_load_balancer.x", "type": "hcloud_load_balancer", "name": "x", "values": {"name": "lb-base", "labels": labels}, "refs": []}

lb_service(protocol) := {"address": "hcloud_load_balancer_service.x", "type": "hcloud_load_balancer_service", "name": "x", "values": {"protocol": protocol, "listen_port": 443}, "refs": ["hcloud_load_balancer.x"]}

lb_network(public) := {"address": "hcloud_load_balancer_network.x", "type": "hcloud_load_balancer_network", "name": "x", "values": {"enable_public_interface": public}, "refs": ["hcloud_load_balancer.x"]}

test_public_lb_plain_tcp_denied if {
	"lb_plaintext_public" in rules(security.deny) with input as {"resources": [lb, lb_service("tcp")]}
}

test_public_lb_plain_http_on_network_denied if {
	"lb_plaintext_public" in rules(security.deny) with input as {"resources": [lb, lb_service("http"), lb_network(true)]}
}

test_public_lb_https_allowed if {
	count(security.deny) == 0 with input as {"resources": [lb, lb_service("https")]}
}

test_private_lb_plain_http_allowed if {
	count(security.deny) == 0 with input as {"resources": [lb, lb_service("http"), lb_network(false)]}
}

test_lb_unknown_protocol_not_judged if {
	count(security.deny) == 0 with input as {"resources": [lb, lb_service("${local.load_balancer_public ? \"https\" : \"http\"}")]}
}

test_gcp_firewall_egress_ignored if {
	fw := res("google_compute_firewall", {"name": "fw-base", "direction": "EGRESS", "source_ranges": ["0.0.0.0/0"], "allow": [{"protocol": "tcp", "ports": ["22"]}]})
	count(security.deny) == 0 with input as {"resources": [fw]}
}

test_missing_labels_denied if {
	srv := res("hcloud_server", {"name": "srv", "labels": {"project": "p"}})
	"required_labels_missing" in rules(security.deny) with input as {"resources": [srv]}
}

test_no_tags_denied if {
	b := res("aws_iam_role", {"name": "role", "tags": null})
	"required_labels_missing" in rules(security.deny) with input as {"resources": [b]}
}

test_full_labels_allowed if {
	srv := res("hcloud_server", {"name": "srv", "labels": labels})
	count(security.deny) == 0 with input as {"resources": [srv]}
}

test_invalid_name_denied if {
	net := res("hcloud_network", {"name": "Base_Network", "labels": labels})
	"invalid_name" in rules(security.deny) with input as {"resources": [net]}
}

test_unknown_name_not_judged if {
	net := res("hcloud_network", {"name": "${local.name}", "labels": labels})
	count(security.deny) == 0 with input as {"resources": [net]}
}

bucket := res("aws_s3_bucket", {"bucket": "p-test-burst-checkpoints", "tags": labels})

sse := {"address": "aws_s3_bucket_server_side_encryption_configuration.x", "type": "aws_s3_bucket_server_side_encryption_configuration", "name": "x", "values": {}, "refs": ["aws_s3_bucket.x"]}

pab(flag) := {"address": "aws_s3_bucket_public_access_block.x", "type": "aws_s3_bucket_public_access_block", "name": "x", "refs": ["aws_s3_bucket.x"], "values": {"block_public_acls": true, "block_public_policy": flag, "ignore_public_acls": true, "restrict_public_buckets": true}}

test_unencrypted_bucket_denied if {
	"s3_bucket_unencrypted" in rules(security.deny) with input as {"resources": [bucket, pab(true)]}
}

test_encrypted_private_bucket_allowed if {
	count(security.deny) == 0 with input as {"resources": [bucket, sse, pab(true)]}
}

test_sse_for_another_bucket_does_not_count if {
	other := object.union(sse, {"refs": ["aws_s3_bucket.other"]})
	"s3_bucket_unencrypted" in rules(security.deny) with input as {"resources": [bucket, other, pab(true)]}
}

test_partial_public_access_block_denied if {
	"s3_public_access" in rules(security.deny) with input as {"resources": [bucket, sse, pab(false)]}
}

test_public_acl_denied if {
	acl := res("aws_s3_bucket_acl", {"acl": "public-read"})
	"s3_public_access" in rules(security.deny) with input as {"resources": [bucket, sse, pab(true), acl]}
}

test_gcs_without_prevention_denied if {
	b := res("google_storage_bucket", {"name": "p-models", "labels": labels, "uniform_bucket_level_access": true, "public_access_prevention": "inherited"})
	"gcs_public_access" in rules(security.deny) with input as {"resources": [b]}
}

test_gcs_all_users_denied if {
	m := res("google_storage_bucket_iam_member", {"member": "allUsers", "role": "roles/storage.objectViewer"})
	"gcs_public_access" in rules(security.deny) with input as {"resources": [m]}
}

# --- the inference port (8080): never open to the world either ------------------------------------

test_aws_sg_world_inference_port_denied if {
	every cidrs in [["0.0.0.0/0"], ["0.0.0.0/1", "128.0.0.0/1"]] {
		sg := res("aws_security_group", {"name": "ok-sg", "tags": labels, "ingress": [{"protocol": "tcp", "from_port": 8080, "to_port": 8080, "cidr_blocks": cidrs}]})
		"inference_port_world_open" in rules(security.deny) with input as {"resources": [sg]}
	}
	sg6 := res("aws_security_group", {"name": "ok-sg", "tags": labels, "ingress": [{"protocol": "tcp", "from_port": 8000, "to_port": 9000, "ipv6_cidr_blocks": ["::/0"]}]})
	"inference_port_world_open" in rules(security.deny) with input as {"resources": [sg6]}
}

test_aws_rule_world_inference_port_denied if {
	r := res("aws_vpc_security_group_ingress_rule", {"ip_protocol": "tcp", "from_port": 8080, "to_port": 8080, "cidr_ipv6": "::/1"})
	"inference_port_world_open" in rules(security.deny) with input as {"resources": [r]}
}

test_hcloud_firewall_world_inference_port_denied if {
	every cidrs in [["0.0.0.0/0"], ["::/0"], ["8000::/1", "::/1"], ["0.0.0.0/1", "128.0.0.0/1"]] {
		fw := res("hcloud_firewall", {"name": "fw-base", "labels": labels, "rule": [{"direction": "in", "protocol": "tcp", "port": "8080", "source_ips": cidrs}]})
		"inference_port_world_open" in rules(security.deny) with input as {"resources": [fw]}
	}
}

test_gcp_firewall_world_inference_port_denied if {
	every ports in [["8080"], ["8000-8100"], []] {
		fw := res("google_compute_firewall", {"name": "fw-base", "source_ranges": ["::/0"], "allow": [{"protocol": "tcp", "ports": ports}]})
		"inference_port_world_open" in rules(security.deny) with input as {"resources": [fw]}
	}
}

test_inference_port_from_allowed_cidrs_passes if {
	sg := res("aws_security_group", {"name": "ok-sg", "tags": labels, "ingress": [{"protocol": "tcp", "from_port": 8080, "to_port": 8080, "cidr_blocks": ["10.98.0.0/16"]}]})
	count(security.deny) == 0 with input as {"resources": [sg]}
	fw := res("hcloud_firewall", {"name": "fw-base", "labels": labels, "rule": [{"direction": "in", "protocol": "tcp", "port": "8080", "source_ips": ["203.0.113.0/24"]}]})
	count(security.deny) == 0 with input as {"resources": [fw]}
}

test_other_ports_open_to_the_world_are_not_the_inference_rule if {
	fw := res("hcloud_firewall", {"name": "fw-base", "labels": labels, "rule": [{"direction": "in", "protocol": "tcp", "port": "443", "source_ips": ["0.0.0.0/0"]}]})
	not "inference_port_world_open" in rules(security.deny) with input as {"resources": [fw]}
	not "ssh_world_open" in rules(security.deny) with input as {"resources": [fw]}
}
