# Plan-only tests with a mocked google provider: no credentials, no network.
mock_provider "google" {
  override_during = plan

  mock_resource "google_service_account" {
    defaults = {
      email = "node@example-project.iam.gserviceaccount.com"
    }
  }
}

variables {
  environment    = "test"
  gcp_project_id = "llmpyramid-test"
}

run "naming_and_labels" {
  command = plan

  variables {
    name_suffix = "ci3"
  }

  assert {
    condition     = google_storage_bucket.models.name == "llmpyramid-test-burst-ci3-models"
    error_message = "bucket name must follow <project>-<environment>-<layer>-<suffix>-models"
  }

  assert {
    condition     = google_compute_region_instance_group_manager.burst.name == "llmpyramid-test-burst-ci3"
    error_message = "instance group name must follow the naming convention"
  }

  assert {
    condition = alltrue([
      for labels in [google_compute_instance_template.spot.labels, google_storage_bucket.models.labels] :
      alltrue([for k in ["project", "environment", "layer", "managed-by", "cost-center"] : contains(keys(labels), k)])
    ])
    error_message = "labelled resources must carry the required label set"
  }
}

run "spot_configuration" {
  command = plan

  assert {
    condition     = google_compute_instance_template.spot.scheduling[0].provisioning_model == "SPOT"
    error_message = "burst VMs must use SPOT provisioning"
  }

  assert {
    condition     = google_compute_instance_template.spot.scheduling[0].preemptible == true
    error_message = "spot VMs must be preemptible"
  }

  assert {
    condition     = google_compute_instance_template.spot.scheduling[0].automatic_restart == false
    error_message = "spot VMs must not restart automatically"
  }

  assert {
    condition     = google_compute_instance_template.spot.scheduling[0].instance_termination_action == "DELETE"
    error_message = "spot VMs must have a termination action (default DELETE)"
  }

  assert {
    condition     = google_compute_instance_template.spot.machine_type == "n2d-highmem-2"
    error_message = "the default machine type must be n2d-highmem-2 (seed cost table)"
  }
}

run "autoscaler_bounds" {
  command = plan

  variables {
    autoscaler_max = 6
  }

  assert {
    condition     = google_compute_region_autoscaler.burst.autoscaling_policy[0].min_replicas == 0
    error_message = "the autoscaler must scale to zero by default"
  }

  assert {
    condition     = google_compute_region_autoscaler.burst.autoscaling_policy[0].max_replicas == 6
    error_message = "the autoscaler ceiling must come from autoscaler_max"
  }
}

run "storage" {
  command = plan

  assert {
    condition     = google_storage_bucket.models.uniform_bucket_level_access == true
    error_message = "the bucket must use uniform bucket-level access"
  }

  assert {
    condition     = google_storage_bucket.models.public_access_prevention == "enforced"
    error_message = "public access prevention must be enforced"
  }

  assert {
    condition     = google_storage_bucket.models.versioning[0].enabled == true
    error_message = "versioning must be enabled"
  }

  assert {
    condition     = contains([for r in google_storage_bucket.models.lifecycle_rule : r.action[0].type], "Delete")
    error_message = "a lifecycle rule must delete old versions"
  }
}

run "firewall_restricts_ssh" {
  command = plan

  assert {
    condition     = !contains(google_compute_firewall.ssh.source_ranges, "0.0.0.0/0")
    error_message = "SSH must not be open to the world"
  }

  assert {
    condition     = length(google_compute_firewall.inference) == 0
    error_message = "no inference firewall rule without inference_allowed_cidrs"
  }
}

run "rejects_oversized_autoscaler" {
  command = plan

  variables {
    autoscaler_max = 50
  }

  expect_failures = [var.autoscaler_max]
}

run "rejects_min_above_max" {
  command = plan

  variables {
    autoscaler_min = 5
    autoscaler_max = 2
  }

  expect_failures = [var.autoscaler_max]
}

run "rejects_gpu_machine_type" {
  command = plan

  variables {
    machine_type = "a2-highgpu-8g"
  }

  expect_failures = [var.machine_type]
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
    environment = "qa"
  }

  expect_failures = [var.environment]
}

run "rejects_unknown_termination_action" {
  command = plan

  variables {
    termination_action = "RESTART"
  }

  expect_failures = [var.termination_action]
}
