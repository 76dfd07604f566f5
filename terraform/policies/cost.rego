# Cost policy: spot enforcement for the burst layer, expensive instance types, autoscaler ceiling.
package terraform.cost

import data.terraform.lib

max_burst_replicas := 10

# --- spot enforcement -----------------------------------------------------------------------------

gcp_spot(r) if {
	some s in lib.blocks(r.values, "scheduling")
	s.provisioning_model == "SPOT"
}

gcp_spot(r) if {
	some s in lib.blocks(r.values, "scheduling")
	s.preemptible == true
}

deny contains lib.finding("burst_not_spot", r, "burst-layer VMs must use SPOT provisioning") if {
	some t in ["google_compute_instance_template", "google_compute_instance", "google_compute_region_instance_template"]
	some r in lib.resources_of(t)
	lib.burst(r)
	not gcp_spot(r)
}

aws_spot(r) if {
	some m in lib.blocks(r.values, "instance_market_options")
	m.market_type == "spot"
}

deny contains lib.finding("burst_not_spot", r, "burst-layer instances must use the spot market") if {
	some t in ["aws_instance", "aws_launch_template"]
	some r in lib.resources_of(t)
	lib.burst(r)
	not aws_spot(r)
}

# --- instance types ----------------------------------------------------------------------------

# GPU or very large machines: never from this repository's defaults.
denied_gcp_families := {"a2", "a3", "g2", "m1", "m2", "m3", "c2d", "x4"}

gcp_vcpus(mt) := to_number(parts[count(parts) - 1]) if {
	parts := split(mt, "-")
	regex.match(`^[0-9]+$`, parts[count(parts) - 1])
}

instance_type(r) := r.values.machine_type if startswith(r.type, "google_")

instance_type(r) := r.values.instance_type if startswith(r.type, "aws_")

instance_type(r) := r.values.server_type if r.type == "hcloud_server"

typed := {"google_compute_instance_template", "google_compute_instance", "aws_instance", "aws_launch_template", "hcloud_server"}

gpu_family(mt) if split(mt, "-")[0] in denied_gcp_families

aws_accelerator(it) if regex.match(`^(p[0-9]|g[0-9]|inf[0-9]|trn[0-9]|dl[0-9])[a-z0-9-]*\.`, it)

aws_huge(it) if regex.match(`\.((1[6-9]|[2-9][0-9])xlarge|metal)`, it)

# Several reasons can hold at once, so collect them instead of a multi-valued function.
expensive_reasons(it) := (((({"GPU/memory-optimized family" | gpu_family(it)} | {"more than 32 vCPU" | gcp_vcpus(it) > 32}) | {"GPU/accelerator instance" | aws_accelerator(it)}) | {"16xlarge or larger" | aws_huge(it)}) | {"dedicated-vCPU type above 16 vCPU" | it in {"ccx43", "ccx53", "ccx63"}})

deny contains lib.finding("expensive_instance_type", r, sprintf("%s: %s", [it, concat("; ", sort([w | some w in reasons]))])) if {
	some r in input.resources
	r.type in typed
	it := instance_type(r)
	lib.known(it)
	reasons := expensive_reasons(it)
	count(reasons) > 0
}

pricey(mt) if {
	gcp_vcpus(mt) > 8
	gcp_vcpus(mt) <= 32
}

pricey(it) if regex.match(`\.(4|8|9|12)xlarge$`, it)

pricey(st) if st in {"ccx13", "ccx23", "ccx33", "cpx51", "cx52"}

warn contains lib.finding("pricey_instance_type", r, sprintf("%s is costly for this workload", [it])) if {
	some r in input.resources
	r.type in typed
	it := instance_type(r)
	lib.known(it)
	pricey(it)
	count(expensive_reasons(it)) == 0
}

# --- autoscaling -------------------------------------------------------------------------------

deny contains lib.finding("autoscaler_ceiling", r, sprintf("max_replicas %v exceeds %v", [p.max_replicas, max_burst_replicas])) if {
	some t in ["google_compute_region_autoscaler", "google_compute_autoscaler"]
	some r in lib.resources_of(t)
	some p in lib.blocks(r.values, "autoscaling_policy")
	is_number(p.max_replicas)
	p.max_replicas > max_burst_replicas
}

deny contains lib.finding("autoscaler_ceiling", r, sprintf("max_size %v exceeds %v", [r.values.max_size, max_burst_replicas])) if {
	some r in lib.resources_of("aws_autoscaling_group")
	is_number(r.values.max_size)
	r.values.max_size > max_burst_replicas
}

warn contains lib.finding("autoscaler_not_scale_to_zero", r, "burst autoscaler keeps instances running when idle") if {
	some t in ["google_compute_region_autoscaler", "google_compute_autoscaler"]
	some r in lib.resources_of(t)
	some p in lib.blocks(r.values, "autoscaling_policy")
	is_number(p.min_replicas)
	p.min_replicas > 0
}
