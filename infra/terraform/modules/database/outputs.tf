output "address" {
  description = "Host name of the database (the settings' adjudication.database_url host)."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "Port of the database."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "Name of the database on the instance."
  value       = aws_db_instance.this.db_name
}

output "master_username" {
  description = "Name of the master user."
  value       = aws_db_instance.this.username
}

output "master_user_secret_arn" {
  description = "ARN of the Secrets Manager secret RDS keeps the master password in (JSON: username, password)."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "kms_key_arn" {
  description = "ARN of the KMS key of the database's storage and of its master secret (reading the secret needs Decrypt on it)."
  value       = aws_kms_key.database.arn
}

output "security_group_id" {
  description = "Security group of the database."
  value       = aws_security_group.database.id
}
