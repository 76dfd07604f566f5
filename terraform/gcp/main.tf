# Burst layer on GCP: spot VM template, regional MIG with an autoscaler (scale to zero), firewall
# and a GCS bucket for models and checkpoints.

locals {
  layer = "burst"
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

  node_tag = "${local.name}-node"
}

# --- network ----------------------------------------------------------------------------------

resource "google_compute_network" "burst" {
  project                 = var.gcp_project_id
  name                    = local.name
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "burst" {
  project                  = var.gcp_project_id
  name                     = local.name
  region                   = var.region
  network                  = google_compute_network.burst.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "ssh" {
  project       = var.gcp_project_id
  name          = "${local.name}-ssh"
  network       = google_compute_network.burst.id
  direction     = "INGRESS"
  source_ranges = var.admin_cidrs
  target_tags   = [local.node_tag]

  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}

resource "google_compute_firewall" "inference" {
  count         = length(var.inference_allowed_cidrs) > 0 ? 1 : 0
  project       = var.gcp_project_id
  name          = "${local.name}-inference"
  network       = google_compute_network.burst.id
  direction     = "INGRESS"
  source_ranges = var.inference_allowed_cidrs
  target_tags   = [local.node_tag]

  allow {
    protocol = "tcp"
    ports    = [tostring(var.inference_port)]
  }
}

# --- identity ---------------------------------------------------------------------------------

resource "google_service_account" "node" {
  project      = var.gcp_project_id
  account_id   = substr("${local.name}-node", 0, 30)
  display_name = "Burst inference nodes (${local.name})"
}

# --- spot instances ---------------------------------------------------------------------------

resource "google_compute_instance_template" "spot" {
  project      = var.gcp_project_id
  name_prefix  = "${local.name}-"
  machine_type = var.machine_type
  region       = var.region
  tags         = [local.node_tag]
  labels       = local.labels

  scheduling {
    provisioning_model          = "SPOT"
    preemptible                 = true
    automatic_restart           = false
    on_host_maintenance         = "TERMINATE"
    instance_termination_action = var.termination_action
  }

  disk {
    source_image = var.source_image
    boot         = true
    auto_delete  = true
    disk_size_gb = 50
    labels       = local.labels
  }

  network_interface {
    subnetwork = google_compute_subnetwork.burst.id
  }

  service_account {
    email  = google_service_account.node.email
    scopes = ["cloud-platform"]
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  metadata = {
    block-project-ssh-keys = "true"
    enable-oslogin         = "TRUE"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_region_instance_group_manager" "burst" {
  project            = var.gcp_project_id
  name               = local.name
  region             = var.region
  base_instance_name = local.name

  version {
    instance_template = google_compute_instance_template.spot.id
  }

  named_port {
    name = "inference"
    port = var.inference_port
  }

  # The autoscaler owns the size.
  lifecycle {
    ignore_changes = [target_size]
  }
}

resource "google_compute_region_autoscaler" "burst" {
  project = var.gcp_project_id
  name    = local.name
  region  = var.region
  target  = google_compute_region_instance_group_manager.burst.id

  autoscaling_policy {
    min_replicas    = var.autoscaler_min
    max_replicas    = var.autoscaler_max
    cooldown_period = 120

    cpu_utilization {
      target = var.autoscaler_cpu_target
    }
  }
}

# --- models and checkpoints -------------------------------------------------------------------

resource "google_storage_bucket" "models" {
  project                     = var.gcp_project_id
  name                        = "${local.name}-models"
  location                    = var.bucket_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = var.checkpoint_versions_kept
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_retention_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }
}

resource "google_storage_bucket_iam_member" "node_objects" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.node.email}"
}
