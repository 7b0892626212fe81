variable "name" {
  description = "Name of the EKS cluster."
  type        = string
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the control plane and the node groups (the cluster-autoscaler's version in cluster-addons follows it)."
  type        = string
  default     = "1.35"
}

variable "vpc_id" {
  description = "ID of the VPC the cluster runs in."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the control plane's network interfaces and every node group."
  type        = list(string)
}

variable "endpoint_public_access" {
  description = "Whether the Kubernetes API is reachable from the internet (from endpoint_public_access_cidrs only); false keeps it inside the VPC."
  type        = bool
  default     = false
}

variable "endpoint_public_access_cidrs" {
  description = "Address ranges allowed to reach a public Kubernetes API endpoint (an office, a CI runner's egress). Never 0.0.0.0/0."
  type        = list(string)
  default     = []

  validation {
    condition     = !contains(var.endpoint_public_access_cidrs, "0.0.0.0/0")
    error_message = "The API endpoint must not be open to the whole internet: list the ranges that administer the cluster."
  }
}

variable "admin_role_arns" {
  description = "IAM roles given cluster-admin through EKS access entries (the SRE team's role, the CI role that applies the Helm chart); not the identity that applies this module, which enable_cluster_creator_admin_permissions makes admin already (a second entry for it would fail)."
  type        = list(string)
  default     = []
}

variable "cpu_instance_types" {
  description = "Instance types of the CPU node group (the review service, the Spark stage, the Ray head and CPU workers, the nightly job)."
  type        = list(string)
  default     = ["m7i.2xlarge"]
}

variable "cpu_min_size" {
  description = "Fewest CPU nodes; the review service runs all day, so at least one (two for its disruption budget)."
  type        = number
  default     = 2
}

variable "cpu_max_size" {
  description = "Most CPU nodes the cluster-autoscaler may start (the night's Spark executors and Ray CPU workers)."
  type        = number
  default     = 10
}

variable "gpu_instance_types" {
  description = "Instance types of the GPU node group (Ray GPU workers: embedding, exact-sweep search); one NVIDIA GPU or more each."
  type        = list(string)
  default     = ["g6.2xlarge"]
}

variable "gpu_max_size" {
  description = "Most GPU nodes the cluster-autoscaler may start for a night; the group is empty (0 nodes) between nights."
  type        = number
  default     = 4
}

variable "node_disk_size_gb" {
  description = "Root volume of every node in GB: the images (the GPU image carries CUDA libraries), the gallery cache if it is an emptyDir, Spark's shuffle."
  type        = number
  default     = 200
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
