"""The hello web front end: serves static/ and /healthz, Python standard library only.

Environment: PORT (default 8001). One log line per request on stdout. On SIGTERM it stops
accepting connections, lets running requests finish and exits 0.
"""

import os
import signal
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PORT = int(os.environ.get("PORT", "8001"))
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
GRACE_SECONDS = 10
LOG_LOCK = threading.Lock()


def log(level, message):
    with LOG_LOCK:  # one whole line at a time, even from many threads
        sys.stdout.write(f"{level} {message}\n")
        sys.stdout.flush()


class Tracker:
    """Counts requests in flight so shutdown can wait for them."""

    def __init__(self):
        self.cond = threading.Condition()
        self.active = 0
        self.stopping = False

    def __enter__(self):
        with self.cond:
            self.active += 1

    def __exit__(self, *exc):
        with self.cond:
            self.active -= 1
            self.cond.notify_all()

    def wait_idle(self, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.active == 0, timeout)


TRACKER = Tracker()


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; files and errors carry Content-Length
    server_version = "hello-web"
    timeout = 120  # close idle keep-alive connections eventually

    def do_GET(self):
        with TRACKER:
            if urlsplit(self.path).path == "/healthz":
                self.send_text(200, b"ok")
            else:
                super().do_GET()

    def do_HEAD(self):
        with TRACKER:
            super().do_HEAD()

    def send_text(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def list_directory(self, path):
        self.send_error(404, "Not Found")  # no directory listings
        return None

    def end_headers(self):
        # Revalidate on every load, so a deploy shows up on the next refresh.
        self.send_header("Cache-Control", "no-cache")
        if TRACKER.stopping:
            self.send_header("Connection", "close")
            self.close_connection = True
        super().end_headers()

    def log_request(self, code="-", size="-"):
        code = int(code) if isinstance(code, int) else code
        level = "ERROR" if isinstance(code, int) and code >= 500 else "INFO"
        log(level, f'{self.client_address[0]} "{self.requestline}" {code}')

    def log_message(self, format, *args):
        # Only log_error() gets here. Error responses are already logged as requests, and an
        # idle keep-alive connection timing out is normal.
        if format.startswith(("code %d", "Request timed out")):
            return
        log("ERROR", f"{self.client_address[0]} {format % args}")


def main():
    handler = partial(Handler, directory=STATIC_DIR)
    server = ThreadingHTTPServer(("127.0.0.1", PORT), handler)

    def on_signal(signum, frame):
        if TRACKER.stopping:
            return
        TRACKER.stopping = True
        log("INFO", f"received {signal.Signals(signum).name}, shutting down")
        # shutdown() waits for serve_forever() to return, which runs in this (main) thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    log("INFO", f"listening on 127.0.0.1:{PORT} pid={os.getpid()} serving {STATIC_DIR}")
    server.serve_forever()
    server.server_close()
    if not TRACKER.wait_idle(GRACE_SECONDS):
        log("ERROR", f"requests still running after {GRACE_SECONDS}s, exiting anyway")
    log("INFO", "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
