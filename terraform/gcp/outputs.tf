output "name" {
  description = "Name prefix used for every resource (<project>-<environment>-<layer>[-<suffix>])."
  value       = local.name
}

output "labels" {
  description = "Labels applied to every labelled resource (required set plus extra_labels)."
  value       = local.labels
}

output "instance_template_id" {
  description = "Spot instance template id."
  value       = google_compute_instance_template.spot.id
}

output "instance_group_manager" {
  description = "Regional managed instance group id."
  value       = google_compute_region_instance_group_manager.burst.id
}

output "bucket_name" {
  description = "Models/checkpoints bucket name."
  value       = google_storage_bucket.models.name
}

output "service_account_email" {
  description = "Service account of burst nodes."
  value       = google_service_account.node.email
}

output "network_id" {
  description = "Burst VPC network id."
  value       = google_compute_network.burst.id
}
