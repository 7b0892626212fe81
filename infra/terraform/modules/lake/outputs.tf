output "lake_bucket_name" {
  description = "Name of the bucket holding the lake (prefix lake/) and the gallery (prefix gallery/)."
  value       = aws_s3_bucket.lake.id
}

output "lake_bucket_arn" {
  description = "ARN of the lake bucket."
  value       = aws_s3_bucket.lake.arn
}

output "lake_prefix" {
  description = "Key prefix of the lake's Delta tables and work files in the lake bucket."
  value       = local.lake_prefix
}

output "gallery_prefix" {
  description = "Key prefix of the gallery in the lake bucket."
  value       = local.gallery_prefix
}

output "lake_uri" {
  description = "The settings' lake: s3://<lake bucket>/lake."
  value       = "s3://${aws_s3_bucket.lake.id}/${local.lake_prefix}"
}

output "gallery_uri" {
  description = "The settings' gallery: s3://<lake bucket>/gallery."
  value       = "s3://${aws_s3_bucket.lake.id}/${local.gallery_prefix}"
}

output "intake_bucket_name" {
  description = "Name of the intake bucket (batch manifests and photos, written by the registry's uploader)."
  value       = aws_s3_bucket.intake.id
}

output "intake_bucket_arn" {
  description = "ARN of the intake bucket."
  value       = aws_s3_bucket.intake.arn
}

output "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the lake and intake buckets."
  value       = aws_kms_key.data.arn
}

output "access_logs_bucket_name" {
  description = "Name of the bucket holding the S3 server access logs of the lake and intake buckets."
  value       = aws_s3_bucket.access_logs.id
}
