output "repository_urls" {
  description = "URL of each image's repository, by image name (the Helm chart's image.repository values)."
  value       = { for image, repository in aws_ecr_repository.image : image => repository.repository_url }
}

output "repository_arns" {
  description = "ARN of each image's repository, by image name (for the CI role that pushes)."
  value       = { for image, repository in aws_ecr_repository.image : image => repository.arn }
}
