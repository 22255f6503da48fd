# Written by `dockhand provision terraform --provider aws` (dockhand 0.1.0).

output "ipv4_address" {
  description = "The server's public IPv4 address"
  value       = aws_instance.server.public_ip
}

output "dockhand_host" {
  description = "The destination for dockhand (`--host` or [destinations.NAME] host)"
  value       = "ssh://deploy@${aws_instance.server.public_ip}"
}
