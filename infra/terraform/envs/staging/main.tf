# Staging: the same parts as production, smaller and cheaper: one NAT gateway, a
# single-zone database without deletion protection, buckets that terraform destroy may
# empty, at most one GPU node.

locals {
  environment = "staging"
  tags = {
    Project     = "dedup"
    Environment = local.environment
    ManagedBy   = "terraform"
  }
}

module "network" {
  source = "../../modules/network"

  name               = var.name
  cluster_name       = var.name
  cidr               = "10.40.0.0/16"
  single_nat_gateway = true
}

module "eks" {
  source = "../../modules/eks"

  name       = var.name
  vpc_id     = module.network.vpc_id
  subnet_ids = module.network.private_subnet_ids

  endpoint_public_access       = length(var.endpoint_public_access_cidrs) > 0
  endpoint_public_access_cidrs = var.endpoint_public_access_cidrs
  admin_role_arns              = var.admin_role_arns

  cpu_instance_types = ["m7i.xlarge"]
  cpu_min_size       = 1
  cpu_max_size       = 4
  gpu_instance_types = ["g6.xlarge"]
  gpu_max_size       = 1
  node_disk_size_gb  = 100
}

module "cluster_addons" {
  source = "../../modules/cluster-addons"

  cluster_name      = module.eks.cluster_name
  oidc_provider_arn = module.eks.oidc_provider_arn
  region            = var.region
  gpu_node_labels   = module.eks.gpu_node_labels

  # The releases wait for their pods (atomic): the CPU nodes must have joined first.
  depends_on = [module.eks]
}

module "lake" {
  source = "../../modules/lake"

  name                    = var.name
  noncurrent_version_days = 3
  intake_expiration_days  = 7
  force_destroy           = true
}

module "database" {
  #checkov:skip=CKV_AWS_157:Staging runs the database in one zone (half the cost); production is Multi-AZ.
  #checkov:skip=CKV_AWS_293:Staging is torn down and rebuilt; production has deletion protection.
  source = "../../modules/database"

  name                     = var.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.private_subnet_ids
  client_security_group_id = module.eks.node_security_group_id

  instance_class        = "db.t4g.medium"
  allocated_storage_gb  = 20
  multi_az              = false
  deletion_protection   = false
  backup_retention_days = 7
}

module "identity" {
  source = "../../modules/identity"

  name              = var.name
  oidc_provider_arn = module.eks.oidc_provider_arn

  lake_bucket_arn      = module.lake.lake_bucket_arn
  lake_prefix          = module.lake.lake_prefix
  gallery_prefix       = module.lake.gallery_prefix
  intake_bucket_arn    = module.lake.intake_bucket_arn
  data_kms_key_arn     = module.lake.kms_key_arn
  database_secret_arn  = module.database.master_user_secret_arn
  database_kms_key_arn = module.database.kms_key_arn
}

module "registry" {
  source = "../../modules/registry"

  name = var.name
}
