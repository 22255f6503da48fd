# Written by `dockhand provision terraform --provider ovh` (dockhand 0.1.0).

variable "name" {
  description = "Name of the server and its firewall"
  type        = string
}

variable "ssh_public_key" {
  description = "OpenSSH public key of the deploy user (the contents of ~/.ssh/id_ed25519.pub)"
  type        = string
}

variable "ssh_allowed_cidrs" {
  description = "Networks allowed to reach SSH (port 22); narrow it to your own address"
  type        = list(string)
  default     = ["0.0.0.0/0", "::/0"]
}

variable "dns_zone" {
  description = "DNS zone for the app's records (empty: no records)"
  type        = string
  default     = ""
}

variable "dns_names" {
  description = "Names in dns_zone to point at the server (\"@\" for the zone's apex)"
  type        = list(string)
  default     = []
}

variable "ovh_project_id" {
  description = "Public Cloud project id"
  type        = string
}

variable "openstack_user" {
  description = "OpenStack user of the project"
  type        = string
}

variable "openstack_password" {
  description = "OpenStack user's password"
  type        = string
  sensitive   = true
}

variable "region" {
  description = "Public Cloud region"
  type        = string
  default     = "GRA11"
}

variable "flavor" {
  description = "Instance flavor: 2 vCPU, 4 GB is the reference"
  type        = string
  default     = "d2-4"
}

variable "ovh_endpoint" {
  description = "OVH API endpoint"
  type        = string
  default     = "ovh-eu"
}

variable "ovh_application_key" {
  description = "OVH API application key (for DNS records)"
  type        = string
  default     = ""
}

variable "ovh_application_secret" {
  description = "OVH API application secret"
  type        = string
  default     = ""
  sensitive   = true
}

variable "ovh_consumer_key" {
  description = "OVH API consumer key"
  type        = string
  default     = ""
  sensitive   = true
}
