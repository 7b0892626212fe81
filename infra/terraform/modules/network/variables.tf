variable "name" {
  description = "Name of the deployment (dedup-staging, dedup-production): the VPC's name and the prefix of its parts."
  type        = string
}

variable "cluster_name" {
  description = "Name of the EKS cluster that will run in this VPC, for the subnet tags its load balancers are placed by."
  type        = string
}

variable "cidr" {
  description = "IPv4 range of the VPC; a /16 leaves room for three private /19 and three public /22 subnets."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.cidr, 0)) && tonumber(split("/", var.cidr)[1]) <= 16
    error_message = "The VPC range must be a valid IPv4 CIDR block of /16 or larger."
  }
}

variable "az_count" {
  description = "How many availability zones the subnets span (the cluster, its NAT and the database's standby spread over them)."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 3
    error_message = "Two or three availability zones: RDS needs two for a subnet group; the subnet plan has room for three."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (cheaper; staging) instead of one per zone (a zone outage then keeps egress elsewhere; production)."
  type        = bool
  default     = false
}

variable "flow_log_retention_days" {
  description = "Days the VPC flow logs are kept in CloudWatch Logs."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
