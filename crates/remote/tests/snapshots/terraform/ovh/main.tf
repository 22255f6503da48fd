# Written by `dockhand provision terraform --provider ovh` (dockhand 0.1.0).

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
