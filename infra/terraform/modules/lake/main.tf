# Where the registry's data lives: one bucket for the lake and the gallery, one for the
# intake, both encrypted with one customer-managed key, and a bucket for their access logs.
#
# The lake (Delta tables, work files) and the gallery (segments, versions, CURRENT, LOCK)
# share a bucket under two prefixes, lake/ and gallery/: they hold the same person's data
# (chips, templates), so they follow the same retention and erasure rule, the same key and
# the same versioning, and the roles that may read one but not the other (the Ray workers
# read only the gallery) are told apart by prefix. The intake is a bucket of its own: the
# registry's uploader writes it and dedup only reads it, and its objects (original photos,
# manifests) expire after a few days, which a lifecycle rule can say per bucket without
# reaching into the lake's rules.
#
# Versioning is on, with a lifecycle that removes old versions: the gallery's checksum
# failure is recovered by restoring the object's previous version (docs/operations.md), and
# an overwritten or deleted file survives a mistake for a while. The cost is that a delete
# (Delta's VACUUM, an erasure's rewrite, the gallery's compaction) only hides an object
# behind a delete marker: its data stays in the noncurrent version until the lifecycle
# removes it, noncurrent_version_days after the delete (plus the day or so S3 takes to run
# a lifecycle action), and then the expired delete marker goes too. That bound is the
# erasure's: "erased everywhere" holds noncurrent_version_days (+1) after dedup erases.
# Nothing in dedup deletes object versions itself, and none of its roles may.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  lake_prefix    = "lake"
  gallery_prefix = "gallery"

  data_buckets = {
    lake   = aws_s3_bucket.lake
    intake = aws_s3_bucket.intake
  }
}

resource "aws_kms_key" "data" {
  description             = "${var.name}: the lake, gallery and intake buckets"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30

  # The account's IAM policies decide who may use the key (the identity module's roles
  # get Decrypt and GenerateDataKey through S3 only). "kms:*" on "*" here is the key
  # policy's delegation to IAM: in a key policy "*" is this key alone.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministersThroughIam"
      Effect    = "Allow"
      Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })

  tags = var.tags
}

resource "aws_kms_alias" "data" {
  name          = "alias/${var.name}-data"
  target_key_id = aws_kms_key.data.key_id
}

resource "aws_s3_bucket" "lake" {
  #checkov:skip=CKV_AWS_144:No cross-region replica: the registry's data stays in one region (residency), and a replica would be one more copy for every erasure to reach; versioning is the recovery copy.
  #checkov:skip=CKV2_AWS_62:No event notifications: nothing reacts to lake writes; jobs are started by the nightly schedule.
  bucket        = "${var.name}-lake"
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket" "intake" {
  #checkov:skip=CKV_AWS_144:No cross-region replica: original photos stay in one region and expire after intake_expiration_days; a replica would outlive an erasure.
  #checkov:skip=CKV2_AWS_62:No event notifications: a batch is staged by the nightly run, not on upload.
  bucket        = "${var.name}-intake"
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "data" {
  for_each = local.data_buckets

  bucket = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  for_each = local.data_buckets

  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  for_each = local.data_buckets

  bucket = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.data.arn
    }
    # One data key per bucket for a while instead of one KMS request per object: the
    # nightly writes and reads millions of small files.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "data" {
  for_each = local.data_buckets

  bucket = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    id     = "erasure-bound"
    status = "Enabled"
    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    expiration {
      expired_object_delete_marker = true
    }
    # A writer killed mid-upload leaves an invisible multipart upload (operations.md).
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

resource "aws_s3_bucket_lifecycle_configuration" "intake" {
  bucket = aws_s3_bucket.intake.id

  rule {
    id     = "intake-expiry"
    status = "Enabled"
    filter {}

    expiration {
      days = var.intake_expiration_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # Expired delete markers are removed by a rule of their own: S3 does not take
  # expiration.days and expired_object_delete_marker in one rule.
  rule {
    id     = "delete-markers"
    status = "Enabled"
    filter {}

    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

resource "aws_s3_bucket_logging" "data" {
  for_each = local.data_buckets

  bucket        = each.value.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "${each.key}/"
}

data "aws_iam_policy_document" "data_bucket" {
  for_each = local.data_buckets

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [each.value.arn, "${each.value.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # A put that asks for another encryption than SSE-KMS is refused. A put that names none
  # is encrypted by the bucket's default (SSE-KMS with this key), which is what every dedup
  # client (Spark's s3a, delta-rs, pyarrow, boto3) relies on, so the header is not required.
  statement {
    sid       = "DenyPutsNotEncryptedWithKms"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${each.value.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["false"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
  }

  statement {
    sid       = "DenyPutsWithAnotherKmsKey"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${each.value.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = ["false"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = [aws_kms_key.data.arn]
    }
  }

  # A put that asks for SSE-KMS without naming a key gets AWS's managed aws/s3 key, not
  # this one (the bucket's default applies only to puts that ask for nothing).
  statement {
    sid       = "DenyKmsPutsWithoutThisKey"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${each.value.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = ["true"]
    }
  }

  # Customer-provided keys (SSE-C) would leave objects S3 cannot decrypt for anyone else,
  # outside this key's rotation and audit.
  statement {
    sid       = "DenyPutsWithCustomerKeys"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${each.value.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-customer-algorithm"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  for_each = local.data_buckets

  bucket = each.value.id
  policy = data.aws_iam_policy_document.data_bucket[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.data]
}
