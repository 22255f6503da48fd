//! `dockhand provision terraform --provider ovh|digitalocean|aws`: a minimal module — one
//! instance of the reference size (2 vCPU, 4 GB) running Debian 12, a firewall or security
//! group letting in SSH (from `ssh_allowed_cidrs`), 80 and 443, optional DNS records of the
//! app's hosts, and the cloud-init user-data of `dockhand provision cloud-init` attached
//! (as a template: the SSH key is a variable). Secrets (API tokens, passwords) are variables
//! marked `sensitive`; AWS takes its credentials from the usual environment instead.

use std::fmt;

use super::cloudinit::{user_data, CloudInit};

/// A provider of the seed guides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Ovh,
    DigitalOcean,
    Aws,
}

impl Provider {
    pub fn parse(word: &str) -> Option<Provider> {
        match word {
            "ovh" => Some(Provider::Ovh),
            "digitalocean" | "do" => Some(Provider::DigitalOcean),
            "aws" => Some(Provider::Aws),
            _ => None,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Ovh => "ovh",
            Provider::DigitalOcean => "digitalocean",
            Provider::Aws => "aws",
        })
    }
}

/// One file of the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerraformFile {
    pub name: &'static str,
    pub content: String,
}

/// The placeholder the user-data template gets the SSH key through.
const KEY_PLACEHOLDER: &str = "__DOCKHAND_SSH_PUBLIC_KEY__";

/// The module's files for `provider`, named after `app`, with `init` as the user-data
/// (its keys are replaced by the `ssh_public_key` variable).
pub fn module(provider: Provider, app: &str, init: &CloudInit) -> Vec<TerraformFile> {
    let template = {
        let c = CloudInit {
            ssh_keys: vec![KEY_PLACEHOLDER.into()],
            ..init.clone()
        };
        // templatefile() reads `${…}` and `%{…}`: escape the script's own, then put in the
        // one interpolation we want.
        user_data(&c)
            .replace("${", "$${")
            .replace("%{", "%%{")
            .replace(KEY_PLACEHOLDER, "${ssh_public_key}")
    };
    let (versions, main, vars, outputs, readme_vars) = match provider {
        Provider::DigitalOcean => digitalocean(app),
        Provider::Aws => aws(app),
        Provider::Ovh => ovh(app),
    };
    let header = format!(
        "# Written by `dockhand provision terraform --provider {provider}` (dockhand {}).\n",
        env!("CARGO_PKG_VERSION")
    );
    vec![
        TerraformFile {
            name: "versions.tf",
            content: format!("{header}{versions}"),
        },
        TerraformFile {
            name: "variables.tf",
            content: format!("{header}{COMMON_VARS}{vars}"),
        },
        TerraformFile {
            name: "main.tf",
            content: format!("{header}{main}"),
        },
        TerraformFile {
            name: "outputs.tf",
            content: format!("{header}{outputs}"),
        },
        TerraformFile {
            name: "user-data.yaml.tftpl",
            content: template,
        },
        TerraformFile {
            name: "README.md",
            content: readme(provider, app, &readme_vars),
        },
    ]
}

const COMMON_VARS: &str = r#"
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
"#;

type Parts = (
    String,
    String,
    String,
    String,
    Vec<(&'static str, &'static str)>,
);

fn digitalocean(app: &str) -> Parts {
    let versions = r#"
terraform {
  required_version = ">= 1.3"
  required_providers {
    digitalocean = {
      source  = "digitalocean/digitalocean"
      version = "~> 2.0"
    }
  }
}

provider "digitalocean" {
  token = var.do_token
}
"#
    .to_string();
    let vars = r#"
variable "do_token" {
  description = "DigitalOcean API token (read and write)"
  type        = string
  sensitive   = true
}

variable "region" {
  description = "DigitalOcean region slug"
  type        = string
  default     = "fra1"
}

variable "size" {
  description = "Droplet size: 2 vCPU, 4 GB is the reference"
  type        = string
  default     = "s-2vcpu-4gb"
}
"#
    .to_string();
    let main = r#"
resource "digitalocean_ssh_key" "deploy" {
  name       = "${var.name}-deploy"
  public_key = var.ssh_public_key
}

resource "digitalocean_droplet" "server" {
  name      = var.name
  region    = var.region
  size      = var.size
  image     = "debian-12-x64"
  ssh_keys  = [digitalocean_ssh_key.deploy.id]
  user_data = templatefile("${path.module}/user-data.yaml.tftpl", { ssh_public_key = var.ssh_public_key })
  ipv6      = true
}

resource "digitalocean_firewall" "server" {
  name        = "${var.name}-web"
  droplet_ids = [digitalocean_droplet.server.id]

  inbound_rule {
    protocol         = "tcp"
    port_range       = "22"
    source_addresses = var.ssh_allowed_cidrs
  }
  inbound_rule {
    protocol         = "tcp"
    port_range       = "80"
    source_addresses = ["0.0.0.0/0", "::/0"]
  }
  inbound_rule {
    protocol         = "tcp"
    port_range       = "443"
    source_addresses = ["0.0.0.0/0", "::/0"]
  }
  inbound_rule {
    protocol         = "icmp"
    source_addresses = ["0.0.0.0/0", "::/0"]
  }
  outbound_rule {
    protocol              = "tcp"
    port_range            = "1-65535"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }
  outbound_rule {
    protocol              = "udp"
    port_range            = "1-65535"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }
  outbound_rule {
    protocol              = "icmp"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }
}

resource "digitalocean_record" "app" {
  for_each = var.dns_zone == "" ? toset([]) : toset(var.dns_names)
  domain   = var.dns_zone
  type     = "A"
  name     = each.value
  value    = digitalocean_droplet.server.ipv4_address
  ttl      = 300
}
"#
    .to_string();
    let outputs = r#"
output "ipv4_address" {
  description = "The server's public IPv4 address"
  value       = digitalocean_droplet.server.ipv4_address
}

output "dockhand_host" {
  description = "The destination for dockhand (`--host` or [destinations.NAME] host)"
  value       = "ssh://deploy@${digitalocean_droplet.server.ipv4_address}"
}
"#
    .to_string();
    let _ = app;
    (
        versions,
        main,
        vars,
        outputs,
        vec![
            (
                "do_token",
                "DigitalOcean API token (sensitive; `TF_VAR_do_token`)",
            ),
            ("region", "region slug (default fra1)"),
            ("size", "Droplet size (default s-2vcpu-4gb)"),
        ],
    )
}

