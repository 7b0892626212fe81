# What the dedup Helm chart's values need (docs/operations.md, "Terraform for AWS").

output "cluster_name" {
  description = "Name of the EKS cluster (aws eks update-kubeconfig --name ...)."
  value       = module.eks.cluster_name
}

output "region" {
  description = "AWS region (the settings' s3.region)."
  value       = var.region
}

output "lake_uri" {
  description = "The settings' lake."
  value       = module.lake.lake_uri
}

output "gallery_uri" {
  description = "The settings' gallery."
  value       = module.lake.gallery_uri
}

output "intake_bucket_name" {
  description = "Bucket the registry uploads each night's manifest and photos to."
  value       = module.lake.intake_bucket_name
}

output "nightly_role_arn" {
  description = "eks.amazonaws.com/role-arn of the nightly run's service accounts."
  value       = module.identity.nightly_role_arn
}

output "ray_role_arn" {
  description = "eks.amazonaws.com/role-arn of the RayCluster's service account."
  value       = module.identity.ray_role_arn
}

output "review_role_arn" {
  description = "eks.amazonaws.com/role-arn of the review service's service account."
  value       = module.identity.review_role_arn
}

output "service_accounts" {
  description = "Namespace and service account names the roles trust."
  value       = module.identity.service_accounts
}

output "database_address" {
  description = "Host of the review database (TLS required: sslmode=require or stricter)."
  value       = module.database.address
}

output "database_port" {
  description = "Port of the review database."
  value       = module.database.port
}

output "database_name" {
  description = "Name of the review database."
  value       = module.database.database_name
}

output "database_secret_arn" {
  description = "Secrets Manager secret with the database's username and password."
  value       = module.database.master_user_secret_arn
}

output "image_repositories" {
  description = "ECR repository URL of each image (dedup-cpu, dedup-gpu)."
  value       = module.registry.repository_urls
}

output "gpu_node_selector" {
  description = "Labels of the GPU nodes, for the Ray GPU worker group's nodeSelector."
  value       = module.eks.gpu_node_labels
}

output "gpu_node_taint" {
  description = "Taint of the GPU nodes, for the Ray GPU worker group's toleration."
  value       = module.eks.gpu_node_taint
}

output "database_cidrs" {
  description = "Address ranges the database can be at (its subnets: a failover moves it), for the review service's NetworkPolicy (review.networkPolicy.postgres)."
  value       = module.network.private_subnet_cidr_blocks
}

output "object_store_cidrs" {
  description = "S3's address ranges in the region, for the review service's NetworkPolicy (review.networkPolicy.objectStore.cidrs)."
  value       = module.network.s3_cidr_blocks
}
