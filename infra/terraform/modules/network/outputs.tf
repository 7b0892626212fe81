output "vpc_id" {
  description = "ID of the VPC."
  value       = module.vpc.vpc_id
}

output "vpc_cidr_block" {
  description = "IPv4 range of the VPC."
  value       = module.vpc.vpc_cidr_block
}

output "private_subnet_ids" {
  description = "IDs of the private subnets (nodes, pods, the database), one per zone."
  value       = module.vpc.private_subnets
}

output "public_subnet_ids" {
  description = "IDs of the public subnets (NAT gateways, internet-facing load balancers)."
  value       = module.vpc.public_subnets
}

output "azs" {
  description = "The availability zones the subnets are in."
  value       = module.vpc.azs
}

output "s3_endpoint_id" {
  description = "ID of the S3 gateway endpoint."
  value       = aws_vpc_endpoint.s3.id
}

output "private_subnet_cidr_blocks" {
  description = "Address ranges of the private subnets (where the database's instance and its standby are)."
  value       = module.vpc.private_subnets_cidr_blocks
}

output "s3_cidr_blocks" {
  description = "S3's address ranges in the region, for NetworkPolicy egress rules (they cannot name a prefix list)."
  value       = data.aws_prefix_list.s3.cidr_blocks
}