fn aws(app: &str) -> Parts {
    let versions = r#"
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
"#
    .to_string();
    let vars = r#"
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
"#
    .to_string();
    let main = r#"
# Debian 12 from Debian's own AWS account.
data "aws_ami" "debian" {
  most_recent = true
  owners      = ["136693071363"]
  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }
  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
}

resource "aws_key_pair" "deploy" {
  key_name   = "${var.name}-deploy"
  public_key = var.ssh_public_key
}

resource "aws_security_group" "server" {
  name        = "${var.name}-web"
  description = "SSH, HTTP and HTTPS in; everything out"

  ingress {
    description = "SSH"
    from_port   = 22
    to_port     = 22
    protocol    = "tcp"
    cidr_blocks      = [for c in var.ssh_allowed_cidrs : c if !strcontains(c, ":")]
    ipv6_cidr_blocks = [for c in var.ssh_allowed_cidrs : c if strcontains(c, ":")]
  }
  ingress {
    description      = "HTTP"
    from_port        = 80
    to_port          = 80
    protocol         = "tcp"
    cidr_blocks      = ["0.0.0.0/0"]
    ipv6_cidr_blocks = ["::/0"]
  }
  ingress {
    description      = "HTTPS"
    from_port        = 443
    to_port          = 443
    protocol         = "tcp"
    cidr_blocks      = ["0.0.0.0/0"]
    ipv6_cidr_blocks = ["::/0"]
  }
  egress {
    from_port        = 0
    to_port          = 0
    protocol         = "-1"
    cidr_blocks      = ["0.0.0.0/0"]
    ipv6_cidr_blocks = ["::/0"]
  }
}

resource "aws_instance" "server" {
  ami                    = data.aws_ami.debian.id
  instance_type          = var.instance_type
  key_name               = aws_key_pair.deploy.key_name
  vpc_security_group_ids = [aws_security_group.server.id]
  user_data              = templatefile("${path.module}/user-data.yaml.tftpl", { ssh_public_key = var.ssh_public_key })

  root_block_device {
    volume_size = 30
    volume_type = "gp3"
    encrypted   = true
  }

  metadata_options {
    http_tokens = "required"
  }

  tags = {
    Name = var.name
  }
}

resource "aws_route53_record" "app" {
  for_each = var.route53_zone_id == "" ? toset([]) : toset(var.dns_names)
  zone_id  = var.route53_zone_id
  name     = each.value == "@" ? var.dns_zone : "${each.value}.${var.dns_zone}"
  type     = "A"
  ttl      = 300
  records  = [aws_instance.server.public_ip]
}
"#
    .to_string();
    let outputs = r#"
output "ipv4_address" {
  description = "The server's public IPv4 address"
  value       = aws_instance.server.public_ip
}

output "dockhand_host" {
  description = "The destination for dockhand (`--host` or [destinations.NAME] host)"
  value       = "ssh://deploy@${aws_instance.server.public_ip}"
}
"#
    .to_string();
    let _ = app;
    (
        versions,
        main,
        vars,
        outputs,
        vec![
            ("region", "AWS region (default eu-west-3)"),
            ("instance_type", "instance type (default t3.medium)"),
            (
                "route53_zone_id",
                "hosted zone id for DNS records (optional)",
            ),
        ],
    )
}

