# Security policy: SSH and inference port never open to the world, required labels/tags, naming, bucket encryption and public access.
package terraform.security

import data.terraform.lib

required_labels := {"project", "environment", "layer", "managed-by", "cost-center"}

labelled_types := {
	"aws_s3_bucket", "aws_iam_role", "aws_iam_policy", "aws_iam_instance_profile", "aws_instance",
	"aws_launch_template", "aws_security_group", "aws_vpc", "aws_subnet",
	"google_compute_instance", "google_compute_instance_template", "google_storage_bucket",
	"hcloud_server", "hcloud_network", "hcloud_firewall", "hcloud_load_balancer", "hcloud_ssh_key",
}

# Lowercase letters, digits and hyphens (GCS/S3/GCE/hcloud all accept this, most accept only this).
name_pattern := `^[a-z][a-z0-9-]{1,61}[a-z0-9]$`

name_attr := {"aws_s3_bucket": "bucket", "google_storage_bucket": "name", "google_compute_instance": "name",
	"google_compute_region_instance_group_manager": "name", "google_compute_network": "name",
	"google_compute_firewall": "name", "hcloud_server": "name", "hcloud_network": "name",
	"hcloud_firewall": "name", "hcloud_load_balancer": "name", "aws_iam_role": "name",
	"aws_security_group": "name"}

# --- ports open to the whole internet -----------------------------------------------------------

# Ports that must never be open to the world, with the rule that names each: SSH, and the inference API
# (the modules' default var.inference_port; its bearer key would cross the internet in the clear).
exposed_ports := {
	22: {"rule": "ssh_world_open", "what": "SSH (port 22)"},
	8080: {"rule": "inference_port_world_open", "what": "the inference API (port 8080)"},
}

covers(port, from, to) if {
	from <= port
	to >= port
}

aws_rule_covers(rule, port) if {
	rule.protocol in {"tcp", "6"}
	covers(port, rule.from_port, rule.to_port)
}

aws_rule_covers(rule, _) if rule.protocol in {"-1", "all"}

deny contains lib.finding(spec.rule, r, sprintf("%s is open to the whole internet", [spec.what])) if {
	some r in lib.resources_of("aws_security_group")
	some rule in lib.blocks(r.values, "ingress")
	some port, spec in exposed_ports
	aws_rule_covers(rule, port)
	some cidr in array.concat(lib.as_list(object.get(rule, "cidr_blocks", [])), lib.as_list(object.get(rule, "ipv6_cidr_blocks", [])))
	lib.world_open(cidr)
}

deny contains lib.finding(spec.rule, r, sprintf("%s is open to the whole internet", [spec.what])) if {
	some t in ["aws_security_group_rule", "aws_vpc_security_group_ingress_rule"]
	some r in lib.resources_of(t)
	object.get(r.values, "type", "ingress") == "ingress"
	some port, spec in exposed_ports
	aws_rule_covers({"protocol": object.get(r.values, "protocol", object.get(r.values, "ip_protocol", "")), "from_port": r.values.from_port, "to_port": r.values.to_port}, port)
	some cidr in array.concat(lib.as_list(object.get(r.values, "cidr_blocks", [])), [object.get(r.values, "cidr_ipv4", ""), object.get(r.values, "cidr_ipv6", "")])
	lib.world_open(cidr)
}

# A port as hcloud and GCP write it: "22", a range "20-30", or "any".
port_spec_covers(spec, port) if {
	regex.match(`^[0-9]+$`, spec)
	to_number(spec) == port
}

port_spec_covers(spec, port) if {
	regex.match(`^[0-9]+-[0-9]+$`, spec)
	parts := split(spec, "-")
	covers(port, to_number(parts[0]), to_number(parts[1]))
}

port_spec_covers("any", _) := true

deny contains lib.finding(spec.rule, r, sprintf("firewall rule opens %s to the whole internet", [spec.what])) if {
	some r in lib.resources_of("hcloud_firewall")
	some rule in lib.blocks(r.values, "rule")
	object.get(rule, "direction", "in") == "in"
	rule.protocol == "tcp"
	some port, spec in exposed_ports
	port_spec_covers(sprintf("%v", [object.get(rule, "port", "any")]), port)
	some cidr in lib.as_list(object.get(rule, "source_ips", []))
	lib.world_open(cidr)
}

gcp_allow_covers(allow, _) if {
	allow.protocol in {"tcp", "all"}
	count(lib.as_list(object.get(allow, "ports", []))) == 0
}

gcp_allow_covers(allow, port) if {
	allow.protocol in {"tcp", "all"}
	some p in lib.as_list(allow.ports)
	port_spec_covers(sprintf("%v", [p]), port)
}

