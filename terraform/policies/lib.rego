# Shared helpers over the normalized input built by llmpyramid.iac.inputs:
#   {"source": "plan"|"hcl", "target", "layer", "resources": [{"address","type","name","values","refs"}]}
package terraform.lib

# A value still holding a terraform expression (HCL source, not resolvable statically).
unknown(v) if {
	is_string(v)
	contains(v, "${")
}

known(v) if not unknown(v)

resources_of(t) := [r | some r in input.resources; r.type == t]

blocks(values, name) := object.get(values, name, [])

finding(rule, r, msg) := {"rule": rule, "resource": r.address, "msg": msg}

# World-open: a CIDR wider than the minimum prefix (/8 IPv4, /32 IPv6; the same bound as the
# modules' variable validations). Decided by prefix length, not spelling, so "::0/0", "0::/0",
# "1.2.3.4/0" and a split such as 0.0.0.0/1 + 128.0.0.0/1 are all caught.
min_prefix_ipv4 := 8

min_prefix_ipv6 := 32

min_prefix(cidr) := min_prefix_ipv6 if contains(cidr, ":")

min_prefix(cidr) := min_prefix_ipv4 if not contains(cidr, ":")

world_open(cidr) if {
	is_string(cidr)
	net.cidr_is_valid(cidr)
	prefix := regex.find_all_string_submatch_n(`/([0-9]{1,3})$`, cidr, 1)[0][1]
	to_number(prefix) < min_prefix(cidr)
}

as_list(v) := v if is_array(v)

as_list(v) := [x | some x in v] if is_set(v)

as_list(v) := [] if {
	not is_array(v)
	not is_set(v)
}

# The resource's tags (AWS) or labels (GCP, Hetzner).
label_attr := {
	"aws": "tags",
	"google": "labels",
	"hcloud": "labels",
}

provider_of(r) := split(r.type, "_")[0]

labels_of(r) := object.get(r.values, label_attr[provider_of(r)], null)

# Burst layer: from the module (input.layer) or from the resource's own layer label.
burst(_) if input.layer == "burst"

burst(r) if {
	labels := labels_of(r)
	is_object(labels)
	labels.layer == "burst"
}

# Resource referencing another resource's address (plan: configuration references; HCL: source).
references(r, address) if address in r.refs
