variable "name" {
  description = "Prefix of the role and policy names."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider, which the roles trust."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace the dedup chart is installed in; every role is bound to service accounts of this namespace only."
  type        = string
  default     = "dedup"
}

variable "nightly_service_accounts" {
  description = "Service accounts of the nightly run: the CronJob's pod, which is the Spark driver, and the executors, which the chart runs under the same account."
  type        = list(string)
  default     = ["dedup-nightly"]
}

variable "review_service_account" {
  description = "Service account of the review service (dedup serve)."
  type        = string
  default     = "dedup-review"
}

variable "ray_service_account" {
  description = "Service account of the RayCluster's head and workers."
  type        = string
  default     = "dedup-ray"
}

variable "lake_bucket_arn" {
  description = "ARN of the bucket holding the lake and the gallery."
  type        = string
}

variable "lake_prefix" {
  description = "Key prefix of the lake in its bucket."
  type        = string
}

variable "gallery_prefix" {
  description = "Key prefix of the gallery in the lake bucket."
  type        = string
}

variable "intake_bucket_arn" {
  description = "ARN of the intake bucket (batch manifests and photos)."
  type        = string
}

variable "data_kms_key_arn" {
  description = "ARN of the KMS key of the lake and intake buckets."
  type        = string
}

variable "database_secret_arn" {
  description = "ARN of the Secrets Manager secret holding the database's credentials."
  type        = string
}

variable "database_kms_key_arn" {
  description = "ARN of the KMS key that encrypts the database's secret."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
