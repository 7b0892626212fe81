# The EKS cluster: a CPU managed node group that is always up (the review service) and a
# GPU managed node group that scales from zero for the night's Ray GPU workers.

locals {
  # The label every GPU node carries. The NVIDIA device plugin's daemonset is scheduled
  # by it (cluster-addons), and the Helm chart's Ray GPU worker group selects it.
  gpu_labels = {
    "dedup.io/pool"          = "gpu"
    "nvidia.com/gpu.present" = "true"
  }
  cpu_labels = {
    "dedup.io/pool" = "cpu"
  }
  # Only pods that tolerate it (the Ray GPU workers, the device plugin) land on a GPU
  # node, so a CPU pod never holds one up or keeps it from scaling back to zero.
  gpu_taint = {
    key    = "nvidia.com/gpu"
    value  = "true"
    effect = "NO_SCHEDULE"
  }

  root_volume = {
    root = {
      device_name = "/dev/xvda"
      ebs = {
        volume_size           = var.node_disk_size_gb
        volume_type           = "gp3"
        encrypted             = true
        delete_on_termination = true
      }
    }
  }

  # IMDSv2 only, and one hop: pods get AWS credentials from their service account's role
  # (IRSA), never from the node's instance profile.
  metadata_options = {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
}

module "eks" {
  #checkov:skip=CKV_TF_1:Registry modules are pinned to one exact version (tests/deploy/test_terraform.py holds every call to it); a git commit source would bypass the registry, and the module interface the tests check against is recorded per version.
  source  = "terraform-aws-modules/eks/aws"
  version = "21.19.0"

  name               = var.name
  kubernetes_version = var.kubernetes_version

  vpc_id     = var.vpc_id
  subnet_ids = var.subnet_ids

  endpoint_private_access      = true
  endpoint_public_access       = var.endpoint_public_access
  endpoint_public_access_cidrs = var.endpoint_public_access_cidrs

  authentication_mode                      = "API"
  enable_cluster_creator_admin_permissions = true
  access_entries = {
    for index, arn in var.admin_role_arns : "admin-${index}" => {
      principal_arn = arn
      policy_associations = {
        admin = {
          policy_arn   = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
          access_scope = { type = "cluster" }
        }
      }
    }
  }

  # Kubernetes secrets are envelope-encrypted with a key the module creates.
  create_kms_key    = true
  encryption_config = { resources = ["secrets"] }

  enabled_log_types                      = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
  cloudwatch_log_group_retention_in_days = 365

  # An OIDC provider for IAM roles for service accounts (the identity module's roles).
  enable_irsa = true

  addons = {
    vpc-cni = {
      before_compute = true
    }
    kube-proxy = {}
    coredns    = {}
    aws-ebs-csi-driver = {
      service_account_role_arn = module.ebs_csi_role.arn
    }
  }

  eks_managed_node_groups = {
    cpu = {
      ami_type       = "AL2023_x86_64_STANDARD"
      instance_types = var.cpu_instance_types
      min_size       = var.cpu_min_size
      max_size       = var.cpu_max_size
      desired_size   = var.cpu_min_size
      labels         = local.cpu_labels

      block_device_mappings = local.root_volume
      metadata_options      = local.metadata_options
    }

    gpu = {
      # Amazon Linux 2023 with the NVIDIA driver and container toolkit. It does not
      # advertise the GPUs to Kubernetes: that is the NVIDIA device plugin's job, installed
      # by the cluster-addons module, without which no pod can request nvidia.com/gpu.
      ami_type       = "AL2023_x86_64_NVIDIA"
      instance_types = var.gpu_instance_types
      min_size       = 0
      max_size       = var.gpu_max_size
      desired_size   = 0
      labels         = local.gpu_labels
      taints         = { gpu = local.gpu_taint }

      block_device_mappings = local.root_volume
      metadata_options      = local.metadata_options
    }
  }

  tags = var.tags
}

# Scale from zero: with no GPU node running, the cluster-autoscaler learns what a new node
# of the group would look like from these tags on its Auto Scaling group (EKS does not copy
# a managed node group's labels and taints there). Without them it cannot tell that a
# pending Ray GPU worker, which selects the label and tolerates the taint, would fit.
locals {
  gpu_node_template_tags = merge(
    { for key, value in local.gpu_labels : "k8s.io/cluster-autoscaler/node-template/label/${key}" => value },
    { "k8s.io/cluster-autoscaler/node-template/taint/${local.gpu_taint.key}" = "${local.gpu_taint.value}:NoSchedule" },
  )
  cpu_node_template_tags = {
    for key, value in local.cpu_labels : "k8s.io/cluster-autoscaler/node-template/label/${key}" => value
  }
}

resource "aws_autoscaling_group_tag" "gpu_node_template" {
  for_each = local.gpu_node_template_tags

  autoscaling_group_name = one(module.eks.eks_managed_node_groups["gpu"].node_group_autoscaling_group_names)

  tag {
    key                 = each.key
    value               = each.value
    propagate_at_launch = false
  }
}

resource "aws_autoscaling_group_tag" "cpu_node_template" {
  for_each = local.cpu_node_template_tags

  autoscaling_group_name = one(module.eks.eks_managed_node_groups["cpu"].node_group_autoscaling_group_names)

  tag {
    key                 = each.key
    value               = each.value
    propagate_at_launch = false
  }
}

# The EBS CSI driver's own role (volumes for the gallery cache and the reports).
module "ebs_csi_role" {
  #checkov:skip=CKV_TF_1:Registry modules are pinned to one exact version (tests/deploy/test_terraform.py holds every call to it); a git commit source would bypass the registry, and the module interface the tests check against is recorded per version.
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts"
  version = "6.5.0"

  name                  = "${var.name}-ebs-csi"
  attach_ebs_csi_policy = true

  oidc_providers = {
    this = {
      provider_arn               = module.eks.oidc_provider_arn
      namespace_service_accounts = ["kube-system:ebs-csi-controller-sa"]
    }
  }

  tags = var.tags
}
