output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "URL of the Kubernetes API."
  value       = module.eks.cluster_endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64-encoded CA certificate of the Kubernetes API."
  value       = module.eks.cluster_certificate_authority_data
}

output "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider, which IAM roles for service accounts trust."
  value       = module.eks.oidc_provider_arn
}

output "node_security_group_id" {
  description = "Security group of every node (and so of every pod's traffic): the database admits it on 5432."
  value       = module.eks.node_security_group_id
}

output "gpu_node_labels" {
  description = "Labels of the GPU nodes (the Ray GPU worker group's nodeSelector)."
  value       = local.gpu_labels
}

output "gpu_node_taint" {
  description = "Taint of the GPU nodes, in Kubernetes' spelling (the Ray GPU worker group's toleration)."
  value       = "${local.gpu_taint.key}=${local.gpu_taint.value}:NoSchedule"
}

output "cpu_node_labels" {
  description = "Labels of the CPU nodes."
  value       = local.cpu_labels
}
