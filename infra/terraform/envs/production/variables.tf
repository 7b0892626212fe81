variable "region" {
  description = "AWS region of every resource."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Name of the deployment: the cluster's, the database's, and the prefix of bucket, role and repository names (bucket names are global: make it unique to the registry)."
  type        = string
}

variable "admin_role_arns" {
  description = "IAM roles made cluster admins (the SRE team, the CI role that installs the Helm chart); not the identity that runs terraform apply, which is made one already."
  type        = list(string)
  default     = []
}

variable "endpoint_public_access_cidrs" {
  description = "Address ranges that may reach the Kubernetes API from outside the VPC; empty keeps the API private."
  type        = list(string)
  default     = []
}

variable "cpu_instance_types" {
  description = "Instance types of the CPU node group."
  type        = list(string)
  default     = ["m7i.2xlarge"]
}

variable "cpu_max_size" {
  description = "Most CPU nodes the cluster-autoscaler may start."
  type        = number
  default     = 10
}

variable "gpu_instance_types" {
  description = "Instance types of the GPU node group."
  type        = list(string)
  default     = ["g6.2xlarge"]
}

variable "gpu_max_size" {
  description = "Most GPU nodes a night may use."
  type        = number
  default     = 4
}

variable "database_instance_class" {
  description = "Instance class of the review database."
  type        = string
  default     = "db.m7g.large"
}

variable "noncurrent_version_days" {
  description = "Days old object versions of the lake bucket are kept: the bound on how long an erasure takes to reach them."
  type        = number
  default     = 7
}
