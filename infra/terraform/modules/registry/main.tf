# The container registries of dedup's two images. Tags are immutable: a release tag names
# one image forever, so a night re-run with the same chart values runs the same code.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

resource "aws_kms_key" "images" {
  description             = "${var.name}: the dedup container images"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30

  # Delegates the key's use to IAM policies ("*" in a key policy is this key alone); ECR
  # uses the key through grants it creates itself, so pulling needs no KMS permission.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministersThroughIam"
      Effect    = "Allow"
      Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })

  tags = var.tags
}

resource "aws_kms_alias" "images" {
  name          = "alias/${var.name}-images"
  target_key_id = aws_kms_key.images.key_id
}

resource "aws_ecr_repository" "image" {
  for_each = toset(var.images)

  name                 = "${var.name}/${each.key}"
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.images.arn
  }

  tags = var.tags
}

resource "aws_ecr_lifecycle_policy" "image" {
  for_each = aws_ecr_repository.image

  repository = each.value.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Untagged images go after ${var.untagged_expiration_days} days"
      selection = {
        tagStatus   = "untagged"
        countType   = "sinceImagePushed"
        countUnit   = "days"
        countNumber = var.untagged_expiration_days
      }
      action = { type = "expire" }
    }]
  })
}
