output "nightly_role_arn" {
  description = "IAM role of the nightly run's service accounts (eks.amazonaws.com/role-arn annotation)."
  value       = module.nightly_role.arn
}

output "ray_role_arn" {
  description = "IAM role of the RayCluster's service account."
  value       = module.ray_role.arn
}

output "review_role_arn" {
  description = "IAM role of the review service's service account."
  value       = module.review_role.arn
}

output "service_accounts" {
  description = "The namespace and service account names the roles trust: the Helm chart must create exactly these."
  value = {
    namespace = var.namespace
    nightly   = var.nightly_service_accounts
    ray       = var.ray_service_account
    review    = var.review_service_account
  }
}
