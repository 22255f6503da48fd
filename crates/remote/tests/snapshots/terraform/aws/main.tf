# Written by `dockhand provision terraform --provider aws` (dockhand 0.1.0).

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
