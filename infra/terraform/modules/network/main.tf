# The VPC the cluster and the database live in: private subnets for nodes, pods and RDS,
# public subnets for the NAT gateways and internet-facing load balancers, across 2-3 zones.

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Only the first az_count zones (by name) are used, so a zone AWS adds later changes no subnet.
  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

locals {
  azs = slice(data.aws_availability_zones.available.names, 0, var.az_count)
  # Private /19s (8,190 addresses each: the VPC CNI gives every pod a VPC address) and
  # public /22s carved from the end of the range.
  private_subnets = [for index in range(var.az_count) : cidrsubnet(var.cidr, 3, index)]
  public_subnets  = [for index in range(var.az_count) : cidrsubnet(var.cidr, 6, 60 + index)]
}

module "vpc" {
  #checkov:skip=CKV_TF_1:Registry modules are pinned to one exact version (tests/deploy/test_terraform.py holds every call to it); a git commit source would bypass the registry, and the module interface the tests check against is recorded per version.
  source  = "terraform-aws-modules/vpc/aws"
  version = "6.6.0"

  name = var.name
  cidr = var.cidr
  azs  = local.azs

  private_subnets = local.private_subnets
  public_subnets  = local.public_subnets

  enable_nat_gateway     = true
  single_nat_gateway     = var.single_nat_gateway
  one_nat_gateway_per_az = !var.single_nat_gateway

  enable_dns_hostnames = true
  enable_dns_support   = true

  # Nothing is placed in a public subnet with a public address except what asks for one
  # (NAT gateways have their elastic IPs).
  map_public_ip_on_launch = false

  # The AWS Load Balancer Controller and the in-tree service controller pick subnets by
  # these tags: internet-facing balancers in public subnets, internal ones in private.
  public_subnet_tags = {
    "kubernetes.io/role/elb"                    = "1"
    "kubernetes.io/cluster/${var.cluster_name}" = "shared"
  }
  private_subnet_tags = {
    "kubernetes.io/role/internal-elb"           = "1"
    "kubernetes.io/cluster/${var.cluster_name}" = "shared"
  }

  # The default security group of the VPC allows nothing: every resource gets its own.
  manage_default_security_group  = true
  default_security_group_ingress = []
  default_security_group_egress  = []

  enable_flow_log                                 = true
  create_flow_log_cloudwatch_log_group            = true
  create_flow_log_cloudwatch_iam_role             = true
  flow_log_cloudwatch_log_group_retention_in_days = var.flow_log_retention_days
  flow_log_max_aggregation_interval               = 60

  tags = var.tags
}

# S3 traffic (the lake, the gallery, the intake, and ECR's image layers) goes through a
# gateway endpoint: it stays on AWS's network and costs no NAT data processing, which for a
# nightly read of the whole gallery is most of the bill a NAT would send.
resource "aws_vpc_endpoint" "s3" {
  vpc_id            = module.vpc.vpc_id
  service_name      = "com.amazonaws.${data.aws_region.current.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = concat(module.vpc.private_route_table_ids, module.vpc.public_route_table_ids)

  tags = merge(var.tags, { Name = "${var.name}-s3" })
}

data "aws_region" "current" {}

# S3's address ranges in the region (the endpoint's prefix list): what a Kubernetes
# NetworkPolicy, which cannot name a prefix list, must allow for the pods that reach the
# lake and the gallery. AWS adds ranges now and then: a plan shows the change.
data "aws_prefix_list" "s3" {
  prefix_list_id = aws_vpc_endpoint.s3.prefix_list_id
}
