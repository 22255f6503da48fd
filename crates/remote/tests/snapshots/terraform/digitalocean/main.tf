# Written by `dockhand provision terraform --provider digitalocean` (dockhand 0.1.0).

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
