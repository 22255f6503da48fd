"""The hello API: a visit counter in SQLite, served by Python's standard library only.

Routes: GET /api (a page listing the others), GET /api/health (checks the database),
GET|POST /api/visits, GET /api/info.
Environment: PORT (default 8000), DATA_DIR (default .dockhand/data, relative to the working
directory), GREETING, DOCKHAND_RELEASE (set by Dockhand). One log line per request on stdout.
On SIGTERM it stops accepting connections, lets running requests finish and exits 0.
"""

import json
import os
import signal
import sqlite3
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PORT = int(os.environ.get("PORT", "8000"))
DATA_DIR = os.path.abspath(os.environ.get("DATA_DIR") or ".dockhand/data")
DB_PATH = os.path.join(DATA_DIR, "hello.db")
GREETING = os.environ.get("GREETING", "hello from dockhand")
RELEASE = os.environ.get("DOCKHAND_RELEASE") or None
GRACE_SECONDS = 10
MAX_BODY = 1024 * 1024


LOG_LOCK = threading.Lock()


def log(level, message):
    with LOG_LOCK:  # one whole line at a time, even from many threads
        sys.stdout.write(f"{level} {message}\n")
        sys.stdout.flush()


def connect():
    """A fresh connection per request: sqlite3 connections must not cross threads."""
    db = sqlite3.connect(DB_PATH, timeout=5, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 5000")
    return db


def init_db():
    os.makedirs(DATA_DIR, exist_ok=True)
    db = connect()
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
        )
        db.execute("INSERT OR IGNORE INTO counters (name, value) VALUES ('visits', 0)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS health_checks"
            " (id INTEGER PRIMARY KEY CHECK (id = 1), token TEXT NOT NULL, pid INTEGER NOT NULL)"
        )
    finally:
        db.close()


def check_db():
    """SELECT 1, then write a fresh token and read it back in one transaction."""
    token = uuid.uuid4().hex
    db = connect()
    try:
        db.execute("SELECT 1").fetchone()
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT OR REPLACE INTO health_checks (id, token, pid) VALUES (1, ?, ?)",
            (token, os.getpid()),
        )
        (read,) = db.execute("SELECT token FROM health_checks WHERE id = 1").fetchone()
        db.execute("COMMIT")
        if read != token:
            raise RuntimeError("read back a different value than was written")
    finally:
        db.close()


def visits(increment):
    db = connect()
    try:
        db.execute("BEGIN IMMEDIATE")
        if increment:
            db.execute("UPDATE counters SET value = value + 1 WHERE name = 'visits'")
        (count,) = db.execute("SELECT value FROM counters WHERE name = 'visits'").fetchone()
        db.execute("COMMIT")
        return count
    finally:
        db.close()


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

INDEX_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hello API</title></head>
<body><h1>hello API</h1><ul>
<li><a href="/api/info">GET /api/info</a>: the greeting, this process and its release</li>
<li><a href="/api/visits">GET /api/visits</a> (POST counts a visit)</li>
<li><a href="/api/health">GET /api/health</a>: the health check Dockhand polls</li>
</ul><p><a href="/">back to the page</a></p></body></html>
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "hello-api"
    timeout = 120  # close idle keep-alive connections eventually

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def dispatch(self):
        with TRACKER:
            self.started = time.monotonic()
            if not self.drain_body():
                return
            path = urlsplit(self.path).path
            method = "GET" if self.command == "HEAD" else self.command
            try:
                if path in ("/api", "/api/") and method == "GET":
                    self.send_page(INDEX_PAGE)
                elif path == "/api/health" and method == "GET":
                    self.health()
                elif path == "/api/visits" and method in ("GET", "POST"):
                    count = visits(increment=method == "POST")
                    self.send_json(200, {"count": count, "pid": os.getpid()})
                elif path == "/api/info" and method == "GET":
                    info = {"greeting": GREETING, "pid": os.getpid(), "release": RELEASE}
                    self.send_json(200, info)
                else:
                    self.send_json(404, {"error": f"no route for {self.command} {path}"})
            except Exception as err:  # one failing request must not take the server down
                log("ERROR", f"{self.command} {path} failed: {err!r}")
                self.send_json(500, {"error": "internal error"})

    def send_page(self, html):
        body = html.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def health(self):
        try:
            check_db()
        except Exception as err:
            log("ERROR", f"health check failed: {err!r}")
            self.send_json(503, {"status": "error", "db": str(err)})
        else:
            self.send_json(200, {"status": "ok", "db": "ok"})

    def drain_body(self):
        """Reads the request body so the next request on the connection starts clean."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # chunked bodies are not needed here
            return True
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self.send_json(413 if length > MAX_BODY else 400, {"error": "bad request body"})
            return False
        if length:
            self.rfile.read(length)
        return True

    def send_json(self, status, value):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if TRACKER.stopping:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        millis = (time.monotonic() - self.started) * 1000
        level = "ERROR" if status >= 500 else "INFO"
        log(level, f'{self.client_address[0]} "{self.requestline}" {status} {len(body)} {millis:.1f}ms')

    def log_request(self, code="-", size="-"):
        pass  # send_json logs each request, with its duration

    def log_message(self, format, *args):
        # Only log_error() gets here. Error responses are already logged as requests, and an
        # idle keep-alive connection timing out is normal.
        if format.startswith(("code %d", "Request timed out")):
            return
        log("ERROR", f"{self.client_address[0]} {format % args}")


def main():
    try:
        init_db()
    except Exception as err:
        log("ERROR", f"cannot open the database at {DB_PATH}: {err!r}")
        return 1
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)

    def on_signal(signum, frame):
        if TRACKER.stopping:
            return
        TRACKER.stopping = True
        log("INFO", f"received {signal.Signals(signum).name}, shutting down")
        # shutdown() waits for serve_forever() to return, which runs in this (main) thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    log("INFO", f"listening on 127.0.0.1:{PORT} pid={os.getpid()} db={DB_PATH} release={RELEASE or '-'}")
    server.serve_forever()
    server.server_close()
    if not TRACKER.wait_idle(GRACE_SECONDS):
        log("ERROR", f"requests still running after {GRACE_SECONDS}s, exiting anyway")
    log("INFO", "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
