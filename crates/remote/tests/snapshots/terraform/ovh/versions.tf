# Written by `dockhand provision terraform --provider ovh` (dockhand 0.1.0).

terraform {
  required_version = ">= 1.3"
  required_providers {
    openstack = {
      source  = "terraform-provider-openstack/openstack"
      version = "~> 2.0"
    }
    ovh = {
      source  = "ovh/ovh"
      version = "~> 1.0"
    }
  }
}

# OVHcloud Public Cloud instances and security groups are OpenStack resources; the
# OpenStack user comes from your project's "Users & Roles" page.
provider "openstack" {
  auth_url    = "https://auth.cloud.ovh.net/v3/"
  domain_name = "Default"
  tenant_id   = var.ovh_project_id
  user_name   = var.openstack_user
  password    = var.openstack_password
  region      = var.region
}

# DNS records go through the OVH API (https://www.ovh.com/auth/api/createToken).
provider "ovh" {
  endpoint           = var.ovh_endpoint
  application_key    = var.ovh_application_key
  application_secret = var.ovh_application_secret
  consumer_key       = var.ovh_consumer_key
}
