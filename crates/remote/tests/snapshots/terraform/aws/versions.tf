# Written by `dockhand provision terraform --provider aws` (dockhand 0.1.0).

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

# Credentials come from the environment (AWS_PROFILE, or AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY), never from this module.
provider "aws" {
  region = var.region
}
