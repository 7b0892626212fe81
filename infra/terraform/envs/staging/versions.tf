terraform {
  # use_lockfile (the S3 backend's own lock) needs Terraform 1.10.
  required_version = ">= 1.10.0, < 2.0.0"

  # Exact versions: a plan in CI and on an SRE's laptop use the same providers (terraform
  # init writes them with their checksums into .terraform.lock.hcl; commit it).
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "6.28.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "3.1.2"
    }
    # Used inside the EKS module (the OIDC thumbprint, waits, node user data).
    tls = {
      source  = "hashicorp/tls"
      version = "4.1.0"
    }
    time = {
      source  = "hashicorp/time"
      version = "0.13.1"
    }
    cloudinit = {
      source  = "hashicorp/cloudinit"
      version = "2.3.7"
    }
    null = {
      source  = "hashicorp/null"
      version = "3.2.4"
    }
  }

  # The state bucket, key and region come from -backend-config (docs/operations.md,
  # "Terraform for AWS"); the lock is an object beside the state (use_lockfile).
  backend "s3" {}
}
