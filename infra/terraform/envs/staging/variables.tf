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
