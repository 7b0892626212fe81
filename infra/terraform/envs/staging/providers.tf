provider "aws" {
  region = var.region

  default_tags {
    tags = local.tags
  }
}

# The add-ons are installed with the applier's own AWS identity, which the EKS module makes
# a cluster admin (enable_cluster_creator_admin_permissions).
provider "helm" {
  kubernetes = {
    host                   = module.eks.cluster_endpoint
    cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)
    exec = {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
    }
  }
}
