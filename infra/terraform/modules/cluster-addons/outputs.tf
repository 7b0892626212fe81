output "cluster_autoscaler_role_arn" {
  description = "ARN of the cluster-autoscaler's IAM role."
  value       = module.cluster_autoscaler_role.arn
}

output "kuberay_operator_version" {
  description = "Version of the KubeRay operator installed (the dedup chart's RayCluster must match its CRDs)."
  value       = helm_release.kuberay_operator.version
}
