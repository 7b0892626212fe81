variable "name" {
  description = "Prefix of the repository names (<name>/dedup-cpu, <name>/dedup-gpu)."
  type        = string
}

variable "images" {
  description = "The images dedup is built as: cpu (the default extra; review service, Spark stage, nightly) and gpu (the gpu extra; Ray GPU workers)."
  type        = list(string)
  default     = ["dedup-cpu", "dedup-gpu"]
}

variable "untagged_expiration_days" {
  description = "Days an untagged image (a layer set no tag names any more) is kept before ECR deletes it."
  type        = number
  default     = 14
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
