variable "cluster_name" {
  description = "Name of the EKS cluster the add-ons go into (the cluster-autoscaler discovers its node groups by it)."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider, for the cluster-autoscaler's role."
  type        = string
}

variable "region" {
  description = "AWS region of the cluster (the cluster-autoscaler's AWS API calls)."
  type        = string
}

variable "gpu_node_labels" {
  description = "Labels of the GPU nodes: the NVIDIA device plugin runs only there."
  type        = map(string)
}

variable "nvidia_device_plugin_version" {
  description = "Version of NVIDIA's nvidia-device-plugin Helm chart (the chart's version is the plugin's)."
  type        = string
  default     = "0.19.3"
}

variable "kuberay_operator_version" {
  description = "Version of the KubeRay operator Helm chart; the RayCluster the dedup chart creates must be of a CRD version it serves."
  type        = string
  default     = "1.6.2"
}

variable "cluster_autoscaler_chart_version" {
  description = "Version of the cluster-autoscaler Helm chart; its app version must match the cluster's Kubernetes minor version (chart 9.59.0 is cluster-autoscaler 1.35.0)."
  type        = string
  default     = "9.59.0"
}

variable "tags" {
  description = "Tags added to every AWS resource."
  type        = map(string)
  default     = {}
}
