# What the cluster needs before the dedup chart can run on it: the NVIDIA device plugin
# (GPUs as a schedulable resource), the KubeRay operator (RayCluster), and the
# cluster-autoscaler (the GPU group's scale from zero and back).

locals {
  gpu_toleration = {
    key      = "nvidia.com/gpu"
    operator = "Exists"
    effect   = "NoSchedule"
  }
}

# The AL2023 NVIDIA AMI has the driver and the container toolkit, but nothing on it tells
# the kubelet about the GPUs: the device plugin's daemonset does, by advertising
# nvidia.com/gpu on each node. Until it runs there, a pod that requests a GPU stays pending
# and the autoscaler starts no node for it.
resource "helm_release" "nvidia_device_plugin" {
  name             = "nvidia-device-plugin"
  repository       = "https://nvidia.github.io/k8s-device-plugin"
  chart            = "nvidia-device-plugin"
  version          = var.nvidia_device_plugin_version
  namespace        = "nvidia-device-plugin"
  create_namespace = true
  atomic           = true

  values = [yamlencode({
    nodeSelector = var.gpu_node_labels
    tolerations  = [local.gpu_toleration]
    # GPU feature discovery and node-feature-discovery are not needed: the node group
    # labels its nodes itself.
    gfd = { enabled = false }
  })]
}

# The operator that turns the dedup chart's RayCluster into head and worker pods. It runs
# on the CPU nodes (no toleration for the GPU taint).
resource "helm_release" "kuberay_operator" {
  name             = "kuberay-operator"
  repository       = "https://ray-project.github.io/kuberay-helm/"
  chart            = "kuberay-operator"
  version          = var.kuberay_operator_version
  namespace        = "kuberay-system"
  create_namespace = true
  atomic           = true
}

module "cluster_autoscaler_role" {
  #checkov:skip=CKV_TF_1:Registry modules are pinned to one exact version (tests/deploy/test_terraform.py holds every call to it); a git commit source would bypass the registry, and the module interface the tests check against is recorded per version.
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts"
  version = "6.5.0"

  name                             = "${var.cluster_name}-cluster-autoscaler"
  attach_cluster_autoscaler_policy = true
  cluster_autoscaler_cluster_names = [var.cluster_name]

  oidc_providers = {
    this = {
      provider_arn               = var.oidc_provider_arn
      namespace_service_accounts = ["kube-system:cluster-autoscaler"]
    }
  }

  tags = var.tags
}

resource "helm_release" "cluster_autoscaler" {
  name       = "cluster-autoscaler"
  repository = "https://kubernetes.github.io/autoscaler"
  chart      = "cluster-autoscaler"
  version    = var.cluster_autoscaler_chart_version
  namespace  = "kube-system"
  atomic     = true

  values = [yamlencode({
    cloudProvider = "aws"
    awsRegion     = var.region
    autoDiscovery = { clusterName = var.cluster_name }
    rbac = {
      serviceAccount = {
        name        = "cluster-autoscaler"
        annotations = { "eks.amazonaws.com/role-arn" = module.cluster_autoscaler_role.arn }
      }
    }
    extraArgs = {
      # Node groups of one kind (the CPU group) scale together; a GPU node is given back
      # ten minutes after the night's last GPU pod left it. Ray pods keep their object
      # spill and logs in an emptyDir: with the default (true) a node that ran one would
      # never be scaled down.
      "balance-similar-node-groups"   = true
      "expander"                      = "least-waste"
      "scale-down-unneeded-time"      = "10m"
      "skip-nodes-with-local-storage" = false
    }
  })]
}