fn ovh(app: &str) -> Parts {
    let versions = r#"
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
"#
    .to_string();
    let vars = r#"
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
"#
    .to_string();
    let main = r#"
resource "openstack_compute_keypair_v2" "deploy" {
  name       = "${var.name}-deploy"
  public_key = var.ssh_public_key
}

resource "openstack_networking_secgroup_v2" "server" {
  name        = "${var.name}-web"
  description = "SSH, HTTP and HTTPS in"
}

resource "openstack_networking_secgroup_rule_v2" "ssh" {
  for_each          = toset(var.ssh_allowed_cidrs)
  direction         = "ingress"
  ethertype         = strcontains(each.value, ":") ? "IPv6" : "IPv4"
  protocol          = "tcp"
  port_range_min    = 22
  port_range_max    = 22
  remote_ip_prefix  = each.value
  security_group_id = openstack_networking_secgroup_v2.server.id
}

resource "openstack_networking_secgroup_rule_v2" "web" {
  for_each = {
    "http4"  = { port = 80, ethertype = "IPv4", prefix = "0.0.0.0/0" }
    "http6"  = { port = 80, ethertype = "IPv6", prefix = "::/0" }
    "https4" = { port = 443, ethertype = "IPv4", prefix = "0.0.0.0/0" }
    "https6" = { port = 443, ethertype = "IPv6", prefix = "::/0" }
  }
  direction         = "ingress"
  ethertype         = each.value.ethertype
  protocol          = "tcp"
  port_range_min    = each.value.port
  port_range_max    = each.value.port
  remote_ip_prefix  = each.value.prefix
  security_group_id = openstack_networking_secgroup_v2.server.id
}

resource "openstack_compute_instance_v2" "server" {
  name            = var.name
  flavor_name     = var.flavor
  image_name      = "Debian 12"
  key_pair        = openstack_compute_keypair_v2.deploy.name
  security_groups = [openstack_networking_secgroup_v2.server.name]
  user_data       = templatefile("${path.module}/user-data.yaml.tftpl", { ssh_public_key = var.ssh_public_key })

  network {
    name = "Ext-Net"
  }
}

resource "ovh_domain_zone_record" "app" {
  for_each  = var.dns_zone == "" ? toset([]) : toset(var.dns_names)
  zone      = var.dns_zone
  subdomain = each.value == "@" ? "" : each.value
  fieldtype = "A"
  ttl       = 300
  target    = openstack_compute_instance_v2.server.access_ip_v4
}
"#
    .to_string();
    let outputs = r#"
output "ipv4_address" {
  description = "The server's public IPv4 address"
  value       = openstack_compute_instance_v2.server.access_ip_v4
}

output "dockhand_host" {
  description = "The destination for dockhand (`--host` or [destinations.NAME] host)"
  value       = "ssh://deploy@${openstack_compute_instance_v2.server.access_ip_v4}"
}
"#
    .to_string();
    let _ = app;
    (
        versions,
        main,
        vars,
        outputs,
        vec![
            ("ovh_project_id", "Public Cloud project id"),
            ("openstack_user", "OpenStack user of the project"),
            (
                "openstack_password",
                "its password (sensitive; `TF_VAR_openstack_password`)",
            ),
            ("region", "region (default GRA11)"),
            ("flavor", "flavor (default d2-4: 2 vCPU, 4 GB)"),
            (
                "ovh_application_key / ovh_application_secret / ovh_consumer_key",
                "OVH API credentials, for DNS records only (secret and consumer key sensitive)",
            ),
        ],
    )
}

fn readme(provider: Provider, app: &str, specific: &[(&str, &str)]) -> String {
    let mut rows = String::new();
    for (name, what) in [
        ("name", "server name (required)"),
        (
            "ssh_public_key",
            "the deploy user's OpenSSH public key (required)",
        ),
        (
            "ssh_allowed_cidrs",
            "networks allowed to SSH (default: anywhere; narrow it)",
        ),
        ("dns_zone", "DNS zone for records (optional)"),
        (
            "dns_names",
            "names in the zone to point at the server, `@` for the apex (optional)",
        ),
    ]
    .iter()
    .chain(specific.iter())
    {
        rows.push_str(&format!("| `{name}` | {what} |\n"));
    }
    format!(
        "# {app} on {provider}

Written by `dockhand provision terraform --provider {provider}`: one Debian 12 server of the
reference size (2 vCPU, 4 GB), a firewall that lets in SSH, HTTP and HTTPS only, optional DNS
records, and `user-data.yaml.tftpl` (the output of `dockhand provision cloud-init`) attached:
on first boot the server gets the deploy user with your key, Docker (when the app has
containers), the firewall, fail2ban, SSH hardening, unattended upgrades and the agent's unit.

```sh
terraform init
terraform apply -var name={app} -var \"ssh_public_key=$(cat ~/.ssh/id_ed25519.pub)\"
dockhand setup $(terraform output -raw dockhand_host)   # checks the server, uploads the binary if needed
dockhand deploy --host $(terraform output -raw dockhand_host)
```

Sensitive variables (tokens, passwords) are marked `sensitive`: pass them as `TF_VAR_…`
environment variables, never in a committed `.tfvars` file.

## Variables

| variable | what |
|---|---|
{rows}
## Outputs

| output | what |
|---|---|
| `ipv4_address` | the server's public IPv4 address |
| `dockhand_host` | `ssh://deploy@ADDRESS`, for `--host` or `[destinations.NAME] host` |
"
    )
}
