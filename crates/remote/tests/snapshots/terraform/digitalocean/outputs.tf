# Written by `dockhand provision terraform --provider digitalocean` (dockhand 0.1.0).

output "ipv4_address" {
  description = "The server's public IPv4 address"
  value       = digitalocean_droplet.server.ipv4_address
}

output "dockhand_host" {
  description = "The destination for dockhand (`--host` or [destinations.NAME] host)"
  value       = "ssh://deploy@${digitalocean_droplet.server.ipv4_address}"
}
