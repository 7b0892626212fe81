variable "name" {
  description = "Prefix of the bucket names (bucket names are global: include the registry's and the environment's name)."
  type        = string
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object's old version is kept before S3 removes it for good: how long a lost gallery version can be restored, and the longest an erased person's data survives in old versions."
  type        = number
  default     = 7

  validation {
    condition     = var.noncurrent_version_days >= 1 && var.noncurrent_version_days <= 30
    error_message = "Between 1 and 30 days: erasure on legal request must complete within a month."
  }
}

variable "intake_expiration_days" {
  description = "Days a batch's manifest and photos stay in the intake bucket after upload; the stage has copied what it keeps (chips, metadata) into the lake by then."
  type        = number
  default     = 14

  validation {
    condition     = var.intake_expiration_days >= 1 && var.intake_expiration_days <= 30
    error_message = "Between 1 and 30 days."
  }
}

variable "access_log_expiration_days" {
  description = "Days the S3 server access logs of the lake and intake buckets are kept."
  type        = number
  default     = 365
}

variable "force_destroy" {
  description = "Whether terraform destroy may delete buckets that still hold objects (staging only; never for a registry's data)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
