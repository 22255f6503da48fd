# Written by `dockhand provision terraform --provider ovh` (dockhand 0.1.0).

output "ipv4_address" {
  description = "The server's public IPv4 address"
  value       = openstack_compute_instance_v2.server.access_ip_v4
}

output "dockhand_host" {
  description = "The destination for dockhand (`--host` or [destinations.NAME] host)"
  value       = "ssh://deploy@${openstack_compute_instance_v2.server.access_ip_v4}"
}
