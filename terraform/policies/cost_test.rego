package terraform.cost_test

import data.terraform.cost

res(t, values) := {"address": sprintf("%s.x", [t]), "type": t, "name": "x", "values": values, "refs": []}

rules(findings) := {f.rule | some f in findings}

spot := [{"provisioning_model": "SPOT", "preemptible": true, "automatic_restart": false}]

test_on_demand_burst_template_denied if {
	t := res("google_compute_instance_template", {"machine_type": "n2d-highmem-2", "scheduling": [{"provisioning_model": "STANDARD"}]})
	"burst_not_spot" in rules(cost.deny) with input as {"layer": "burst", "resources": [t]}
}

test_missing_scheduling_denied if {
	t := res("google_compute_instance_template", {"machine_type": "n2d-highmem-2"})
	"burst_not_spot" in rules(cost.deny) with input as {"layer": "burst", "resources": [t]}
}

test_burst_label_alone_triggers_spot_rule if {
	t := res("google_compute_instance", {"machine_type": "e2-standard-2", "labels": {"layer": "burst"}})
	"burst_not_spot" in rules(cost.deny) with input as {"resources": [t]}
}

test_spot_burst_template_allowed if {
	t := res("google_compute_instance_template", {"machine_type": "n2d-highmem-2", "scheduling": spot})
	count(cost.deny) == 0 with input as {"layer": "burst", "resources": [t]}
}

test_base_layer_on_demand_allowed if {
	t := res("google_compute_instance", {"machine_type": "e2-standard-2"})
	count(cost.deny) == 0 with input as {"layer": "base", "resources": [t]}
}

test_aws_on_demand_burst_denied if {
	i := res("aws_instance", {"instance_type": "r7a.large"})
	"burst_not_spot" in rules(cost.deny) with input as {"layer": "burst", "resources": [i]}
}

test_aws_spot_burst_allowed if {
	i := res("aws_instance", {"instance_type": "r7a.large", "instance_market_options": [{"market_type": "spot"}]})
	count(cost.deny) == 0 with input as {"layer": "burst", "resources": [i]}
}

test_gpu_machine_denied if {
	t := res("google_compute_instance_template", {"machine_type": "a2-highgpu-8g", "scheduling": spot})
	"expensive_instance_type" in rules(cost.deny) with input as {"layer": "burst", "resources": [t]}
}

test_huge_machine_denied if {
	t := res("google_compute_instance_template", {"machine_type": "n2-highmem-64", "scheduling": spot})
	"expensive_instance_type" in rules(cost.deny) with input as {"layer": "burst", "resources": [t]}
}

test_gpu_and_huge_reported_once if {
	t := res("google_compute_instance_template", {"machine_type": "a2-megagpu-96", "scheduling": spot})
	count(cost.deny) == 1 with input as {"layer": "burst", "resources": [t]}
}

test_aws_gpu_denied if {
	i := res("aws_instance", {"instance_type": "p4d.24xlarge", "instance_market_options": [{"market_type": "spot"}]})
	"expensive_instance_type" in rules(cost.deny) with input as {"layer": "burst", "resources": [i]}
}

test_hcloud_ccx63_denied if {
	s := res("hcloud_server", {"server_type": "ccx63"})
	"expensive_instance_type" in rules(cost.deny) with input as {"layer": "base", "resources": [s]}
}

test_mid_size_warns_only if {
	t := res("google_compute_instance_template", {"machine_type": "n2d-highmem-16", "scheduling": spot})
	count(cost.deny) == 0 with input as {"layer": "burst", "resources": [t]}
	"pricey_instance_type" in rules(cost.warn) with input as {"layer": "burst", "resources": [t]}
}

test_default_machine_clean if {
	t := res("google_compute_instance_template", {"machine_type": "n2d-highmem-2", "scheduling": spot})
	count(cost.warn) == 0 with input as {"layer": "burst", "resources": [t]}
}

test_autoscaler_ceiling_denied if {
	a := res("google_compute_region_autoscaler", {"autoscaling_policy": [{"min_replicas": 0, "max_replicas": 50}]})
	"autoscaler_ceiling" in rules(cost.deny) with input as {"resources": [a]}
}

test_autoscaler_at_ceiling_allowed if {
	a := res("google_compute_region_autoscaler", {"autoscaling_policy": [{"min_replicas": 0, "max_replicas": 10}]})
	count(cost.deny) == 0 with input as {"resources": [a]}
}

test_autoscaler_min_above_zero_warns if {
	a := res("google_compute_region_autoscaler", {"autoscaling_policy": [{"min_replicas": 2, "max_replicas": 4}]})
	"autoscaler_not_scale_to_zero" in rules(cost.warn) with input as {"resources": [a]}
}

test_aws_asg_ceiling_denied if {
	g := res("aws_autoscaling_group", {"max_size": 40})
	"autoscaler_ceiling" in rules(cost.deny) with input as {"resources": [g]}
}
