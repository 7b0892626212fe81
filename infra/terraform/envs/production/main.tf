# Production: one NAT gateway per zone, a Multi-AZ database with deletion protection and
# 35 days of backups, buckets terraform never empties.

locals {
  environment = "production"
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
  cidr               = "10.50.0.0/16"
  single_nat_gateway = false
}

module "eks" {
  source = "../../modules/eks"

  name       = var.name
  vpc_id     = module.network.vpc_id
  subnet_ids = module.network.private_subnet_ids

  endpoint_public_access       = length(var.endpoint_public_access_cidrs) > 0
  endpoint_public_access_cidrs = var.endpoint_public_access_cidrs
  admin_role_arns              = var.admin_role_arns

  cpu_instance_types = var.cpu_instance_types
  cpu_min_size       = 2
  cpu_max_size       = var.cpu_max_size
  gpu_instance_types = var.gpu_instance_types
  gpu_max_size       = var.gpu_max_size
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
  noncurrent_version_days = var.noncurrent_version_days
  intake_expiration_days  = 14
  force_destroy           = false
}

module "database" {
  source = "../../modules/database"

  name                     = var.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.private_subnet_ids
  client_security_group_id = module.eks.node_security_group_id

  instance_class        = var.database_instance_class
  multi_az              = true
  deletion_protection   = true
  backup_retention_days = 35
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
