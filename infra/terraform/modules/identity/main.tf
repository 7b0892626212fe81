# IAM roles for the dedup chart's service accounts (IRSA): each trusts only its own
# namespace:serviceaccount through the cluster's OIDC provider, and may do only what its
# processes do (docs/operations.md, "The lake and the gallery on S3").
#
#   nightly (the CronJob, which is also the Spark driver; the executors run under its
#     account): every step of a night. Stage writes faces/rejects/enrollments and reads the
#     intake (manifest, photos); embed reads faces and commits templates from its driver
#     (the Ray actors get chips through Ray's object store and return vectors the same way);
#     match reads templates, writes candidates and adds to the gallery (LOCK, CURRENT,
#     segments); vacuum and compaction delete. It connects to the review database.
#   review (dedup serve): the queue's database, and a supervisor's erasure, which reaches
#     the lake and the gallery as `dedup erase` does (pipelines.erasure.LakeEraser: rows
#     deleted, tables vacuumed, work files rewritten, the gallery compacted). Photos and
#     chips are in the database (imported by the enqueue) and reports are read from a local
#     folder (adjudication.reports_dir), so it never reads the intake.
#   ray (head and workers): the match's shard actors download the gallery's files into
#     their node's cache. Read only, gallery only: the embed and match drivers run in the
#     nightly pod (Ray Client), so no Ray node reads or writes the lake.
#
# Old object versions are never deleted by any role (no s3:DeleteObjectVersion): a delete
# leaves a noncurrent version that the lake bucket's lifecycle removes (the lake module).

data "aws_region" "current" {}

locals {
  s3_via         = "s3.${data.aws_region.current.region}.amazonaws.com"
  secrets_via    = "secretsmanager.${data.aws_region.current.region}.amazonaws.com"
  lake_objects   = "${var.lake_bucket_arn}/${var.lake_prefix}/*"
  gallery_object = "${var.lake_bucket_arn}/${var.gallery_prefix}/*"
}

data "aws_iam_policy_document" "lake_and_gallery" {
  # The bucket check every job starts with (a HEAD of the bucket, which S3 authorizes as
  # ListBucket without a prefix), and listings under both prefixes.
  statement {
    sid       = "ListLakeBucket"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
  }

  statement {
    sid = "ReadWriteLakeAndGallery"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
    ]
    resources = [local.lake_objects, local.gallery_object]
  }

  statement {
    sid       = "UseDataKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.data_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_via]
    }
  }
}

data "aws_iam_policy_document" "intake" {
  statement {
    sid       = "ReadIntake"
    actions   = ["s3:ListBucket", "s3:GetObject"]
    resources = [var.intake_bucket_arn, "${var.intake_bucket_arn}/*"]
  }
}

data "aws_iam_policy_document" "database_secret" {
  statement {
    sid       = "ReadDatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [var.database_secret_arn]
  }

  statement {
    sid       = "DecryptDatabaseSecret"
    actions   = ["kms:Decrypt"]
    resources = [var.database_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.secrets_via]
    }
  }
}

data "aws_iam_policy_document" "ray" {
  statement {
    sid       = "ListGallery"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.gallery_prefix, "${var.gallery_prefix}/*"]
    }
  }

  statement {
    sid       = "ReadGallery"
    actions   = ["s3:GetObject"]
    resources = [local.gallery_object]
  }

  statement {
    sid       = "DecryptThroughS3"
    actions   = ["kms:Decrypt"]
    resources = [var.data_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_via]
    }
  }
}

module "nightly_role" {
  #checkov:skip=CKV_TF_1:Registry modules are pinned to one exact version (tests/deploy/test_terraform.py holds every call to it); a git commit source would bypass the registry, and the module interface the tests check against is recorded per version.
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts"
  version = "6.5.0"

  name        = "${var.name}-nightly"
  description = "dedup nightly run: lake and gallery read/write, intake read, database secret"
  source_policy_documents = [
    data.aws_iam_policy_document.lake_and_gallery.json,
    data.aws_iam_policy_document.intake.json,
    data.aws_iam_policy_document.database_secret.json,
  ]

  oidc_providers = {
    this = {
      provider_arn               = var.oidc_provider_arn
      namespace_service_accounts = [for account in var.nightly_service_accounts : "${var.namespace}:${account}"]
    }
  }

  tags = var.tags
}

module "ray_role" {
  #checkov:skip=CKV_TF_1:Registry modules are pinned to one exact version (tests/deploy/test_terraform.py holds every call to it); a git commit source would bypass the registry, and the module interface the tests check against is recorded per version.
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts"
  version = "6.5.0"

  name                    = "${var.name}-ray"
  description             = "dedup Ray head and workers: gallery read"
  source_policy_documents = [data.aws_iam_policy_document.ray.json]

  oidc_providers = {
    this = {
      provider_arn               = var.oidc_provider_arn
      namespace_service_accounts = ["${var.namespace}:${var.ray_service_account}"]
    }
  }

  tags = var.tags
}

module "review_role" {
  #checkov:skip=CKV_TF_1:Registry modules are pinned to one exact version (tests/deploy/test_terraform.py holds every call to it); a git commit source would bypass the registry, and the module interface the tests check against is recorded per version.
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts"
  version = "6.5.0"

  name        = "${var.name}-review"
  description = "dedup review service: database secret, lake and gallery read/write (erasure)"
  source_policy_documents = [
    data.aws_iam_policy_document.lake_and_gallery.json,
    data.aws_iam_policy_document.database_secret.json,
  ]

  oidc_providers = {
    this = {
      provider_arn               = var.oidc_provider_arn
      namespace_service_accounts = ["${var.namespace}:${var.review_service_account}"]
    }
  }

  tags = var.tags
}
