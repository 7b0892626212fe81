variable "name" {
  description = "Identifier of the database instance and prefix of its parts."
  type        = string
}

variable "vpc_id" {
  description = "ID of the VPC the database is in."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the database's subnet group (two zones at least)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "RDS needs subnets in two availability zones at least."
  }
}

variable "client_security_group_id" {
  description = "The only security group allowed to connect on 5432: the EKS nodes' (pods' traffic leaves from the nodes)."
  type        = string
}

variable "engine_version" {
  description = "PostgreSQL version (a major version: RDS applies minor versions itself)."
  type        = string
  default     = "17"
}

variable "instance_class" {
  description = "Instance class of the database (the review queue: small writes, claims by SKIP LOCKED)."
  type        = string
  default     = "db.m7g.large"
}

variable "allocated_storage_gb" {
  description = "Storage at creation in GB (it grows by itself up to max_allocated_storage_gb)."
  type        = number
  default     = 100
}

variable "max_allocated_storage_gb" {
  description = "Most storage autoscaling may grow the database to, in GB (the queue keeps each case's photo and chip)."
  type        = number
  default     = 1000
}

variable "database_name" {
  description = "Name of the database created on the instance."
  type        = string
  default     = "dedup"
}

variable "master_username" {
  description = "Name of the master user; its password is generated and kept in Secrets Manager by RDS."
  type        = string
  default     = "dedup_admin"
}

variable "multi_az" {
  description = "Whether a standby in another zone takes over on failure (production)."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Whether the instance refuses deletion until this is turned off (production: true)."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery); the audit log's recovery needs an older copy than the tampering."
  type        = number
  default     = 35

  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 35
    error_message = "Between 7 and 35 days."
  }
}

variable "iam_database_authentication" {
  description = "Whether database users may also log in with IAM tokens (rds-db:connect; a user granted rds_iam). Password logins work either way; dedup itself logs in with a password."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
