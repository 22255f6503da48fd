# Written by `dockhand provision terraform --provider aws` (dockhand 0.1.0).

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

variable "region" {
  description = "AWS region"
  type        = string
  default     = "eu-west-3"
}

variable "instance_type" {
  description = "Instance type: 2 vCPU, 4 GB is the reference"
  type        = string
  default     = "t3.medium"
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone id of dns_zone (needed for DNS records)"
  type        = string
  default     = ""
}
