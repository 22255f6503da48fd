"""Configuration text for the proxies the harness compares, as pure functions.

Each peer gets one worker, listens only on loopback, keeps connections to the client and to
the backend alive (a proxy benchmark that reconnects measures the kernel's handshake, not
the proxy), logs no access lines, and sets the same forwarding headers Dockhand sets
(X-Forwarded-For/-Proto/-Host), so every proxy does the same work per request.
"""


def nginx_conf(workdir, http_port, https_port, backend_port, cert, key):
    return f"""# written by bench/run
worker_processes 1;
daemon off;
master_process on;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {workdir}/nginx-tmp/body;
    proxy_temp_path {workdir}/nginx-tmp/proxy;
    fastcgi_temp_path {workdir}/nginx-tmp/fastcgi;
    uwsgi_temp_path {workdir}/nginx-tmp/uwsgi;
    scgi_temp_path {workdir}/nginx-tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    upstream backend {{
        server 127.0.0.1:{backend_port};
        keepalive 1024;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{http_port};
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_session_cache shared:SSL:1m;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }}
    }}
}}
"""


def haproxy_cfg(http_port, https_port, backend_port, cert_and_key_pem):
    return f"""# written by bench/run
global
    nbthread 1
    maxconn 4096
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    option http-keep-alive

frontend fe
    bind 127.0.0.1:{http_port}
    bind 127.0.0.1:{https_port} ssl crt {cert_and_key_pem}
    option forwardfor
    http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
    http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend be

backend be
    http-reuse always
    server s1 127.0.0.1:{backend_port}
"""


def caddyfile(http_port, https_port, backend_port, cert, key):
    # Caddy sets X-Forwarded-For/-Proto/-Host itself. `bind` keeps it on loopback: a site
    # address alone does not restrict the listener.
    proxy = f"""    reverse_proxy 127.0.0.1:{backend_port} {{
        transport http {{
            keepalive 60s
            keepalive_idle_conns 1024
            keepalive_idle_conns_per_host 1024
        }}
    }}"""
    return f"""# written by bench/run
{{
    admin off
    auto_https off
}}

http://127.0.0.1:{http_port} {{
    bind 127.0.0.1
{proxy}
}}

https://127.0.0.1:{https_port} {{
    bind 127.0.0.1
    tls {cert} {key}
{proxy}
}}
"""


def dockhand_toml(listen_port, testapp, version, health_interval="500ms", https_port=None,
                  cert=None, key=None):
    """The bench app: one web service, our testapp, behind Dockhand's proxy with one worker.

    The testapp is the backend every proxy forwards to; `VERSION` changes per deploy so the
    zero-downtime stage can see the cutover in the `x-version` response header; `THREADS=1`
    runs it on one current-thread runtime, as it is pinned to one core. With
    `https_port`, the proxy also serves HTTPS there with the peers' certificate (`cert`, and
    `key`, which must be mode 0600: Dockhand refuses a key other users can read).
    """
    https = ""
    if https_port is not None:
        https = (f'https_listen = "127.0.0.1:{https_port}"\n'
                 f'certificates = [{{ cert = "{cert}", key = "{key}" }}]\n')
    return f"""# written by bench/run
app = "bench"

[proxy]
listen = "127.0.0.1:{listen_port}"
{https}workers = 1
drain_timeout = "10s"

[services.backend]
command = "exec {testapp}"
port = 8000
env = {{ VERSION = "{version}", THREADS = "1" }}
health = {{ path = "/health", interval = "{health_interval}", deploy_timeout = "30s" }}
route = {{ path = "/" }}
"""


def nginx_static_conf(workdir, port, root):
    """nginx serving `root` as its docs recommend for static files: sendfile, tcp_nopush,
    open_file_cache, and gzip at level 5 (Dockhand's gzip level) for JSON and text."""
    return f"""# written by bench/run (static stage)
worker_processes 1;
daemon off;
master_process on;
pid {workdir}/nginx-static.pid;
error_log {workdir}/nginx-static-error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {workdir}/nginx-tmp/body;
    proxy_temp_path {workdir}/nginx-tmp/proxy;
    fastcgi_temp_path {workdir}/nginx-tmp/fastcgi;
    uwsgi_temp_path {workdir}/nginx-tmp/uwsgi;
    scgi_temp_path {workdir}/nginx-tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 60s;
    types {{
        text/plain txt;
        application/json json;
        application/octet-stream bin;
    }}
    gzip on;
    gzip_comp_level 5;
    gzip_min_length 1024;
    gzip_types application/json text/plain;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def caddy_static(port, root):
    """Caddy's file_server over `root`, with `encode gzip` (Caddy's default gzip level)."""
    return f"""# written by bench/run (static stage)
{{
    admin off
    auto_https off
}}

http://127.0.0.1:{port} {{
    bind 127.0.0.1
    root * {root}
    encode gzip
    file_server
}}
"""


def dockhand_static_toml(port, site_dir):
    """A static service: the proxy serves `site_dir` (copied for the release), one worker."""
    return f"""# written by bench/run (static stage)
app = "bench-static"

[proxy]
listen = "127.0.0.1:{port}"
workers = 1

[services.site]
static = "{site_dir}"
route = {{ path = "/" }}
"""