deny contains lib.finding(spec.rule, r, sprintf("firewall allows %s from the whole internet", [spec.what])) if {
	some r in lib.resources_of("google_compute_firewall")
	object.get(r.values, "direction", "INGRESS") == "INGRESS"
	some allow in lib.blocks(r.values, "allow")
	some port, spec in exposed_ports
	gcp_allow_covers(allow, port)
	some cidr in lib.as_list(object.get(r.values, "source_ranges", []))
	lib.world_open(cidr)
}

# --- load balancers -------------------------------------------------------------------------------

# A Hetzner load balancer takes no firewall: unless its public interface is disabled on an attached
# network, anyone on the internet reaches its services, whatever inference_allowed_cidrs says.
hcloud_lb_private(lb) if {
	some n in lib.resources_of("hcloud_load_balancer_network")
	lib.references(n, lb.address)
	object.get(n.values, "enable_public_interface", true) == false
}

deny contains lib.finding("lb_plaintext_public", s, sprintf("public load balancer %s forwards %s without TLS: use protocol https with a certificate, or disable its public interface", [lb.address, proto])) if {
	some s in lib.resources_of("hcloud_load_balancer_service")
	some lb in lib.resources_of("hcloud_load_balancer")
	lib.references(s, lb.address)
	proto := object.get(s.values, "protocol", "")
	lib.known(proto)
	proto != "https"
	not hcloud_lb_private(lb)
}

# --- labels and naming ----------------------------------------------------------------------------

deny contains lib.finding("required_labels_missing", r, msg) if {
	some r in input.resources
	r.type in labelled_types
	labels := lib.labels_of(r)
	is_object(labels)
	present := {k | some k, _ in labels}
	missing := required_labels - present
	count(missing) > 0
	msg := sprintf("missing required labels/tags: %v", [concat(", ", sort([m | some m in missing]))])
}

deny contains lib.finding("required_labels_missing", r, "no labels/tags at all") if {
	some r in input.resources
	r.type in labelled_types
	lib.labels_of(r) == null
}

deny contains lib.finding("invalid_name", r, sprintf("name %q does not match %s", [name, name_pattern])) if {
	some r in input.resources
	attr := name_attr[r.type]
	name := object.get(r.values, attr, "")
	is_string(name)
	name != ""
	lib.known(name)
	not regex.match(name_pattern, name)
}

# --- buckets ------------------------------------------------------------------------------------

s3_encrypted(b) if {
	some enc in lib.resources_of("aws_s3_bucket_server_side_encryption_configuration")
	lib.references(enc, b.address)
}

# Legacy inline configuration (aws provider < 4).
s3_encrypted(b) if count(lib.blocks(b.values, "server_side_encryption_configuration")) > 0

deny contains lib.finding("s3_bucket_unencrypted", b, "bucket has no server-side encryption configuration") if {
	some b in lib.resources_of("aws_s3_bucket")
	not s3_encrypted(b)
}

public_access_flags := {"block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"}

s3_blocked(b) if {
	some pab in lib.resources_of("aws_s3_bucket_public_access_block")
	lib.references(pab, b.address)
	every flag in public_access_flags {
		object.get(pab.values, flag, false) == true
	}
}

deny contains lib.finding("s3_public_access", b, "bucket lacks a public access block with all four flags true") if {
	some b in lib.resources_of("aws_s3_bucket")
	not s3_blocked(b)
}

public_acls := {"public-read", "public-read-write", "authenticated-read"}

deny contains lib.finding("s3_public_access", r, sprintf("public canned ACL %q", [r.values.acl])) if {
	some t in ["aws_s3_bucket", "aws_s3_bucket_acl"]
	some r in lib.resources_of(t)
	object.get(r.values, "acl", "") in public_acls
}

deny contains lib.finding("gcs_public_access", b, "bucket must enforce public access prevention and uniform access") if {
	some b in lib.resources_of("google_storage_bucket")
	not gcs_private(b)
}

gcs_private(b) if {
	b.values.public_access_prevention == "enforced"
	b.values.uniform_bucket_level_access == true
}

public_members := {"allUsers", "allAuthenticatedUsers"}

deny contains lib.finding("gcs_public_access", r, sprintf("bucket IAM grants %s", [m])) if {
	some t in ["google_storage_bucket_iam_member", "google_storage_bucket_iam_binding"]
	some r in lib.resources_of(t)
	some m in array.concat([object.get(r.values, "member", "")], lib.as_list(object.get(r.values, "members", [])))
	m in public_members
}
