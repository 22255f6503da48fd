"""The benchmark harness's I/O: installing the peers, building Dockhand, starting and
stopping every process, running wrk, reading /proc, and writing BENCHMARKS.md.

Entry point: `bench/run` (see `--help`). Everything it starts is registered in `Procs` and
stopped in a `finally`, on Ctrl-C and on SIGTERM too; everything listens on 127.0.0.1 only;
every child runs under a timeout and the whole run under a time budget.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import benchlib as bl
import peers as pc
import soaklib as sl

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PACKAGES = {"nginx": "nginx", "haproxy": "haproxy", "caddy": "caddy", "wrk": "wrk",
            "openssl": "openssl", "taskset": "util-linux", "zstd": "zstd",
            "docker-compose": "docker-compose",
            # The monitoring stack the idle agent is measured against (issue 20).
            "prometheus": "prometheus", "prometheus-node-exporter": "prometheus-node-exporter",
            "prometheus-alertmanager": "prometheus-alertmanager"}
PEERS = ["nginx", "haproxy", "caddy", "dockhand"]
PATH = "/health"  # the testapp answers it without writing a log line


class Interrupted(Exception):
    """SIGTERM or SIGHUP: unwind through the `finally` blocks like Ctrl-C does."""


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# processes


class Procs:
    """Every long-running process the harness starts, stopped in reverse order."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.running = []  # (name, Popen, stop_signal, grace_seconds)

    def start(self, name, argv, cpu=None, env=None, cwd=None, stop_signal=signal.SIGTERM,
              grace=10.0, stdout=None, pass_fds=()):
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + list(argv)
        logf = open(self.workdir / f"{name}.log", "ab")
        p = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else logf,
            stderr=logf,
            start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
            pass_fds=pass_fds,
        )
        logf.close()
        self.running.append((name, p, stop_signal, grace))
        return p

    def stop(self, p):
        for i, (name, q, sig, grace) in enumerate(self.running):
            if q is p:
                del self.running[i]
                _stop(name, q, sig, grace)
                return

    def stop_all(self):
        while self.running:
            name, p, sig, grace = self.running.pop()
            _stop(name, p, sig, grace)


def _stop(name, p, sig, grace):
    if p.poll() is not None:
        return
    try:
        os.kill(p.pid, sig)
        p.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        log(f"{name} did not stop within {grace:.0f}s of {sig.name}; killing its process group")
    except ProcessLookupError:
        return
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {p.pid}) survived SIGKILL")


# Execs argv[3:] with the descriptors numbered argv[1] (a comma-separated list) moved to 3,
# 4, ... and LISTEN_FDS / LISTEN_PID set: systemd's socket-activation hand-over.
_HANDOFF = """
import fcntl, os, sys
fds = [int(f) for f in sys.argv[1].split(",")]
high = [fcntl.fcntl(f, fcntl.F_DUPFD_CLOEXEC, 200) for f in fds]
for i, f in enumerate(high):
    os.dup2(f, 3 + i)
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def listening_socket(port):
    """A listening TCP socket on 127.0.0.1:port, as a service manager holds one."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1024)
    return s


def handed(sockets, argv):
    """(argv, pass_fds) that start argv with `sockets` handed over as systemd's socket
    activation does (descriptors 3, 4, ...; LISTEN_FDS; LISTEN_PID = its own pid)."""
    fds = [s.fileno() for s in sockets]
    return ([sys.executable, "-c", _HANDOFF, ",".join(map(str, fds)), *map(str, argv)],
            tuple(fds))


def run(argv, timeout, cwd=None, env=None, check=True, cpu=None):
    """Runs a command to completion under a timeout; returns CompletedProcess (text)."""
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + list(argv)
    r = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout, start_new_session=True)
    if check and r.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(map(str, argv))}` exited with {r.returncode}: "
            f"{(r.stderr or r.stdout).strip()[-2000:]}"
        )
    return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, tls=False, timeout=30.0, path=PATH, proc=None, name="server"):
    """Waits until GET path on 127.0.0.1:port answers 200."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} while starting; see its log")
        try:
            if tls:
                import ssl
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                c = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=ctx)
            else:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return
            last = f"status {r.status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise RuntimeError(f"{name} on 127.0.0.1:{port} did not answer 200 on {path} within "
                       f"{timeout:.0f}s (last: {last})")


# /proc readers -------------------------------------------------------------------------------


def proc_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def proc_children_ticks(pid):
    """cutime + cstime: the CPU of a process's children it has waited for, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[13]) + int(rest[14])


def proc_ctx_switches(pid):
    """Voluntary + involuntary context switches of all a process's threads."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def children_cpu_s():
    """User + system CPU seconds of the harness's finished children (wrk, dockhand loadtest)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def proc_status_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def proc_pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[1]) == pid:
            out.append(int(d))
    return out


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def system_busy_ticks():
    """Busy clock ticks of the whole machine (all CPUs) from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle


# ---------------------------------------------------------------------------------------------
# the peers


class Peer:
    """A proxy under test: how to start it, which processes are it, where it listens."""

    def __init__(self, name, http_port, https_port):
        self.name = name
        self.http_port = http_port
        self.https_port = https_port  # None: the peer serves no HTTPS
        self.proc = None

    def pids(self):
        """The proxy's own processes: the started one and its children (nginx's workers)."""
        return [self.proc.pid] + children(self.proc.pid)

    def url(self, proto):
        port = self.http_port if proto == "http" else self.https_port
        return f"{proto}://127.0.0.1:{port}{PATH}"


class DockhandPeer(Peer):
    def pids(self):
        # The agent's children are the app's instances (the backend), not the proxy.
        return [self.proc.pid]


def start_peers(procs, workdir, backend_port, cert, key, cpu):
    out = {}
    combined = workdir / "cert-and-key.pem"
    combined.write_text(cert.read_text() + key.read_text())
    combined.chmod(0o600)

    p = Peer("nginx", free_port(), free_port())
    (workdir / "nginx-tmp").mkdir(exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(pc.nginx_conf(workdir, p.http_port, p.https_port, backend_port, cert, key))
    run(["nginx", "-t", "-q", "-c", str(conf), "-p", str(workdir)], timeout=20)
    p.proc = procs.start("nginx", ["nginx", "-c", str(conf), "-p", str(workdir)], cpu=cpu,
                         stop_signal=signal.SIGQUIT)
    out["nginx"] = p

    p = Peer("haproxy", free_port(), free_port())
    conf = workdir / "haproxy.cfg"
    conf.write_text(pc.haproxy_cfg(p.http_port, p.https_port, backend_port, combined))
    run(["haproxy", "-c", "-q", "-f", str(conf)], timeout=20)
    p.proc = procs.start("haproxy", ["haproxy", "-db", "-f", str(conf)], cpu=cpu,
                         stop_signal=signal.SIGUSR1)
    out["haproxy"] = p

    p = Peer("caddy", free_port(), free_port())
    conf = workdir / "Caddyfile"
    conf.write_text(pc.caddyfile(p.http_port, p.https_port, backend_port, cert, key))
    env = dict(os.environ, GOMAXPROCS="1", HOME=str(workdir),
               XDG_DATA_HOME=str(workdir / "caddy-data"),
               XDG_CONFIG_HOME=str(workdir / "caddy-config"))
    run(["caddy", "validate", "--adapter", "caddyfile", "--config", str(conf)], timeout=30,
        env=env)
    p.proc = procs.start("caddy", ["caddy", "run", "--adapter", "caddyfile", "--config",
                                   str(conf)], cpu=cpu, env=env, stop_signal=signal.SIGINT)
    out["caddy"] = p

    for p in out.values():
        wait_http(p.http_port, proc=p.proc, name=p.name)
        wait_http(p.https_port, tls=True, proc=p.proc, name=f"{p.name} (https)")
    return out


# ---------------------------------------------------------------------------------------------
# Dockhand


class Dockhand:
    """The agent with the bench app: its proxy is a peer, its testapp the shared backend."""

    proc_name = "dockhand-agent"

    def __init__(self, procs, workdir, exe, testapp, cpu, cert, key):
        self.procs = procs
        self.exe = exe
        self.testapp = testapp
        self.cpu = cpu
        self.cert, self.key = cert, key
        self.project = workdir / "app"
        self.project.mkdir()
        self.port = free_port()
        self.https_port = free_port()
        self.version = 0
        self.peer = DockhandPeer("dockhand", self.port, self.https_port)
        self.instance_pids = set()

    def write_config(self):
        (self.project / "dockhand.toml").write_text(
            pc.dockhand_toml(self.port, self.testapp, f"bench-{self.version}",
                             https_port=self.https_port, cert=self.cert, key=self.key))

    def start(self):
        self.write_config()
        env = dict(os.environ, RUST_LOG="warn")
        env.pop("DOCKHAND_SOCKET", None)
        self.peer.proc = self.procs.start(
            self.proc_name, [str(self.exe), "agent", "-f", str(self.project / "dockhand.toml")],
            cpu=self.cpu, env=env, cwd=self.project, grace=30.0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.peer.proc.poll() is not None:
                raise RuntimeError(f"dockhand agent exited with {self.peer.proc.returncode}; "
                                   "see dockhand-agent.log in the work directory")
            inst = self.healthy_instance()
            if inst:
                wait_http(self.port, proc=self.peer.proc, name="dockhand proxy")
                wait_http(self.https_port, tls=True, proc=self.peer.proc,
                          name="dockhand proxy (https)")
                return inst
            time.sleep(0.2)
        raise RuntimeError("the bench app did not become healthy within 60s; see "
                           "dockhand-agent.log in the work directory")

    def client(self, *args, timeout=30, check=True):
        return run([str(self.exe), *args], timeout=timeout, cwd=self.project, check=check)

    def status(self):
        r = self.client("status", "--json", check=False)
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def healthy_instance(self):
        st = self.status()
        if not isinstance(st, dict):
            return None
        for svc in st.get("services", []):
            for inst in svc.get("instances", []):
                if inst.get("pid"):
                    self.instance_pids.add(inst["pid"])
                if inst.get("health") == "healthy" and inst.get("port") and inst.get("pid"):
                    return inst
        return None

    def deploy(self):
        self.version += 1
        self.write_config()
        r = self.client("deploy", "--json", timeout=120, check=False)
        try:
            report = json.loads(r.stdout)
        except ValueError:
            report = {"succeeded": False, "message": (r.stderr or r.stdout).strip()[-500:]}
        return f"bench-{self.version}", report

    def kill_leftovers(self):
        """After the agent stopped: any instance it started that is still alive is killed."""
        for pid in self.instance_pids:
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if b"DOCKHAND_INSTANCE=" not in f.read():
                        continue
                os.kill(pid, signal.SIGKILL)
                log(f"killed a leftover bench instance (pid {pid})")
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------
# wrk


def wrk_argv(url, conns, seconds):
    return ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s", url]


def run_wrk(url, conns, seconds, cpu):
    r = run(wrk_argv(url, conns, seconds), timeout=seconds + 30, cpu=cpu)
    return bl.parse_wrk(r.stdout)


def measure(peer, proto, conns, args, backend_pid=None):
    """One measured run of a peer: warm-up, then wrk with the proxy's CPU and memory read."""
    url = peer.url(proto)
    run_wrk(url, conns, args.warmup, args.client_cpu)
    pids = peer.pids()
    before = {pid: proc_ticks(pid) for pid in pids}
    # Diagnostics kept in results.json: where the rest of the CPU went (the backend, wrk) and
    # how often the proxy's threads slept and woke, per request.
    cs_before = sum(proc_ctx_switches(pid) for pid in pids)
    backend_before = proc_ticks(backend_pid) if backend_pid else None
    client_before = children_cpu_s()
    res = run_wrk(url, conns, args.duration, args.client_cpu)
    client_s = children_cpu_s() - client_before
    after = {}
    for pid in pids:
        try:
            after[pid] = proc_ticks(pid)
        except OSError:
            raise RuntimeError(f"{peer.name} process {pid} exited during the run")
    ticks = sum(after[p] - before[p] for p in pids)
    res["cpu_us"] = bl.cpu_us_per_request(ticks, CLK_TCK, res["requests"])
    if res["requests"]:
        res["proxy_ctx_switches_per_request"] = (
            sum(proc_ctx_switches(pid) for pid in pids) - cs_before) / res["requests"]
        res["client_cpu_us"] = client_s * 1e6 / res["requests"]
        if backend_before is not None:
            res["backend_cpu_us"] = bl.cpu_us_per_request(
                proc_ticks(backend_pid) - backend_before, CLK_TCK, res["requests"])
    res["rss_kib"] = sum(proc_status_kib(p) for p in pids)
    pss = [proc_pss_kib(p) for p in pids]
    res["pss_kib"] = None if None in pss else sum(pss)
    res["loadavg"] = loadavg()
    return res


def proxy_matrix(peers, args, budget, backend_pid=None):
    """Every (protocol, connections) cell: rounds of all peers, each round in rotated order."""
    raw = {}
    table = {}
    for conns in args.conns:
        for proto in args.protos:
            cell = {}
            for rnd in range(args.rounds):
                for name in bl.rotate(PEERS, rnd):
                    peer = peers.get(name)
                    if peer is None:
                        continue
                    if proto == "https" and peer.https_port is None:
                        cell[name] = "not yet supported (HTTPS lands in a later issue)"
                        continue
                    budget.check(f"proxy {proto} @ {conns}")
                    res = measure(peer, proto, conns, args, backend_pid)
                    log(f"{proto} c={conns} round {rnd + 1} {name}: {res['rps']:.0f} rps, "
                        f"p99 {bl.fmt_latency(res.get('p99_us'))}, "
                        f"{bl.fmt_num(res['cpu_us'])} µs CPU/req "
                        f"(backend {bl.fmt_num(res.get('backend_cpu_us'))}, "
                        f"wrk {bl.fmt_num(res.get('client_cpu_us'))}; "
                        f"{res.get('proxy_ctx_switches_per_request', 0):.3f} proxy "
                        "context switches/req)")
                    raw.setdefault(f"{proto}@{conns}/{name}", []).append(res)
            for name in PEERS:
                runs = raw.get(f"{proto}@{conns}/{name}")
                if runs:
                    cell[name] = bl.summarize(runs)
            table[(proto, conns)] = cell
    return table, raw


# ---------------------------------------------------------------------------------------------
# handshakes: every request on a new TLS connection


def s_time(port, mode, seconds, cpu, parallel):
    """`parallel` concurrent `openssl s_time` loops (each: connect, handshake — full with
    `new`, resumed with `reuse` —, GET, close) for `seconds`; connections made, wall time."""
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", f"-{mode}",
            "-time", str(seconds), "-www", PATH]
    started = time.monotonic()
    children = [subprocess.Popen(["taskset", "-c", str(cpu), *argv], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
                for _ in range(parallel)]
    total = 0
    for c in children:
        try:
            out, _ = c.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            c.kill()
            out, _ = c.communicate()
        n = bl.parse_s_time(out or "")
        if n is None:
            raise RuntimeError(f"openssl s_time against 127.0.0.1:{port} failed: "
                               f"{(out or '').strip()[-300:]}")
        total += n
    return total, time.monotonic() - started


def measure_handshakes(peer, mode, args):
    """One run: CPU of the proxy's processes per new connection, and connections/s."""
    s_time(peer.https_port, mode, args.warmup, args.client_cpu, 1)
    pids = peer.pids()
    before = {pid: proc_ticks(pid) for pid in pids}
    conns, wall = s_time(peer.https_port, mode, args.duration, args.client_cpu,
                         args.handshake_clients)
    ticks = sum(proc_ticks(pid) - before[pid] for pid in pids)
    return {"connections": conns, "conns_per_s": conns / wall if wall else None,
            "cpu_us": bl.cpu_us_per_request(ticks, CLK_TCK, conns), "loadavg": loadavg()}


def handshake_matrix(peers, args, budget):
    """Full and resumed handshakes: rounds of every peer, each round in rotated order."""
    raw, table = {}, {}
    for mode, _ in bl.HANDSHAKE_MODES:
        cell = {}
        for rnd in range(args.rounds):
            for name in bl.rotate(bl.HANDSHAKE_PEERS, rnd):
                peer = peers.get(name)
                if peer is None:
                    continue
                budget.check(f"handshakes ({mode})")
                res = measure_handshakes(peer, mode, args)
                log(f"handshakes {mode} round {rnd + 1} {name}: "
                    f"{bl.fmt_num(res['conns_per_s'])} connections/s, "
                    f"{bl.fmt_num(res['cpu_us'])} µs CPU/connection")
                raw.setdefault(f"{mode}/{name}", []).append(res)
        for name in bl.HANDSHAKE_PEERS:
            runs = raw.get(f"{mode}/{name}")
            if runs:
                cell[name] = bl.summarize(runs)
        table[mode] = cell
    return table, raw


# ---------------------------------------------------------------------------------------------
# loadtest vs wrk


def loadtest_available(exe):
    r = run([str(exe), "loadtest", "--help"], timeout=20, check=False)
    return r.returncode == 0


def loadtest_vs_wrk(exe, url, args, budget):
    if not loadtest_available(exe):
        return "skipped: dockhand loadtest not built", None, {}
    conns = 64
    lt_runs, wrk_runs = [], []
    for rnd in range(args.rounds):
        for tool in bl.rotate(["wrk", "loadtest"], rnd):
            budget.check("loadtest vs wrk")
            client_before = children_cpu_s()
            if tool == "wrk":
                res = run_wrk(url, conns, args.duration, args.client_cpu)
                wrk_runs.append(res)
            else:
                r = run([str(exe), "loadtest", url, "-c", str(conns), "-d",
                         f"{args.duration}s", "--json"], timeout=args.duration + 60,
                        check=False, cpu=args.client_cpu)
                try:
                    report = json.loads(r.stdout)
                except ValueError:
                    raise RuntimeError(f"dockhand loadtest --json printed no JSON (exit "
                                       f"{r.returncode}): {(r.stderr or r.stdout)[-500:]}")
                res = bl.parse_loadtest_json(report)
                lt_runs.append(res)
            if res.get("requests"):
                res["client_cpu_us"] = (children_cpu_s() - client_before) * 1e6 / res["requests"]
            log(f"loadtest-vs-wrk round {rnd + 1} {tool}: {res['rps']:.0f} rps, "
                f"p50 {bl.fmt_latency(res.get('p50_us'))}, p99 {bl.fmt_latency(res.get('p99_us'))}, "
                f"{bl.fmt_num(res.get('client_cpu_us'))} µs CPU/req")
    return bl.summarize(lt_runs), bl.summarize(wrk_runs), {"loadtest": lt_runs, "wrk": wrk_runs}


# ---------------------------------------------------------------------------------------------
# zero downtime


class CutoverWatch(threading.Thread):
    """Polls the proxy on its own connection and records when each version first answers."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.first_seen = {}
        self.failures = 0
        self.stop_flag = threading.Event()

    def run(self):
        conn = None
        while not self.stop_flag.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", PATH)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    self.failures += 1
                v = r.getheader("x-version")
                if v and v not in self.first_seen:
                    self.first_seen[v] = time.monotonic()
            except (OSError, http.client.HTTPException):
                self.failures += 1
                conn = None
            time.sleep(0.005)


def zero_downtime(dh, procs, args, budget):
    budget.check("zero downtime")
    watch = CutoverWatch(dh.port)
    watch.start()
    url = f"http://127.0.0.1:{dh.port}{PATH}"
    wrk = procs.start("wrk-deploys", wrk_argv(url, 64, 900), cpu=args.client_cpu,
                      stop_signal=signal.SIGINT, stdout=subprocess.PIPE)
    deploys = []
    try:
        time.sleep(1.0)
        for _ in range(args.deploys):
            budget.check("zero downtime")
            t0 = time.monotonic()
            version, report = dh.deploy()
            t1 = time.monotonic()
            deploys.append({
                "version": version,
                "t0": t0,
                "succeeded": bool(report.get("succeeded")),
                "message": report.get("message", ""),
                "duration_ms": report.get("duration_ms"),
                "command_ms": (t1 - t0) * 1000,
            })
            log(f"deploy {version}: {report.get('message', '')}")
            dh.healthy_instance()  # remember the new instance's pid for cleanup
            time.sleep(0.5)
    finally:
        watch.stop_flag.set()
        if wrk.poll() is None:
            os.kill(wrk.pid, signal.SIGINT)
        try:
            out, _ = wrk.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            out = b""
        procs.stop(wrk)
    for d in deploys:
        t0, seen = d.pop("t0"), watch.first_seen.get(d["version"])
        d["cutover_ms"] = None if seen is None else (seen - t0) * 1000
    try:
        load = bl.parse_wrk(out.decode(errors="replace"))
    except bl.ParseError as e:
        load = {"error": str(e)}
    return {"deploys": deploys, "load": load, "watch_failures": watch.failures}


# ---------------------------------------------------------------------------------------------
# idle agent with the bundled example


def idle_agent(exe, procs, workdir, args, budget):
    budget.check("idle agent")
    if shutil.which("python3") is None:
        return {"skipped": "python3 is not installed (the bundled example needs it)"}
    cwd = workdir / "idle"
    cwd.mkdir()
    port = free_port()
    env = dict(os.environ, DOCKHAND_LISTEN=f"127.0.0.1:{port}",
               DOCKHAND_HTTPS_LISTEN=f"127.0.0.1:{free_port()}")
    env.pop("DOCKHAND_SOCKET", None)
    p = procs.start("dockhand-up", [str(exe), "up", "--json"], cwd=cwd, env=env,
                    cpu=args.proxy_cpu, stop_signal=signal.SIGINT, grace=30.0)
    deadline = time.monotonic() + 90
    while True:
        if p.poll() is not None:
            raise RuntimeError(f"dockhand up exited with {p.returncode}; see dockhand-up.log")
        r = run([str(exe), "status", "--json"], timeout=20, cwd=cwd, check=False)
        if r.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the bundled example was not healthy within 90s")
        time.sleep(0.5)
    time.sleep(args.settle)
    t0, w0 = proc_ticks(p.pid), time.monotonic()
    time.sleep(args.idle)
    t1, w1 = proc_ticks(p.pid), time.monotonic()
    app_pids = children(p.pid)
    app_rss = 0
    for pid in app_pids:
        try:
            app_rss += proc_status_kib(pid) + sum(proc_status_kib(c) for c in children(pid))
        except OSError:
            pass
    out = {
        "seconds": w1 - w0,
        "cpu_ms": (t1 - t0) * 1000 / CLK_TCK,
        "cpu_pct": (t1 - t0) / CLK_TCK / (w1 - w0) * 100,
        "rss_kib": proc_status_kib(p.pid),
        "rss_anon_kib": proc_status_kib(p.pid, "RssAnon"),
        "rss_file_kib": proc_status_kib(p.pid, "RssFile"),
        "pss_kib": proc_pss_kib(p.pid),
        "threads": proc_status_kib(p.pid, "Threads"),
        "app_rss_kib": app_rss,
        "app_processes": len(app_pids),
    }
    status = json.loads(run([str(exe), "status", "--json"], timeout=20, cwd=cwd).stdout)
    metrics = status.get("agent", {}).get("metrics_listen")
    try:
        out["stack"] = monitoring_stack(procs, workdir, metrics, args)
    finally:
        procs.stop(p)
    return out


STACK = ["prometheus", "prometheus-node-exporter", "prometheus-alertmanager"]


def monitoring_stack(procs, workdir, metrics, args):
    """What the agent's monitoring replaces, measured idle over the same window: Debian's
    prometheus scraping the agent's /metrics and node-exporter every 15 s, with alertmanager."""
    missing = [b for b in STACK if shutil.which(b) is None]
    if missing:
        return {"skipped": f"not measured: install {' '.join(missing)} (Debian packages)"}
    if not metrics:
        return {"skipped": "not measured: the agent serves no /metrics"}
    d = workdir / "stack"
    (d / "tsdb").mkdir(parents=True)
    (d / "am").mkdir()
    node, prom, am = free_port(), free_port(), free_port()
    (d / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n"
        f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am}']\n"
        "scrape_configs:\n"
        f"  - job_name: dockhand\n    static_configs:\n      - targets: ['{metrics}']\n"
        f"  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{node}']\n")
    (d / "alertmanager.yml").write_text(
        "route:\n  receiver: none\nreceivers:\n  - name: none\n")
    started = [
        procs.start("node-exporter", ["prometheus-node-exporter",
                                      f"--web.listen-address=127.0.0.1:{node}"]),
        procs.start("alertmanager", ["prometheus-alertmanager",
                                     f"--config.file={d / 'alertmanager.yml'}",
                                     f"--storage.path={d / 'am'}",
                                     f"--web.listen-address=127.0.0.1:{am}",
                                     "--cluster.listen-address="]),
        procs.start("prometheus", ["prometheus", f"--config.file={d / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={d / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{prom}"]),
    ]
    try:
        wait_http(prom, timeout=60, path="/-/ready", name="prometheus")
        time.sleep(args.settle)
        t0 = [proc_ticks(q.pid) for q in started]
        w0 = time.monotonic()
        time.sleep(max(args.idle, 16))  # at least one scrape of each target
        t1 = [proc_ticks(q.pid) for q in started]
        w1 = time.monotonic()
        rss = [proc_status_kib(q.pid) for q in started]
        ticks = sum(b - a for a, b in zip(t0, t1))
        return {
            "seconds": w1 - w0,
            "cpu_pct": ticks / CLK_TCK / (w1 - w0) * 100,
            "rss_kib": sum(rss),
            "each": {name: r for name, r in zip(["node-exporter", "alertmanager", "prometheus"], rss)},
        }
    finally:
        for q in reversed(started):
            procs.stop(q)



# ---------------------------------------------------------------------------------------------
# backups

PG_IMAGE = "dockhand-test/postgres:15"


# ---------------------------------------------------------------------------------------------
# static files (issue 17)


STATIC_CASES = [
    # (name, path, body bytes, extra wrk headers)
    ("1 KB", "/f1k.txt", 1024, []),
    ("100 KB", "/f100k.txt", 100 * 1024, []),
    ("1 MB", "/f1m.bin", 1024 * 1024, []),
    ("gzip 100 KB JSON", "/data.json", None, ["-H", "Accept-Encoding: gzip"]),
]


def write_static_site(root):
    root.mkdir(parents=True, exist_ok=True)
    line = "Dockhand static bench line of text, repeated to fill the file.\n"
    for name, size in (("f1k.txt", 1024), ("f100k.txt", 100 * 1024)):
        (root / name).write_text((line * (size // len(line) + 1))[:size])
    (root / "f1m.bin").write_bytes(bytes(i % 251 for i in range(1024 * 1024)))
    rows, size = [], 0
    i = 0
    while size < 100 * 1024:
        row = json.dumps({"id": i, "name": f"item {i}", "price": i * 1.5, "tags": ["a", "b"]})
        rows.append(row)
        size += len(row) + 1
        i += 1
    (root / "data.json").write_text("[" + ",".join(rows) + "]")


def measure_static(pids, url, headers, body_bytes, args):
    """wrk keep-alive (64 connections) on one URL: req/s, p99, CPU per request of `pids`."""
    argv = ["wrk", "-t1", "-c64", f"-d{args.warmup}s", "--timeout", "5s", *headers, url]
    run(argv, timeout=args.warmup + 30, cpu=args.client_cpu)
    before = sum(proc_ticks(p) for p in pids)
    argv = ["wrk", "-t1", "-c64", f"-d{args.duration}s", "--latency", "--timeout", "5s",
            *headers, url]
    res = bl.parse_wrk(run(argv, timeout=args.duration + 30, cpu=args.client_cpu).stdout)
    ticks = sum(proc_ticks(p) for p in pids) - before
    res["cpu_us"] = bl.cpu_us_per_request(ticks, CLK_TCK, res["requests"])
    if body_bytes and res.get("rps"):
        res["mib_s"] = res["rps"] * body_bytes / (1024 * 1024)
    return res


def static_stage(exe, procs, workdir, args, budget):
    """Static files over keep-alive HTTP: Dockhand's proxy against nginx (sendfile,
    open_file_cache) and Caddy's file_server, each on one core."""
    budget.check("static")
    root = workdir / "static-site"
    write_static_site(root)
    # nginx's worker runs as an unprivileged user: it must reach the files (mkdtemp is 0700).
    for d in (workdir, root):
        d.chmod(0o755)
    peers = {}
    # Dockhand: a static service (the agent copies the files for its release).
    project = workdir / "static-app"
    project.mkdir()
    port = free_port()
    (project / "dockhand.toml").write_text(pc.dockhand_static_toml(port, root))
    env = dict(os.environ, RUST_LOG="warn")
    env.pop("DOCKHAND_SOCKET", None)
    p = DockhandPeer("dockhand", port, None)
    p.proc = procs.start("dockhand-static", [str(exe), "agent", "-f",
                                             str(project / "dockhand.toml")],
                         cpu=args.proxy_cpu, env=env, cwd=project, grace=30.0)
    wait_http(port, path="/f1k.txt", timeout=60, proc=p.proc, name="dockhand static")
    peers["dockhand"] = p
    (workdir / "nginx-tmp").mkdir(exist_ok=True)
    p = Peer("nginx", free_port(), None)
    conf = workdir / "nginx-static.conf"
    conf.write_text(pc.nginx_static_conf(workdir, p.http_port, root))
    run(["nginx", "-t", "-q", "-c", str(conf), "-p", str(workdir)], timeout=20)
    p.proc = procs.start("nginx-static", ["nginx", "-c", str(conf), "-p", str(workdir)],
                         cpu=args.proxy_cpu, stop_signal=signal.SIGQUIT)
    wait_http(p.http_port, path="/f1k.txt", proc=p.proc, name="nginx static")
    peers["nginx"] = p
    if shutil.which("caddy"):
        p = Peer("caddy", free_port(), None)
        conf = workdir / "Caddyfile.static"
        conf.write_text(pc.caddy_static(p.http_port, root))
        cenv = dict(os.environ, GOMAXPROCS="1", HOME=str(workdir),
                    XDG_DATA_HOME=str(workdir / "caddy-data"),
                    XDG_CONFIG_HOME=str(workdir / "caddy-config"))
        p.proc = procs.start("caddy-static", ["caddy", "run", "--adapter", "caddyfile",
                                              "--config", str(conf)],
                             cpu=args.proxy_cpu, env=cenv, stop_signal=signal.SIGINT)
        wait_http(p.http_port, path="/f1k.txt", proc=p.proc, name="caddy static")
        peers["caddy"] = p
    table, raw = {}, {}
    for case, path, size, headers in STATIC_CASES:
        runs = {name: [] for name in peers}
        for rnd in range(args.rounds):
            for name in bl.rotate(list(peers), rnd):
                budget.check("static")
                peer = peers[name]
                res = measure_static(peer.pids(), f"http://127.0.0.1:{peer.http_port}{path}",
                                     headers, size, args)
                runs[name].append(res)
                log(f"static {case} {name}: {bl.fmt_num(res.get('rps'))} req/s, "
                    f"{bl.fmt_num(res.get('cpu_us'), 1)} µs CPU/request")
        table[case] = {n: bl.summarize(r) for n, r in runs.items()}
        raw[case] = runs
    for p in peers.values():
        procs.stop(p.proc)
    return {"table": table, "peers": list(peers)}, raw


def ensure_docker(testapp):
    """A Docker Engine (scripts/dockerd starts one) and the PostgreSQL test image."""
    if run(["docker", "info"], timeout=30, check=False).returncode != 0:
        run([str(ROOT / "scripts/dockerd"), "start"], timeout=180)
    if run(["docker", "image", "inspect", PG_IMAGE], timeout=30, check=False).returncode != 0:
        log(f"building {PG_IMAGE} (scripts/test-images)")
        run([str(ROOT / "scripts/test-images"), "--testapp", str(testapp)], timeout=1800)


def container_cpu_s(container):
    """CPU seconds the container's cgroup used so far (v2 or v1), None if not found."""
    cid = run(["docker", "inspect", "-f", "{{.Id}}", container], timeout=30).stdout.strip()
    candidates = [
        f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat",
        f"/sys/fs/cgroup/docker/{cid}/cpu.stat",
        f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage",
        f"/sys/fs/cgroup/cpu,cpuacct/docker/{cid}/cpuacct.usage",
        f"/sys/fs/cgroup/cpuacct/system.slice/docker-{cid}.scope/cpuacct.usage",
    ]
    for path in candidates:
        try:
            with open(path) as f:
                return bl.parse_cgroup_cpu_s(os.path.basename(path), f.read())
        except OSError:
            continue
    return None


def cpu_delta(before, after):
    return None if before is None or after is None else after - before


class BackupApp:
    """One agent with a PostgreSQL database of pgbench scale `scale` and a local target."""

    def __init__(self, procs, workdir, exe, scale):
        self.procs, self.exe, self.scale = procs, exe, scale
        self.app = f"benchbk{scale}-{os.getpid()}"
        self.db = f"{self.app}-db"
        self.dir = workdir / f"backups-{scale}"
        self.dir.mkdir()
        self.proc = None

    def client(self, *args, timeout=30, check=True):
        env = dict(os.environ)
        env.pop("DOCKHAND_SOCKET", None)
        return run([str(self.exe), *args], timeout=timeout, cwd=self.dir, env=env, check=check)

    def psql(self, sql):
        return run(["docker", "exec", "-u", "postgres", self.db, "psql", "-U", self.app, "-d",
                    self.app, "-tAq", "-c", sql], timeout=120).stdout.strip()

    def start(self):
        made = json.loads(self.client("backup", "keygen", "--out", str(self.dir / "backup.key"),
                                      "--json").stdout)
        secrets = self.dir / ".dockhand" / "secrets.env"
        secrets.parent.mkdir()
        secrets.write_text("DB_PASSWORD=bench-backup-password\n")
        secrets.chmod(0o600)
        (self.dir / "dockhand.toml").write_text(f"""app = "{self.app}"

[proxy]
listen = "127.0.0.1:{free_port()}"

[databases.db]
engine = "postgres"
image = "{PG_IMAGE}"

[services.worker]
command = "sleep 100000"

[backups]
recipients = ["{made['recipient']}"]
identity = "{self.dir / 'backup.key'}"
include = ["db"]

[backups.targets.local]
dir = "{self.dir / 'store'}"
""")
        env = dict(os.environ, RUST_LOG="warn")
        env.pop("DOCKHAND_SOCKET", None)
        self.proc = self.procs.start(f"dockhand-agent-backups-{self.scale}",
                                     [str(self.exe), "agent"], cwd=self.dir, env=env, grace=60.0)
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the backup bench agent exited with {self.proc.returncode}")
            r = self.client("status", "--json", check=False)
            try:
                st = json.loads(r.stdout)
            except ValueError:
                st = None
            if isinstance(st, dict) and st.get("current_release") and not st.get("deploying"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the backup bench app did not start within 180s")
            time.sleep(0.5)
        log(f"pgbench -i -s {self.scale}")
        run(["docker", "exec", "-u", "postgres", self.db, "pgbench", "-i", "-q", "-s",
             str(self.scale), "-U", self.app, self.app], timeout=3600)
        run(["docker", "exec", "-u", "postgres", self.db, "psql", "-U", self.app, "-d", self.app,
             "-c", "CHECKPOINT"], timeout=600, check=False)
        return int(self.psql("SELECT pg_database_size(current_database())"))

    def stop(self):
        if self.proc is not None:
            self.procs.stop(self.proc)
        ids = run(["docker", "ps", "-aq", "--filter", f"label=dockhand.app={self.app}"],
                  timeout=60, check=False).stdout.split()
        if ids:
            run(["docker", "rm", "-f", *ids], timeout=120, check=False)
        vols = run(["docker", "volume", "ls", "-q", "--filter", f"label=dockhand.app={self.app}"],
                   timeout=60, check=False).stdout.split()
        if vols:
            run(["docker", "volume", "rm", "-f", *vols], timeout=120, check=False)


class PeakSampler:
    """The largest value of a /proc/PID/status field (kiB) seen while the `with` block runs,
    sampled every `every` seconds: what one operation adds, where VmHWM would also hold
    everything before it (the agent's start-up, when all its code is resident)."""

    def __init__(self, pid, field="RssAnon", every=0.02):
        self.pid, self.field, self.every = pid, field, every
        self.peak = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                v = proc_status_kib(self.pid, self.field)
            except OSError:
                return
            self.peak = v if self.peak is None else max(self.peak, v)
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


def backup_once(bk, db_bytes):
    """One `dockhand backup run` timed: wall, CPU (agent + database container), and the
    agent's peak anonymous memory during it (heap and stacks: what streaming keeps bounded)."""
    c0, a0, w0 = container_cpu_s(bk.db), proc_ticks(bk.proc.pid), time.monotonic()
    with PeakSampler(bk.proc.pid) as peak:
        r = bk.client("backup", "run", "--json", timeout=3600, check=False)
    w1, a1, c1 = time.monotonic(), proc_ticks(bk.proc.pid), container_cpu_s(bk.db)
    taken = json.loads(r.stdout)
    if r.returncode != 0 or taken.get("state") != "complete":
        raise RuntimeError(f"dockhand backup run failed: {r.stdout[-1000:]} {r.stderr[-1000:]}")
    container = cpu_delta(c0, c1)
    return {"scale": bk.scale, "tool": "dockhand", "seconds": w1 - w0,
            "cpu_s": None if container is None else container + (a1 - a0) / CLK_TCK,
            "db_bytes": db_bytes, "stored_bytes": taken.get("stored_bytes"),
            "rss_peak_kib": peak.peak, "id": taken["id"]}


def shell_once(bk, db_bytes, out):
    """`pg_dump -Fc | zstd` of the same database, timed the same way."""
    c0, w0 = container_cpu_s(bk.db), time.monotonic()
    t0 = os.times()
    r = subprocess.run(
        ["sh", "-c", f"docker exec -u postgres {bk.db} pg_dump -Fc -U {bk.app} {bk.app} "
                     f"| zstd -q -3 -f -o {out}"],
        capture_output=True, text=True, timeout=3600)
    w1, c1 = time.monotonic(), container_cpu_s(bk.db)
    t1 = os.times()
    if r.returncode != 0:
        raise RuntimeError(f"pg_dump -Fc | zstd failed: {r.stderr[-1000:]}")
    container = cpu_delta(c0, c1)
    local = (t1.children_user + t1.children_system) - (t0.children_user + t0.children_system)
    return {"scale": bk.scale, "tool": "pg_dump | zstd", "seconds": w1 - w0,
            "cpu_s": None if container is None else container + local, "db_bytes": db_bytes,
            "stored_bytes": out.stat().st_size}


def restore_once(bk, db_bytes, backup_id, dump):
    """`dockhand backup restore` (safety backup, maintenance, restore, start again) and
    `pg_restore` of the shell pipeline's dump into a fresh database of the same server."""
    w0 = time.monotonic()
    r = bk.client("backup", "restore", backup_id, "--json", timeout=3600, check=False)
    w1 = time.monotonic()
    if r.returncode != 0:
        raise RuntimeError(f"dockhand backup restore failed: {r.stdout[-1000:]} {r.stderr[-1000:]}")
    out = [{"scale": bk.scale, "tool": "dockhand restore", "seconds": w1 - w0, "cpu_s": None,
            "db_bytes": db_bytes}]
    bk.psql("DROP DATABASE IF EXISTS bench_restore")
    bk.psql("CREATE DATABASE bench_restore")
    w0 = time.monotonic()
    r = subprocess.run(
        ["sh", "-c", f"zstd -dc {dump} | docker exec -i -u postgres {bk.db} pg_restore "
                     f"-U {bk.app} -d bench_restore --no-owner"],
        capture_output=True, text=True, timeout=3600)
    w1 = time.monotonic()
    if r.returncode != 0:
        raise RuntimeError(f"pg_restore failed: {r.stderr[-1000:]}")
    out.append({"scale": bk.scale, "tool": "pg_restore", "seconds": w1 - w0, "cpu_s": None,
                "db_bytes": db_bytes})
    return out


def backups_bench(exe, testapp, procs, workdir, args, budget):
    """Backup throughput and CPU against `pg_dump -Fc | zstd` on pgbench databases, the
    agent's peak RSS at two scales, and restore time against `pg_restore`."""
    budget.check("backups")
    for tool in ("docker", "zstd"):
        if shutil.which(tool) is None:
            return {"skipped": f"`{tool}` is not installed (apt-get install docker.io zstd)"}, []
    ensure_docker(testapp)
    runs = []
    for scale in args.backup_scales:
        bk = BackupApp(procs, workdir, exe, scale)
        try:
            db_bytes = bk.start()
            dump = bk.dir / "shell.pgdump.zst"
            last = None
            for n in range(args.rounds):
                order = bl.rotate(["dockhand", "shell"], n)
                for tool in order:
                    budget.check(f"backups (scale {scale})")
                    if tool == "dockhand":
                        last = backup_once(bk, db_bytes)
                        runs.append(last)
                    else:
                        runs.append(shell_once(bk, db_bytes, dump))
                    log(f"backups scale {scale}: {runs[-1]['tool']} "
                        f"{runs[-1]['seconds']:.2f} s")
            if scale == max(args.backup_scales):
                runs += restore_once(bk, db_bytes, last["id"], dump)
        finally:
            bk.stop()
    return bl.backup_summary(runs), runs

# ---------------------------------------------------------------------------------------------
# remote: a server over SSH (issue 21)

TARGET_IMAGE = "dockhand-test/target:bookworm"
TARGET_RUN = [
    # As crates/test-support/src/target.rs runs it: systemd as PID 1 and a Docker Engine
    # inside, sshd published on 127.0.0.1 only.
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm",
    "--cgroupns", "private", "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
    "-p", "127.0.0.1::22", "-p", "127.0.0.1::80",
]
APP_CODE_LINES = 400  # the "code" layer: a file of this many lines, one of them changed per deploy


def _app_code(version):
    lines = [f"# line {i}: application code that does not change between deploys" for i in
             range(APP_CODE_LINES)]
    lines[APP_CODE_LINES // 2] = f"VERSION = {version!r}  # the one line each deploy changes"
    return "\n".join(lines) + "\n"


def _timed(argv, timeout, env=None, cwd=None):
    t0 = time.monotonic()
    r = run(argv, timeout=timeout, env=env, cwd=cwd, check=False)
    return r, (time.monotonic() - t0) * 1000


def remote_stage(exe, workdir, args, budget):
    """Registry-less deploys to a local SSH target (a debootstrap'd Debian 12 in a container)
    against `docker save | ssh docker load`, and `dockhand status` over a shared SSH master
    against a plain `ssh HOST true`."""
    budget.check("remote")
    if shutil.which("docker") is None or run(["docker", "version"], timeout=20,
                                              check=False).returncode != 0:
        return "not run: no Docker Engine answers (scripts/dockerd start)"
    if shutil.which("ssh") is None:
        return "not run: the OpenSSH client is missing (apt-get install openssh-client)"
    run([str(ROOT / "scripts/test-target")], timeout=1800)
    if run(["docker", "image", "inspect", "dockhand-testapp:shell"], timeout=20,
           check=False).returncode != 0:
        run([str(ROOT / "scripts/test-images"), "--testapp",
             str(ROOT / "target/release/dockhand-testapp")], timeout=1800)
    rdir = workdir / "remote"
    rdir.mkdir()
    name = f"dockhand-bench-target-{os.getpid()}"
    repo = f"dockhand-bench-{os.getpid()}/app"
    images = []
    key = rdir / "id"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], timeout=30)
    try:
        run(["docker", "run", "-d", "--name", name, "--hostname", "bench", *TARGET_RUN,
             "-v", f"{name}-docker:/var/lib/docker", TARGET_IMAGE], timeout=120)
        port = int(run(["docker", "port", name, "22/tcp"], timeout=20).stdout.split(":")[-1])
        http_port = int(run(["docker", "port", name, "80/tcp"], timeout=20).stdout.splitlines()[0]
                        .split(":")[-1])
        pub = (rdir / "id.pub").read_text().strip()
        run(["docker", "exec", name, "sh", "-c",
             f"install -d -m 700 /root/.ssh && echo '{pub}' > /root/.ssh/authorized_keys"],
            timeout=30)
        cfg = rdir / "ssh_config"
        cfg.write_text(f"Host bench\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {key}\n"
                       f"  IdentitiesOnly yes\n  UserKnownHostsFile {rdir / 'known_hosts'}\n"
                       "  StrictHostKeyChecking accept-new\n  LogLevel ERROR\n")
        ssh = ["ssh", "-F", str(cfg), "-o", "BatchMode=yes", "-o", "ControlPath=none"]
        deadline = time.monotonic() + 90
        while run(ssh + ["root@bench", "true"], timeout=20, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the target's sshd did not let root in within 90s")
            time.sleep(0.5)

        proj = rdir / "project"
        ctxdir = rdir / "image"
        proj.mkdir()
        ctxdir.mkdir()
        (ctxdir / "Dockerfile").write_text("FROM dockhand-testapp:shell\nCOPY app.py /app/app.py\n")

        def build(version):
            (ctxdir / "app.py").write_text(_app_code(version))
            tag = f"{repo}:{version}"
            run(["docker", "build", "-q", "-t", tag, str(ctxdir)], timeout=600)
            images.append(tag)
            return tag

        def config(tag, user):
            (proj / "dockhand.toml").write_text(
                f'app = "bench"\n\n[proxy]\nlisten = "0.0.0.0:80"\ndrain_timeout = "2s"\n\n'
                f'[services.web]\nimage = "{tag}"\nport = 8080\n'
                f'health = {{ path = "/health", interval = "200ms" }}\n'
                f'route = {{ path = "/" }}\n\n[destinations.bench]\nhost = "ssh://{user}@bench"\n')

        env = dict(os.environ, DOCKHAND_SSH_CONFIG=str(cfg), NO_COLOR="1")
        env.pop("DOCKHAND_SOCKET", None)
        env.pop("DOCKHAND_HOST", None)
        config(build("v0"), "root")
        r, setup_ms = _timed([str(exe), "setup", "-d", "bench", "--yes", "--json"], 900, env, proj)
        if r.returncode != 0:
            raise RuntimeError(f"dockhand setup failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
        out = {"setup_ms": setup_ms}
        config(images[-1], "deploy")
        r, first_ms = _timed([str(exe), "deploy", "-d", "bench", "--json"], 900, env, proj)
        first = json.loads(r.stdout)
        if not first.get("succeeded"):
            raise RuntimeError(f"the first deploy failed: {r.stdout[-2000:]}")
        out["first_deploy"] = {"ms": first_ms, "image": first["remote"]["images"][0]}
        rounds = []
        for i in range(1, args.rounds + 1):
            budget.check("remote")
            tag = build(f"v{i}")
            config(tag, "deploy")
            r, deploy_ms = _timed([str(exe), "deploy", "-d", "bench", "--json"], 900, env, proj)
            report = json.loads(r.stdout)
            if not report.get("succeeded"):
                raise RuntimeError(f"deploy v{i} failed: {r.stdout[-2000:]}")
            pushed = report["remote"]["images"][0]
            # The baseline: the whole image through one SSH pipe, bytes counted on the way.
            save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
            load = subprocess.Popen(ssh + ["deploy@bench", "sudo -n docker load -q"],
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            t0, sent = time.monotonic(), 0
            while True:
                chunk = save.stdout.read(1 << 20)
                if not chunk:
                    break
                sent += len(chunk)
                load.stdin.write(chunk)
            load.stdin.close()
            if load.wait(timeout=600) != 0 or save.wait(timeout=60) != 0:
                raise RuntimeError("docker save | ssh docker load failed")
            save_ms = (time.monotonic() - t0) * 1000
            rounds.append({"deploy_bytes": pushed["bytes_sent"], "deploy_ms": deploy_ms,
                           "layers_sent": pushed["layers_sent"], "layers": pushed["layers"],
                           "save_bytes": sent, "save_ms": save_ms})
            log(f"remote round {i}: dockhand sent {pushed['bytes_sent']} bytes in "
                f"{deploy_ms:.0f} ms; docker save | ssh docker load {sent} bytes in {save_ms:.0f} ms")
        out["rounds"] = rounds
        out["summary"] = bl.summarize_remote(rounds)
        # The round trip of `status` over the shared master (after a first call opens it)
        # against a plain `ssh HOST true` (a new connection each time).
        n = 3 if args.quick else 10
        status, plain, cold = [], [], []
        _timed([str(exe), "status", "-d", "bench", "--json"], 60, env, proj)  # opens the master
        for i in range(n):
            # A cold status: another ssh_config file is another master (a new connection).
            other = rdir / f"ssh_config.cold{i}"
            other.write_text(cfg.read_text())
            _, ms = _timed([str(exe), "status", "-d", "bench", "--json"], 60,
                           dict(env, DOCKHAND_SSH_CONFIG=str(other)), proj)
            cold.append(ms)
            _, ms = _timed([str(exe), "status", "-d", "bench", "--json"], 60, env, proj)
            status.append(ms)
            _, ms = _timed(ssh + ["deploy@bench", "true"], 60)
            plain.append(ms)
        out["status"] = {"cold_ms": bl.median(cold), "status_ms": bl.median(status),
                         "ssh_true_ms": bl.median(plain), "runs": n}
        out["http_port"] = http_port
        return out
    finally:
        run(["docker", "rm", "-f", "-v", name], timeout=120, check=False)
        run(["docker", "volume", "rm", "-f", f"{name}-docker"], timeout=60, check=False)
        if images:
            run(["docker", "rmi", "-f", *images], timeout=120, check=False)


# ---------------------------------------------------------------------------------------------
# Swarm cluster (issue 24)

SWARM_BENCH = "dockhand-swarm-bench"
# What test-support's swarm fixture runs on the host (crates/test-support/src/swarm.rs).
SWARM_TOOLS = {"ip": "iproute2", "iptables": "iptables", "nsenter": "util-linux",
               "unshare": "util-linux", "dockerd": "docker.io", "curl": "curl",
               "ssh": "openssh-client", "ssh-keygen": "openssh-client",
               "/usr/sbin/sshd": "openssh-server", "wrk": "wrk"}


def cluster_stage(exe, args, budget):
    """A real three-node swarm on this machine (test-support's fixture), driven by the Rust
    helper `dockhand-swarm-bench` with the dockhand binary under test: the ingress's CPU per
    request and p99 to a task on another node against one on its own node, deploy to every
    ingress serving the new release, and a worker's Engine killed under load. Returns the
    summaries (and the helper's raw JSON under `raw`), or "not run: …"."""
    budget.check("cluster")
    if shutil.which("docker") is None or run(["docker", "version"], timeout=20,
                                              check=False).returncode != 0:
        return "not run: no Docker Engine answers (scripts/dockerd start)"
    if os.geteuid() != 0:
        return ("not run: the swarm's nodes are network namespaces with a dockerd each, which "
                "needs root")
    missing = sorted({pkg for tool, pkg in SWARM_TOOLS.items()
                      if (shutil.which(tool) if "/" not in tool else
                          (Path(tool) if Path(tool).is_file() else None)) is None})
    if missing:
        return f"not run: missing tools (apt-get install {' '.join(missing)})"
    if run(["docker", "image", "inspect", "dockhand-testapp:shell"], timeout=20,
           check=False).returncode != 0:
        testapp = ROOT / "target/release/dockhand-testapp"
        if not testapp.is_file():
            testapp = ROOT / "target/debug/dockhand-testapp"
        run([str(ROOT / "scripts/test-images"), "--testapp", str(testapp)], timeout=1800)
    helper = ROOT / "target/debug" / SWARM_BENCH
    if not args.no_build or not helper.is_file():
        log(f"cargo build -p dockhand-test-support --bin {SWARM_BENCH}")
        r = subprocess.run(["cargo", "build", "-p", "dockhand-test-support", "--bin",
                            SWARM_BENCH], cwd=ROOT, timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(f"cargo build of {SWARM_BENCH} failed (output above)")
    conns = min(args.conns)
    deploys = args.rounds
    argv = [str(helper), "--dockhand-bin", str(exe), "--rounds", str(args.rounds),
            "--duration", str(args.duration), "--conns", str(conns), "--deploys", str(deploys),
            "--idle", str(args.idle)]
    if args.quick:
        argv += ["--scale", "6", "--scale-window", "5"]
    log(" ".join(argv))
    # Its progress goes to our stderr; the JSON comes on stdout. Killed by a timeout or a
    # signal, it leaves its namespaces behind: the next swarm started removes them.
    r = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"{SWARM_BENCH} failed with exit code {r.returncode} (its output "
                           "above)")
    raw = json.loads(r.stdout)
    report = args.out if args.out.is_file() else ROOT / "BENCHMARKS.md"
    out = cluster_summary(raw, {"exe": str(exe), "conns": conns, "duration": args.duration,
                                "cores": len(os.sched_getaffinity(0))},
                          report.read_text() if report.is_file() else "")
    out["raw"] = raw
    return out


def cluster_summary(raw, run, report):
    """The cluster section's figures from `dockhand-swarm-bench`'s JSON (`raw`), the run's
    own facts (`run`: exe, conns, duration, cores) and the report it goes into (for the
    single-host idle agent, the ingress's peer)."""
    cap = raw.get("capacity") or {}
    return {
        **run,
        "capacity": {
            "idle_seconds": cap.get("idle_seconds"),
            "empty": bl.capacity_footprint(cap.get("idle_empty") or {}),
            "app": bl.capacity_footprint(cap.get("idle_app") or {}),
            "agent": ((cap.get("idle_app") or {}).get("processes") or {}).get("agent"),
            "agent_error": (cap.get("idle_app") or {}).get("agent_error"),
            "raft": bl.raft_growth(cap.get("raft") or []),
            "raft_samples": cap.get("raft") or [],
            "scale": bl.scale_steps(cap.get("scale") or [], cap.get("scale_service", "spread")),
            "scale_back": [s for s in (cap.get("scale") or []) if not s.get("window")],
            "overlay": cap.get("overlay"),
            "overlay_scaled": cap.get("overlay_scaled"),
            "idle_agent": bl.idle_agent_figures(report),
        },
        "cluster_start_ms": raw["cluster_start_ms"],
        "placement": raw["placement"],
        "first_deploy": raw["first_deploy"],
        "overlay": bl.cluster_overlay_summary(raw["overlay"]),
        "deploys": bl.cluster_deploy_summary(raw["deploys"]),
        "dead_node": bl.cluster_dead_summary(raw["dead_node"]),
    }


def render_cluster(cl, run_note=None):
    lines = ["## Swarm cluster (issue 24)", ""]
    if run_note:
        lines += [run_note, ""]
    if isinstance(cl, str):
        return lines + [cl, ""]
    pl = cl["placement"]
    lines.append(
        "A real three-node Docker Swarm on this one machine: test-support's fixture "
        "(`crates/test-support/src/swarm.rs`), a manager `m1` and two workers `w1`, `w2`, each "
        "a `dockerd` in a network namespace of its own, reached over SSH, built and driven by "
        f"`{SWARM_BENCH}` (`crates/test-support/src/bin/`) with the dockhand binary under "
        f"test (the swarm up in {cl['cluster_start_ms'] / 1000:.0f} s). The app is three "
        "copies of the test app behind Dockhand's ingress proxy, which runs on every node, each "
        "on a host of its own and differing only in placement: `local` on m1 "
        f"(ran on {', '.join(pl.get('local', [])) or '?'}), `remote` on w1 "
        f"(ran on {', '.join(pl.get('remote', [])) or '?'}), `spread` twice on the workers "
        f"(ran on {', '.join(pl.get('spread', [])) or '?'}). Requests ask `/health` (the test "
        "app writes no log line for it) and read the `x-version` header, which each task sets "
        "to `<release>-<node>`.")
    lines.append("")
    lines.append(
        f"**All three nodes, the load generator and the bench share this machine's "
        f"{cl['cores']} cores**, so each figure also pays for the other nodes' engines "
        "and tasks: read them as an upper bound on the overhead, not as a multi-machine "
        "result (on separate machines the overlay hop also crosses a real network).")
    lines.append("")
    ov = cl["overlay"]
    n = (ov.get("local") or {}).get("runs", 0)
    lines.append(
        f"**The overlay hop.** `wrk -t1 -c{cl['conns']}` for {cl['duration']} s through m1's "
        "ingress, to `local` (the task on m1) and to `remote` (the task on w1, over the "
        f"overlay's VXLAN), alternating, medians of {n} run(s) each. CPU is the container's "
        "cgroup CPU time (`cpuacct.usage`) over the run divided by the requests: the ingress "
        "on m1, and the task that answered.")
    lines.append("")
    lines.append(bl.md_table(bl.CLUSTER_OVERLAY_HEADER, bl.cluster_overlay_rows(ov)))
    lines.append("")
    dp, fd = cl["deploys"], cl["first_deploy"]
    lines.append(
        f"**Deploy to every node serving.** {dp['deploys']} release(s) that change every "
        "service's env (`dockhand deploy`: start-first rolling updates gated on the tasks' "
        "health command, every 2 s), timed from the command's start until each node's ingress "
        "answers only the new release on all three hosts (each node polled every 50 ms; "
        "*first* is its first answer from the new release). Medians; the slowest deploy's "
        f"last node came at {bl.fmt_num(dp['all_nodes_max_ms'])} ms. Release 1 (the images "
        "sent to the workers over SSH, the ingress started on every node) took "
        f"{bl.fmt_num(fd['command_ms'])} ms, every ingress serving it after "
        f"{bl.fmt_num(fd['all_nodes_ms'])} ms.")
    lines.append("")
    rows = [[f"ingress on {h}", f"{bl.fmt_num(v['first_new_ms'])} ms",
             f"{bl.fmt_num(v['serving_ms'])} ms"] for h, v in dp["nodes"].items()]
    rows.append(["every node", "", f"{bl.fmt_num(dp['all_nodes_ms'])} ms"])
    rows.append(["`dockhand deploy` returned", "", f"{bl.fmt_num(dp['command_ms'])} ms"])
    lines.append(bl.md_table(["", "first new answer", "answering only the new release"], rows))
    lines.append("")
    dn = cl["dead_node"]
    before = ", ".join(f"{k}: {v:,}" for k, v in dn["answers_before_kill"].items())
    lines.append(
        f"**A dead node.** {dn['clients']} clients through m1's ingress to `spread`, half "
        "opening a connection per request (each request routed anew), half keeping theirs "
        "alive. Start-first rolling updates can leave both of `spread`'s tasks on one worker, "
        "so before this phase the bench sets `--replicas-max-per-node 1` on it with the docker "
        "CLI (stop-first) and waits until m1's ingress answers from both workers "
        f"(answers in the 5 s before the kill: {before}); then w1's `dockerd` is killed (SIGKILL; "
        "its containers keep running, as on a machine whose engine crashed). Timed from the "
        f"kill, observed for {dn['observed_ms'] / 1000:.0f} s, one run. The manager saw w1 "
        f"down after {bl.fmt_num(dn['node_down_ms'])} ms."
        + ("" if dn.get("served_by_w1_before", True) else
           " **m1's ingress routed no request to w1's `spread` task before the kill** (only "
           "w2's answered, though Swarm ran a task on each worker), so this run says nothing "
           "about how fast the ingress drops a dead node's tasks; `results.json` holds the "
           "ingress's log lines about `spread` and the tasks Swarm listed."))
    lines.append("")
    rows = []
    for kind, name in (("new_connections", "a connection per request"),
                       ("keep_alive", "keep-alive")):
        k = dn[kind]
        kinds = ", ".join(f"{w} ×{n}" for w, n in k["failure_kinds"].items())
        rows.append([
            name,
            f"{bl.fmt_num(k['last_w1_answer_ms'])} ms" if k["last_w1_answer_ms"] is not None
            else "none",
            f"{k['failed_after_kill']}" + (f" ({kinds})" if kinds else ""),
            f"{bl.fmt_num(k['first_failure_ms'])} / {bl.fmt_num(k['last_failure_ms'])} ms"
            if k["failed_after_kill"] else "—",
            f"{bl.fmt_num(k['stopped_ms'])} ms" if k["stopped_ms"] is not None else "—",
        ])
    lines.append(bl.md_table(["clients", "last answer from w1's task", "failed requests",
                              "first / last failure", "last routed to w1"], rows))
    lines.append("")
    if cl.get("capacity"):
        lines += render_capacity(cl["capacity"], cl.get("exe", ""))
    return lines


def cluster_run_note(ctx):
    """The line that dates a cluster section spliced into a report by `--only cluster`."""
    exe = (ctx.get("cluster") or {}).get("exe", "") if isinstance(ctx.get("cluster"), dict) \
        else ""
    build = ("a **debug build**" if "/debug/" in exe else
             "a release build" if "/release/" in exe else "the binary named")
    return (f"**This section's run:** `{ctx['command']}` on {ctx['date']} (took "
            f"{ctx['elapsed'] / 60:.1f} min), spliced into the report (the other sections "
            f"are from their own runs); the dockhand measured (the CLI and the ingress "
            f"image) was {build}, `{exe}`"
            + (": its CPU µs/request, latencies and memory are a debug binary's — compare the "
               "ratios and the times, which Swarm and the probes bound rather than the proxy's "
               "code, and re-run with a release build (`bench/run --only cluster "
               "--dockhand-bin target/release/dockhand`) for absolute figures"
               if "/debug/" in exe else "")
            + f". Load average {ctx['load_start']} at start, "
            f"{ctx['load_end']} at end; {ctx['foreign_cpu_pct']:.0f}% of the machine's CPU "
            "time went to processes the harness did not start.")


def _mib(v, digits=1):
    return "—" if v is None else f"{v:,.{digits}f} MiB"


def _pct(v):
    return "—" if v is None else f"{v:.2f}%"


def render_capacity(cap, exe):
    """The capacity figures of the cluster section (docs/capacity.md cites them)."""
    lines = ["### Capacity figures", ""]
    secs = cap.get("idle_seconds")
    debug = "/debug/" in exe
    lines.append(
        "What the platform holds on each node and what each replica adds, on the same "
        "three-node swarm (`capacity.rs` in the bench). Memory is `VmRSS` from `/proc/PID/"
        "status` (the anonymous part, `RssAnon` — heap and stacks, what the process itself "
        "holds — beside it where it matters; the rest is mapped files, shared and reclaimable), "
        "a container's the sum over the processes of its memory cgroup; CPU is "
        "`/proc/PID/stat`'s utime+stime for the engine's processes (the node's `dockerd`, the "
        "`containerd` it started and the `containerd-shim`s, found by their command lines "
        "naming the node's directory) and the `cpuacct` cgroup for a container (which keeps "
        "the time of the health commands Swarm runs in it), over the window, as a share of "
        f"one core. Idle windows are {secs} s (not a minute: the stage's run time), after 5 s "
        "(scale steps) or 12 s (the app) to settle. All three nodes share this machine's "
        "kernel, so the per-process figures are what a node's processes hold; a real server "
        "adds its OS (systemd, sshd, journald: not measured here)."
        + (" **The ingress ran the debug build** of `dockhand`, whose mapped file pages (its "
           "executable) are several times a release build's: read the ingress's anonymous "
           "memory, not its RSS." if debug else ""))
    lines.append("")
    lines.append(
        "**Per node, idle** (`F1`): first with no app deployed (a fresh swarm: the engine "
        "alone), then with the bench app (four tasks: `local`, `remote` and two of `spread`, "
        "the *tasks* column says where; the ingress on every node, probing each of the 4 "
        "tasks every second and asking Swarm's DNS for 3 services' tasks every second) and "
        "the watch-only agent running on this host. The platform's PSS (see `F4`) is below "
        "its RSS here also because the three nodes' engines map the same executables on this "
        "one machine: on a server of its own, a node's engine holds its RSS.")
    lines.append("")
    rows = []
    for phase, name in (("empty", "no app"), ("app", "bench app")):
        for host, r in (cap.get(phase) or {}).items():
            d, c, sh, ing = r["dockerd"], r["containerd"], r["containerd-shim"], r["ingress"]
            rows.append([
                name, f"{host} ({r['role']})",
                f"{_mib(d['rss_mib'])} ({_mib(d['anon_mib'])} anon)", _pct(d["cpu_pct"]),
                _mib(c["rss_mib"]), _pct(c["cpu_pct"]),
                f"{sh['count']}: {_mib(sh['rss_mib'])}" if sh["count"] else "0",
                f"{_mib(ing['rss_mib'])} ({_mib(ing['anon_mib'])} anon), "
                f"{_pct(ing['cpu_pct'])}" if ing["count"] else "—",
                f"{r['tasks']['count']}: {_mib(r['tasks']['rss_mib'])}"
                if r["tasks"]["count"] else "0",
                f"{_mib(r['platform_mib'])} (PSS {_mib(r.get('platform_pss_mib'))}), "
                f"{_pct(r['platform_cpu_pct'])}",
            ])
    lines.append(bl.md_table(
        ["", "node", "dockerd RSS", "dockerd CPU", "containerd RSS", "containerd CPU",
         "shims", "ingress (RSS, CPU)", "tasks", "platform (engine + shims + ingress)"],
        rows))
    lines.append("")
    agent, peer = cap.get("agent"), cap.get("idle_agent")
    ings = [r["ingress"] for r in (cap.get("app") or {}).values() if r["ingress"]["count"]]
    ing_rss = bl.median([i["rss_mib"] for i in ings])
    ing_anon = bl.median([i["anon_mib"] for i in ings])
    ing_file = bl.median([i["file_mib"] for i in ings])
    ing_cpu = bl.median([i["cpu_pct"] for i in ings])
    rows = [["the ingress task (median of the 3 nodes)", _mib(ing_rss),
             f"{_mib(ing_anon)} / {_mib(ing_file)}", _pct(ing_cpu),
             bl.fmt_ratio(bl.ratio(ing_rss, peer and peer["rss_mib"])),
             bl.fmt_ratio(bl.ratio(ing_anon, peer and peer["anon_mib"]))]]
    if agent:
        a_rss, a_anon, a_file = (bl._mib(agent.get(k)) for k in ("rss_kib", "anon_kib",
                                                                    "file_kib"))
        a_cpu = None if agent.get("cpu_ms") is None or not secs else \
            agent["cpu_ms"] / (secs * 1000) * 100
        rows.append(["the watch-only agent (`dockhand agent` in the project, on the first "
                     "manager's host)", _mib(a_rss), f"{_mib(a_anon)} / {_mib(a_file)}",
                     _pct(a_cpu), bl.fmt_ratio(bl.ratio(a_rss, peer and peer["rss_mib"])),
                     bl.fmt_ratio(bl.ratio(a_anon, peer and peer["anon_mib"]))])
    else:
        rows.append(["the watch-only agent", "not measured: it did not answer within 60 s",
                     "", "", "", ""])
    lines.append(
        "**Dockhand's own processes** (`F2`), in the same window, against the single-host "
        "idle agent of the section above (its proxy included; "
        + (f"{peer['rss_mib']} MiB, {peer['anon_mib']} MiB anonymous" if peer else
           "not in this report") + ").")
    lines.append("")
    lines.append(bl.md_table(["process", "RSS", "anonymous / file", "CPU",
                              "RSS × idle agent", "anonymous × idle agent"], rows))
    lines.append("")
    rg = cap.get("raft") or {}
    per = rg.get("per_release") or {}
    samples = cap.get("raft_samples") or []
    lines.append(
        "**The Raft store per release** (`F3`): the first manager's `swarm/raft` directory "
        "after each release (the write-ahead log's bytes written: the segment is 64 MiB "
        "preallocated and zero-filled, so its written part is up to the last byte that is not "
        "zero; the snapshots' size) and the swarm's configs (`docker config ls`, their data "
        "summed: the release history is one config per release, the ingress's configuration "
        "one per routing digest). Per release, median of "
        f"{max(rg.get('releases', 1) - 1, 0)} consecutive release(s): "
        f"+{_count(per.get('configs'))} config(s), "
        f"+{bl.fmt_num(_kib(per.get('config_bytes')))} KiB of config data, "
        f"+{bl.fmt_num(_kib(per.get('wal_written_bytes')))} KiB of WAL, "
        f"{_signed_mib(per.get('dockerd_rss_kib'))} of the manager's dockerd RSS.")
    lines.append("")
    rows = [[s.get("after"), s.get("configs"), f"{bl.fmt_num(_kib(s.get('config_bytes')))} KiB",
             f"{bl.fmt_num(_kib(s.get('wal_written_bytes')))} KiB in {s.get('wal_files')} "
             f"segment(s) ({bl.fmt_num((s.get('wal_allocated_bytes') or 0) / 1048576)} MiB "
             "allocated)",
             f"{s.get('snap_files')} ({bl.fmt_num(_kib(s.get('snap_bytes')))} KiB)",
             _mib(bl._mib(s.get("dockerd_rss_kib")))] for s in samples]
    lines.append(bl.md_table(["after", "configs", "config data", "WAL written", "snapshots",
                              "m1 dockerd RSS"], rows))
    lines.append("")
    sc = cap.get("scale") or {}
    steps = sc.get("steps") or []
    pr = sc.get("per_replica") or {}
    back = cap.get("scale_back") or []
    win = f"{steps[0]['seconds']:.0f} s " if steps else ""
    lines.append(
        "**Replicas** (`F4`): `spread` (placed on the workers) scaled with `docker service "
        "scale` from 2 through each step; *converged* is from the command until Swarm lists "
        "every task running (with a health check a task runs only once healthy: its "
        "`health.command` every 2 s), then 5 s to settle and a "
        f"{win}window measured "
        "on the workers (the tasks of every service there, the shims, dockerd and containerd) "
        "and on every ingress (each probes every routed task once a second). RSS counts the "
        "pages a process shares with others (the shims' executable, the replicas' binary) "
        "once per process; PSS (`/proc/PID/smaps_rollup`) divides each shared page among the "
        "processes mapping it, so PSS sums to what the node's memory holds."
        + (" Then back to 2 replicas (for the dead-node phase)." if back else ""))
    lines.append("")
    rows = []
    for st in steps:
        on = ", ".join(f"{h}: {n}" for h, n in st["per_node"].items())
        rows.append([f"{st['replicas']} ({on})",
                     "—" if st["converge_ms"] is None else f"{bl.fmt_num(st['converge_ms'])} ms",
                     f"{_mib(st['tasks_mib'])} / {_mib(st['tasks_pss_mib'])}",
                     f"{_mib(st['shims_mib'])} / {_mib(st['shims_pss_mib'])}",
                     f"{_mib(st['engine_mib'])} / {_mib(st['engine_pss_mib'])}",
                     _pct(st["workload_cpu_pct"]),
                     f"{_pct(st['ingress_cpu_pct'])} ({st['routed_tasks']} tasks × "
                     f"{st['ingress_nodes']} ingress = {st['routed_tasks'] * st['ingress_nodes']}"
                     " probes/s)"])
    if pr:
        rows.append(["per added replica", "",
                     f"{_mib(pr['tasks_mib'], 2)} / {_mib(pr['tasks_pss_mib'], 2)}",
                     f"{_mib(pr['shims_mib'], 2)} / {_mib(pr['shims_pss_mib'], 2)}",
                     f"{_mib(pr['engine_mib'], 2)} / {_mib(pr['engine_pss_mib'], 2)}",
                     _pct(pr["workload_cpu_pct"]),
                     f"{bl.fmt_num(pr['ingress_us_per_probe'])} µs of ingress CPU per probe"])
    lines.append(bl.md_table(["replicas (per worker)", "converged",
                              "workers' tasks RSS / PSS", "workers' shims RSS / PSS",
                              "workers' dockerd + containerd RSS / PSS",
                              "workers' CPU (engine, shims, tasks)", "ingress CPU, all nodes"],
                             rows))
    lines.append("")
    if pr:
        lines.append(
            f"Each replica added {_mib(pr['total_pss_mib'], 2)} of PSS on its node in all "
            f"(`F5`; {_mib(pr['total_mib'], 2)} of RSS, which counts shared pages once per "
            f"process): the task's own processes {_mib(pr['tasks_pss_mib'], 2)} (the test app, "
            f"a small Rust HTTP server; an app's own memory replaces this), its "
            f"`containerd-shim` {_mib(pr['shims_pss_mib'], 2)}, the node's dockerd and "
            f"containerd {_mib(pr['engine_pss_mib'], 2)}. And "
            f"{_pct(pr['workload_cpu_pct'])} of a core on its node, idle: mostly the "
            "`health.command` Swarm runs in it every 2 s (an exec through dockerd, containerd, "
            "the shim and runc, then `sh`, `nc` and `sleep` in the task).")
        lines.append("")
    ov, ovs = cap.get("overlay") or {}, cap.get("overlay_scaled") or {}
    if ov:
        def endpoints(o):
            return ", ".join(f"{h}: {n['endpoints']} ({n['lb_endpoints']} `lb-`)"
                             for h, n in sorted((o.get("nodes") or {}).items()))
        total = sum(n["endpoints"] for n in (ovs.get("nodes") or {}).values())
        lines.append(
            f"**The overlay's addresses** (`F6`): the app's network `{ov.get('network')}` got "
            f"the subnet `{ov.get('subnet')}` from Swarm's default pool. Endpoints on it per "
            f"node (`docker network inspect`, each holding one address; `lb-` is the node's "
            f"load-balancer endpoint, named `<network>-endpoint`) with the bench app: "
            f"{endpoints(ov)}"
            + (f"; at the last scale step: {endpoints(ovs)} — {total} addresses in use"
               if ovs else "") + ".")
        lines.append("")
    return lines


def _kib(b):
    return None if b is None else b / 1024


def _count(n):
    return "—" if n is None else f"{n:g}"


def _signed_mib(kib):
    if kib is None:
        return "—"
    return f"{kib / 1024:+.2f} MiB"


# ---------------------------------------------------------------------------------------------
# setup


def ensure_packages():
    missing = sorted({pkg for cmd, pkg in PACKAGES.items() if shutil.which(cmd) is None})
    if not missing:
        return
    log(f"installing {' '.join(missing)}")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(sudo + ["apt-get", "update", "-qq"], timeout=300, env=env)
    # Debian starts a package's service on install; the harness starts its own copies on
    # loopback, so the system ones are stopped again if they came up.
    run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        timeout=600, env=env)
    for svc in ("nginx", "haproxy", "caddy", "prometheus", "prometheus-node-exporter",
                "prometheus-alertmanager"):
        if svc in missing and shutil.which("systemctl"):
            run(sudo + ["systemctl", "disable", "--now", svc], timeout=60, check=False)


def build(args):
    if args.no_build:
        return
    log("cargo build --release -p dockhand -p dockhand-testapp")
    r = subprocess.run(["cargo", "build", "--release", "-p", "dockhand", "-p",
                        "dockhand-testapp"], cwd=ROOT, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError("cargo build --release failed (output above)")


def self_signed(workdir):
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)], timeout=30)
    key.chmod(0o600)
    return cert, key


def first_line(argv, stream="stdout"):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (r.stdout or "") + (r.stderr or "")
    return text.strip().splitlines()[0] if text.strip() else "unknown"


def machine_info():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    distro = "unknown"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    distro = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    mem = proc_meminfo_total()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": distro,
        "memory": f"{mem / 1024 / 1024:.1f} GiB" if mem else "unknown",
    }


def proc_meminfo_total():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def versions(exe):
    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=20).stdout.strip()
    return {
        "dockhand": f"{first_line([str(exe), '--version'])} (git {commit}"
                    f"{', with uncommitted changes' if dirty else ''})",
        "nginx": first_line(["nginx", "-v"]),
        "haproxy": first_line(["haproxy", "-v"]),
        "caddy": first_line(["caddy", "version"]),
        "wrk": first_line(["wrk", "-v"]).split(" Copyright")[0],
        "openssl": first_line(["openssl", "version"]),
        "rustc": first_line(["rustc", "--version"]),
        "python": first_line([sys.executable, "--version"]),
    }


class Budget:
    """The whole run's time limit: a stage that would start past it fails loudly."""

    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds

    def check(self, stage):
        if time.monotonic() > self.deadline:
            raise RuntimeError(f"time budget of {self.seconds:.0f}s exhausted before {stage}; "
                               "rerun with --quick, fewer --rounds or a larger --budget")


# ---------------------------------------------------------------------------------------------
# report


# ---------------------------------------------------------------------------------------------
# Per-route metrics on and off (issue 20)


class VariantDockhand(Dockhand):
    """The bench app with a setting switched on or off (its own `/metrics` port, so two agents
    run side by side): `extra` is TOML appended to the file (`{metrics_port}` filled in), each
    `(old, new)` of `edits` a replacement in the bench app's own lines."""

    def __init__(self, procs, workdir, exe, testapp, cpu, cert, key, stage, side, extra,
                 edits=()):
        sub = workdir / f"{stage}-{side}"
        sub.mkdir()
        super().__init__(procs, sub, exe, testapp, cpu, cert, key)
        self.proc_name = f"dockhand-{stage}-{side}"
        self.extra, self.edits = extra, edits
        self.metrics_port = free_port()
        self.peer.name = f"{stage} {side}"

    def write_config(self):
        super().write_config()
        path = self.project / "dockhand.toml"
        text = path.read_text()
        for old, new in self.edits:
            assert old in text, f"the bench app's line {old!r} moved"
            text = text.replace(old, new, 1)
        path.write_text(text + self.extra.format(metrics_port=self.metrics_port))


def on_off_stage(stage, variants, exe, testapp, procs, workdir, cert, key, args, budget):
    """Two agents (the same bench app, `variants` = {"on": (extra, edits), "off": (…)}), each
    with its own testapp, measured like the proxy table (HTTP, 64 keep-alive connections, CPU
    µs/request of the agent process) in the same interleaved rounds."""
    budget.check(stage)
    rounds = args.rounds if args.quick else max(args.rounds, 5)
    sides = {}
    try:
        for side, (extra, edits) in variants.items():
            dh = VariantDockhand(procs, workdir, exe, testapp, args.proxy_cpu, cert, key, stage,
                                 side, extra, edits)
            inst = dh.start()
            spare = sorted(os.sched_getaffinity(0) - {args.proxy_cpu, args.client_cpu})
            run(["taskset", "-a", "-cp", str(spare[0] if spare else args.proxy_cpu),
                 str(inst["pid"])], timeout=10)
            sides[side] = (dh, inst["pid"])
        runs = {"on": [], "off": []}
        for rnd in range(rounds):
            for side in bl.rotate(["on", "off"], rnd):
                budget.check(stage)
                dh, backend = sides[side]
                res = measure(dh.peer, "http", 64, args, backend)
                runs[side].append(res)
                log(f"{stage} {side} round {rnd + 1}: {res['rps']:.0f} rps, "
                    f"{bl.fmt_num(res['cpu_us'])} µs CPU/req")
    finally:
        for dh, _ in sides.values():
            procs.stop(dh.peer.proc)
            dh.kill_leftovers()
    summary = bl.metrics_summary(runs["on"], runs["off"])
    return summary, runs


METRICS_EXTRA = ('\n[monitor]\nproxy_metrics = {on}\n'
                 'metrics_listen = "127.0.0.1:{{metrics_port}}"\n\n'
                 '[dashboard]\nenabled = false\n')


def metrics_stage(exe, testapp, procs, workdir, cert, key, args, budget):
    """Dockhand's proxy with per-route metrics on and off (`[monitor] proxy_metrics`)."""
    variants = {side: (METRICS_EXTRA.format(on="true" if side == "on" else "false"), ())
                for side in ("on", "off")}
    return on_off_stage("metrics", variants, exe, testapp, procs, workdir, cert, key, args,
                        budget)


# The rate limit is one no request of the run reaches: every request pays for its bucket and
# none is refused (a 429 would be a cheaper answer and flatter the figure). The access log
# writes JSON lines to the state directory's logs/access.log, as `access_log = true` does.
POLICIES_EDITS = (
    ('route = { path = "/" }',
     'route = { path = "/", rate_limit = { rate = "1000000/s", burst = 1000000 } }'),
    ("workers = 1\n", "workers = 1\naccess_log = true\n"),
)
POLICIES_EXTRA = ('\n[monitor]\nmetrics_listen = "127.0.0.1:{metrics_port}"\n\n'
                  '[dashboard]\nenabled = false\n')


def policies_stage(exe, testapp, procs, workdir, cert, key, args, budget):
    """Issue 17: Dockhand's proxy with a rate limit on the route and the access log on, and
    with neither."""
    variants = {"on": (POLICIES_EXTRA, POLICIES_EDITS), "off": (POLICIES_EXTRA, ())}
    return on_off_stage("policies", variants, exe, testapp, procs, workdir, cert, key, args,
                        budget)


def render_on_off(title, summary, intro, names, args, coda=""):
    """The section of an on/off stage: `intro` says what was switched, `names` the rows."""
    lines = [title, ""]
    if isinstance(summary, str):
        return lines + [summary, ""]
    lines.append(
        f"{intro}: two agents of the same bench app side by side, each with its own testapp; "
        "measured as the proxy table is (HTTP, 64 keep-alive connections, wrk for "
        f"{args.duration} s after a {args.warmup} s warm-up, CPU µs/request of the agent "
        f"process, all its threads), the two interleaved, medians of {summary['rounds']} "
        f"round(s).{coda}")
    lines.append("")
    lines.append(bl.md_table(["", "requests/s", "CPU µs/request", "p99"],
                             bl.metrics_rows(summary, names)))
    lines.append("")
    return lines


def render_policies(pt, args):
    return render_on_off(
        "## Rate limiting and the access log on and off (issue 17)", pt,
        "Dockhand's proxy with a rate limit on the bench app's route (a token bucket per client, "
        "set so high that no request of the run is refused) and `[proxy] access_log = true` "
        "(JSON lines written by the log's own thread), against the same app with neither",
        ("rate limit and access log off", "rate limit and access log on"), args)


def render_metrics(mt, args):
    return render_on_off(
        "## Per-route metrics on and off (issue 20)", mt,
        "Dockhand's proxy with `[monitor] proxy_metrics` on (the default: per-instance counters "
        "of requests by status class, the latency buckets and upstream errors, a few atomic "
        "additions and two clock reads per request) and off",
        ("`proxy_metrics = false`", "`proxy_metrics = true` (default)"), args,
        " The difference is a few percent of the figure, so read it from a quiet machine's run.")


# ---------------------------------------------------------------------------------------------
# GitOps: from a push to the new release serving (issue 22)

UPDATE_APP = """import http.server, os

ANSWER = "{answer}"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ANSWER.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def update_stage(exe, procs, workdir, args, budget):
    """A small process app following a local bare repository with `[update] webhook`: each
    round commits a one-line change, pushes it, sends the signed GitHub push webhook through
    the proxy and times until the new answer is served, split by the check's own step timings
    into check, fetch, build, gate and swap; and what a check of the unchanged remote costs
    (the agent's CPU and the `git ls-remote` it waits for, bytes the agent wrote, files
    changed in the project and its state directory)."""
    import hashlib
    import hmac
    import stat
    import urllib.request

    budget.check("update")
    for tool in ("git", "python3"):
        if shutil.which(tool) is None:
            return f"not run: {tool} is not installed"
    d = workdir / "update"
    d.mkdir()
    genv = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.invalid",
                GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.invalid")

    def git(cwd, *a):
        return run(["git", "-C", str(cwd), *a], timeout=60, env=genv).stdout.strip()

    bare, work, proj = d / "app.git", d / "work", d / "project"
    git(d, "init", "-q", "--bare", "-b", "main", str(bare))
    git(d, "clone", "-q", str(bare), str(work))
    port = free_port()
    secret = os.urandom(16).hex()
    (work / ".gitignore").write_text(".dockhand/\n")
    (work / "app.py").write_text(UPDATE_APP.replace("{answer}", "v0"))
    (work / "dockhand.toml").write_text(
        f'app = "benchupdate"\n\n[proxy]\nlisten = "127.0.0.1:{port}"\ndrain_timeout = "2s"\n\n'
        '[services.web]\ncommand = "python3 app.py"\nport = 8000\n'
        'health = { path = "/", interval = "100ms", healthy_threshold = 1 }\n'
        'route = { path = "/" }\nstop_timeout = "2s"\n\n'
        '[update]\ngit = { branch = "main" }\npoll = "1h"\n'
        'webhook = { path = "/_dockhand/hook", secret = "${secret.HOOK}" }\n')
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "v0")
    git(work, "push", "-q", "origin", "main")
    git(d, "clone", "-q", str(bare), str(proj))
    (proj / ".dockhand").mkdir()
    sf = proj / ".dockhand/secrets.env"
    sf.write_text(f"HOOK={secret}\n")
    sf.chmod(0o600)
    env = dict(os.environ, RUST_LOG="warn")
    env.pop("DOCKHAND_SOCKET", None)
    agent = procs.start("dockhand-update", [str(exe), "agent"], cwd=proj, env=env,
                        cpu=args.proxy_cpu, grace=30.0)
    wait_http(port, path="/", timeout=90, proc=agent, name="dockhand (update stage)")

    def answer():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return ""

    def io_written(pid):
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
        return 0

    def files(root):
        """Every file under `root` with its size and modification time (sockets left out)."""
        seen = {}
        for dirpath, _dirs, names in os.walk(root):
            for n in names:
                path = os.path.join(dirpath, n)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if not stat.S_ISSOCK(st.st_mode):
                    seen[path] = (st.st_size, st.st_mtime_ns)
        return seen

    def last_check(commit):
        """`update status`'s last check once it is the deployed `commit`'s (None after 60 s)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = run([str(exe), "update", "status", "--json"], timeout=60, cwd=proj, env=env,
                    check=False)
            try:
                last = (json.loads(r.stdout) or {}).get("last_check") or {}
            except ValueError:
                last = {}
            if last.get("remote_head") == commit and last.get("result") in ("deployed", "failed"):
                return last
            time.sleep(0.05)
        return None

    out = {"rounds": []}
    try:
        # Checks of the unchanged remote (`update now`: the same check a poll runs, plus the
        # socket request; the CLI's own cost is not counted). CPU is read across all of them
        # (10 ms ticks), the agent's own and that of the `git ls-remote` children it waited for.
        n = 5 if args.quick else 20
        before_files = files(proj)
        t0, c0, w0 = proc_ticks(agent.pid), proc_children_ticks(agent.pid), io_written(agent.pid)
        results = set()
        for _ in range(n):
            r = run([str(exe), "update", "now", "--json"], timeout=60, cwd=proj, env=env)
            results.add(json.loads(r.stdout).get("result"))
        own = proc_ticks(agent.pid) - t0
        kids = proc_children_ticks(agent.pid) - c0
        written = io_written(agent.pid) - w0
        after_files = files(proj)
        changed = sorted(p for p in set(before_files) | set(after_files)
                         if before_files.get(p) != after_files.get(p))
        out["unchanged_check"] = {
            "checks": n,
            "cpu_ms_per_check": (own + kids) * 1000 / CLK_TCK / n,
            "agent_cpu_ms_per_check": own * 1000 / CLK_TCK / n,
            "written_bytes": written,
            "files_changed": len(changed),
            "changed": [os.path.relpath(p, proj) for p in changed],
            "results": sorted(results),
        }
        rounds = 2 if args.quick else 5
        for i in range(1, rounds + 1):
            budget.check("update")
            version = f"v{i}"
            (work / "app.py").write_text(UPDATE_APP.replace("{answer}", version))
            git(work, "commit", "-q", "-am", version)
            t_push = time.monotonic()
            git(work, "push", "-q", "origin", "main")
            commit = git(work, "rev-parse", "HEAD")
            body = json.dumps({"ref": "refs/heads/main", "after": commit}).encode()
            sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/_dockhand/hook", data=body, method="POST",
                headers={"Content-Type": "application/json", "X-GitHub-Event": "push",
                         "X-GitHub-Delivery": f"bench-{os.getpid()}-{i}",
                         "X-Hub-Signature-256": f"sha256={sig}"})
            t_hook = time.monotonic()
            with urllib.request.urlopen(req, timeout=10) as r:
                code = r.status
            if code != 202:
                raise RuntimeError(f"the webhook answered {code}, not 202")
            t_answered = time.monotonic()
            deadline = t_hook + 120
            while answer() != version:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{version} did not serve within 120 s of its webhook")
                time.sleep(0.02)
            t_serving = time.monotonic()
            check = last_check(commit)
            rnd = {
                "push_ms": (t_hook - t_push) * 1000,
                "webhook_ms": (t_answered - t_hook) * 1000,
                "hook_to_serving_ms": (t_serving - t_hook) * 1000,
                "push_to_serving_ms": (t_serving - t_push) * 1000,
                "steps": bl.step_totals(check.get("steps")) if check else None,
                "check_ms": check.get("duration_ms") if check else None,
            }
            out["rounds"].append(rnd)
            split = ", ".join(f"{k} {v} ms" for k, v in (rnd["steps"] or {}).items())
            log(f"update {version}: serving {rnd['push_to_serving_ms']:.0f} ms after the push "
                f"({split or 'the check was not read'})")
    finally:
        procs.stop(agent)
    out["median_push_to_serving_ms"] = statistics.median(
        r["push_to_serving_ms"] for r in out["rounds"])
    out["median_hook_to_serving_ms"] = statistics.median(
        r["hook_to_serving_ms"] for r in out["rounds"])
    out["split"] = bl.push_split(out["rounds"])
    return out


def render_update(up):
    lines = ["## GitOps: push to serving (issue 22)", ""]
    if isinstance(up, str):
        return lines + [up, ""]
    sp = up.get("split") or bl.push_split(up["rounds"])
    lines.append(
        "A small Python process app following a local bare repository (`[update] webhook`, "
        "polls an hour apart): each round commits a one-line change, pushes it, sends the "
        "signed GitHub push webhook through the proxy and polls `/` every 20 ms until the new "
        "answer is served. The agent's part is between the webhook and serving; the check it "
        "ran (`dockhand update status --json`: `last_check.steps`) says how long each step "
        f"took. Medians of {len(up['rounds'])} round(s); each part's median is taken on its "
        "own, so the parts need not add up to the total.")
    lines.append("")
    ms = lambda v: f"{bl.fmt_num(v, 0)} ms"  # noqa: E731  (the steps are whole milliseconds)
    lines.append(bl.md_table(
        ["", "median"],
        [["`git push` to the new release serving", ms(sp["push_to_serving_ms"])],
         ["webhook received to the new release serving", ms(sp["hook_to_serving_ms"])],
         ["— check: `git ls-remote` of the branch", ms(sp["check"])],
         ["— fetch: `git fetch` and `git reset --keep` to the commit", ms(sp["fetch"])],
         ["— build: the release's code (this process app: its git revision read; container "
          "services: their images)", ms(sp["build"])],
         ["— gate: the new instance's health gate (its Python start included: probed 20 ms "
          "after the start, then at doubling intervals until it answers)", ms(sp["gate"])],
         ["— swap: the routing table switched", ms(sp["swap"])],
         ["— the rest: the webhook's handling, the instance's start, the commit to the state "
          "database, the 20 ms polling of `/`", ms(sp["rest"])]]))
    lines.append("")
    uc = up["unchanged_check"]
    changed = uc.get("changed") or []
    lines.append(
        f"{uc['checks']} checks of the unchanged remote (`dockhand update now`: the check a "
        f"poll runs, plus the socket request; results {', '.join(uc['results'])}): "
        f"{bl.fmt_num(uc['cpu_ms_per_check'], 1)} ms of CPU per check — the agent's own "
        f"{bl.fmt_num(uc['agent_cpu_ms_per_check'], 1)} ms and the `git ls-remote` it waits "
        "for (the agent's cutime), read across all the checks from /proc at 10 ms tick "
        f"resolution (goal under {bl.UPDATE_POLL_CPU_MS} ms); {uc['written_bytes']} bytes "
        "written by the agent (`write_bytes` of /proc/PID/io) and "
        f"{uc['files_changed']} file(s) changed in the project and its state directory"
        + (f" ({', '.join(changed[:5])})" if changed else "")
        + " (goal: no write).")
    lines.append("")
    return lines


COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


def import_stage(exe, workdir, args, budget):
    """`dockhand import compose --stdout` on every compose file of the test corpus, timed
    against `docker-compose config -q` (Compose v1, which reads, interpolates and validates
    the same file) in the same run: medians of wall time, largest project first."""
    budget.check("import")
    corpus = ROOT / "crates/compose/tests/corpus"
    files = sorted(p for p in corpus.rglob("*")
                   if p.name in COMPOSE_NAMES and p.is_file())
    if not files:
        return f"not run: no compose file under {corpus}"
    peer = shutil.which("docker-compose")
    reps = 5 if args.quick else 15
    rows = []
    for f in files:
        budget.check("import")
        # A copy, so neither tool sees anything but the project (and nothing is written back).
        d = workdir / "import" / str(f.parent.relative_to(corpus))
        shutil.copytree(f.parent, d, dirs_exist_ok=True)
        target = d / f.name
        env = dict(os.environ, NO_COLOR="1")

        def timed(cmd):
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                r = subprocess.run(cmd, cwd=d, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, timeout=60)
                dt = (time.perf_counter() - t0) * 1000
                if r.returncode != 0:
                    return None
                times.append(dt)
            return statistics.median(times)

        ours = timed([str(exe), "import", "compose", "-f", str(target), "--stdout"])
        theirs = timed([peer, "-f", str(target), "config", "-q"]) if peer else None
        rows.append({"file": str(f.relative_to(corpus)), "bytes": target.stat().st_size,
                     "dockhand_ms": ours, "compose_ms": theirs})
    rows.sort(key=lambda r: (-r["bytes"], r["file"]))
    return {"rows": rows, "reps": reps, "peer": peer is not None}


def render_import(im):
    lines = ["## Import (issue 18)", ""]
    if isinstance(im, str):
        return lines + [im, ""]
    lines.append(
        "`dockhand import compose -f FILE --stdout` (read, interpolate, convert, report; writes "
        "nothing) on every compose file of the test corpus, against `docker-compose -f FILE "
        "config -q` (Compose v1: read, interpolate, validate) in the same run. Median wall time "
        f"of {im['reps']} runs each, process start included; largest file first. Goal: the "
        "largest well under a second. A blank peer cell: that tool refused the file alone "
        "(e.g. an override file that needs its base)." if im["peer"] else
        "docker-compose is not installed: no peer figures.")
    lines.append("")
    table = []
    for r in im["rows"]:
        ours, theirs = r["dockhand_ms"], r["compose_ms"]
        table.append([f"`{r['file']}`", bl.fmt_bytes(r["bytes"]),
                      "failed" if ours is None else f"{bl.fmt_num(ours)} ms",
                      "" if theirs is None else f"{bl.fmt_num(theirs)} ms",
                      bl.fmt_ratio(ours / theirs) if ours and theirs else ""])
    lines.append(bl.md_table(["file", "size", "dockhand", "docker-compose config", "ratio"],
                             table))
    lines.append("")
    return lines


def render(ctx):
    a = ctx["args"]
    lines = ["# Benchmarks", ""]
    lines.append(
        f"Generated by `{ctx['command']}` on {ctx['date']} "
        f"(took {ctx['elapsed'] / 60:.1f} min). Regenerate with the same command; "
        "`bench/run --help` lists the knobs, `bench/run --quick` is a one-minute smoke run "
        "that writes to `target/bench/` instead."
    )
    lines.append("")
    if a.quick:
        lines += ["**Quick smoke run: one round of short runs, not a measurement.**", ""]
    m = ctx["machine"]
    lines += [
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores; memory {m['memory']}",
        f"- kernel {m['kernel']}, {m['os']}",
        f"- load average at start {ctx['load_start']:.2f}, at end {ctx['load_end']:.2f}; "
        f"while the harness ran, {ctx['foreign_cpu_pct']:.0f}% of the machine's CPU time went "
        "to processes the harness did not start"
        + (" (other engineers' builds and tests shared the machine)" if ctx["foreign_cpu_pct"] > 10
           else ""),
        "",
        "Versions:",
        "",
    ]
    for k, v in ctx["versions"].items():
        lines.append(f"- {k}: {v}")
    backend_cpu = ctx.get("backend_cpu", a.proxy_cpu)
    if backend_cpu == a.proxy_cpu:
        backend_where = (
            f"The backend shares CPU {backend_cpu} with the proxy, as the app shares a server's "
            "cores with its proxy, so the load generator never becomes the bottleneck and the "
            "latencies measure the server side (with the backend on the client's core, the "
            "cheaper a proxy was, the more the client's core saturated; `bench/NOTES.md`).")
    else:
        backend_where = f"The backend has CPU {backend_cpu} to itself."
    lines += [
        "",
        "## Method",
        "",
        f"Every proxy runs with one worker (nginx `worker_processes 1`, HAProxy `nbthread 1`, "
        f"Caddy `GOMAXPROCS=1`, Dockhand `[proxy] workers = 1`) pinned with `taskset` to CPU "
        f"{a.proxy_cpu}; wrk (`-t1`) runs alone on CPU {a.client_cpu}. {backend_where} The "
        "backend is one `dockhand-testapp` process on one current-thread runtime "
        "(`THREADS=1`: pinned to one core, a second runtime thread only added wake-ups "
        "between the two and made its cost per request jump between runs), started by the "
        "Dockhand agent as the bench app's only service; every proxy forwards "
        f"`GET {PATH}` to that same process (a 2-byte body), keeps client and upstream "
        "connections alive and sets X-Forwarded-For/-Proto/-Host. HTTPS uses one self-signed "
        "ECDSA P-256 certificate made by OpenSSL, the same for every peer (Dockhand included).",
        "",
        f"Each figure is the median of {a.rounds} runs of {a.duration} s (after a {a.warmup} s "
        "warm-up) interleaved across the peers — round 1 nginx, HAProxy, Caddy, Dockhand; each "
        "later round starts one peer later. CPU µs/request is the utime+stime delta of the "
        "proxy's processes over the run (nginx: master and worker; Dockhand: the agent "
        "process, which includes its control plane, not the app) divided by the requests wrk "
        "completed. RSS is VmRSS summed over those processes after the run; PSS counts pages "
        "shared between them once. Ratios are to nginx in the same run; on a shared machine "
        "they are the figures to read, not the absolute numbers. Of those, CPU µs/request moves "
        "least when other work competes for the cores: requests/s and p99 follow how much CPU "
        "the other processes happened to leave each run (the raw runs, with the load average "
        "at each, are in `target/bench/results.json`, which also has, per run, the backend's "
        "and the client's CPU µs/request and the proxy's context switches per request).",
        "",
    ]
    table = ctx["proxy"]
    lines += ["## Proxy", ""]
    for conns in a.conns:
        for proto in a.protos:
            lines += [f"### {proto.upper()}, {conns} connections", ""]
            lines.append(bl.md_table(bl.PROXY_HEADER, bl.proxy_rows(table, proto, conns, PEERS)))
            lines.append("")

    lines += ["## New TLS connections (handshakes)", ""]
    hs = ctx["handshakes"]
    if isinstance(hs, str):
        lines += [hs, ""]
    else:
        lines.append(
            f"Every request on a new TLS connection: {a.handshake_clients} concurrent "
            f"`openssl s_time` loops on CPU {a.client_cpu} (connect, handshake, `GET {PATH}` "
            "over HTTP/1.0, close), against each proxy's HTTPS listener with the same ECDSA "
            "P-256 certificate; `-new` makes every handshake a full one, `-reuse` resumes the "
            "first session (TLS 1.3 tickets). CPU µs/connection is the proxy's utime+stime "
            f"delta over the run divided by the connections made; medians of {a.rounds} "
            "interleaved runs.")
        lines.append("")
        for mode, what in bl.HANDSHAKE_MODES:
            lines += [f"### {what.capitalize()}", ""]
            lines.append(bl.md_table(bl.HANDSHAKE_HEADER, bl.handshake_rows(hs, mode)))
            lines.append("")

    lines += ["## `dockhand loadtest` against wrk", ""]
    lt, wrk = ctx["loadtest"], ctx["loadtest_wrk"]
    if isinstance(lt, str):
        lines += [lt, ""]
    else:
        lines.append(
            f"Both against Dockhand's proxy (`http://127.0.0.1:PORT{PATH}`), 64 connections, "
            f"{a.duration} s, pinned to CPU {a.client_cpu}; medians of {a.rounds} interleaved runs.")
        lines.append("")
        rows = []
        for name, s in (("wrk", wrk), ("dockhand loadtest", lt)):
            rows.append([name, bl.fmt_num(s.get("rps")), bl.fmt_latency(s.get("p50_us")),
                         bl.fmt_latency(s.get("p90_us")), bl.fmt_latency(s.get("p99_us"))])
        rows.append(["loadtest / wrk", bl.fmt_ratio(bl.ratio(lt.get("rps"), wrk.get("rps"))),
                     bl.fmt_ratio(bl.ratio(lt.get("p50_us"), wrk.get("p50_us"))),
                     bl.fmt_ratio(bl.ratio(lt.get("p90_us"), wrk.get("p90_us"))),
                     bl.fmt_ratio(bl.ratio(lt.get("p99_us"), wrk.get("p99_us")))])
        lines.append(bl.md_table(["tool", "requests/s", "p50", "p90", "p99"], rows))
        lines.append("")

    lines += ["## Zero-downtime deploys", ""]
    zd = ctx["zero_downtime"]
    if isinstance(zd, str):
        lines += [zd, ""]
    else:
        load = zd["load"]
        ds = zd["deploys"]
        ok = sum(1 for d in ds if d["succeeded"])
        lines.append(
            f"{len(ds)} deploys in a row (each changes the service's `VERSION`, so each starts a "
            "new instance, waits for its health check, swaps the route and drains the old one) "
            "while wrk keeps 64 connections busy on Dockhand's proxy.")
        lines.append("")
        if "error" in load:
            lines += [f"wrk: {load['error']}", ""]
        else:
            lines.append(bl.md_table(
                ["requests during the deploys", "failed (non-2xx)", "socket errors (connect/read/write/timeout)",
                 "deploys succeeded", "cutover poller failures"],
                [[f"{load['requests']:,}", load["non_2xx"],
                  f"{load['connect_errors']}/{load['read_errors']}/{load['write_errors']}/"
                  f"{load['timeout_errors']}", f"{ok}/{len(ds)}", zd["watch_failures"]]]))
            lines.append("")
        lines.append(bl.md_table(
            ["", "median", "max"],
            [
                ["command to cutover (new version answers)",
                 f"{bl.fmt_num(bl.median([d['cutover_ms'] for d in ds]))} ms",
                 f"{bl.fmt_num(max([d['cutover_ms'] for d in ds if d['cutover_ms'] is not None], default=None))} ms"],
                ["deploy duration_ms (includes drain and stop)",
                 f"{bl.fmt_num(bl.median([d['duration_ms'] for d in ds]))} ms",
                 f"{bl.fmt_num(max([d['duration_ms'] for d in ds if d['duration_ms'] is not None], default=None))} ms"],
                ["`dockhand deploy` wall time",
                 f"{bl.fmt_num(bl.median([d['command_ms'] for d in ds]))} ms",
                 f"{bl.fmt_num(max([d['command_ms'] for d in ds], default=None))} ms"],
            ]))
        lines.append("")

    lines += ["## Static files", ""]
    st = ctx["static"]
    if isinstance(st, str):
        lines += [st, ""]
    else:
        lines.append(
            "Files served by each server itself over keep-alive HTTP (wrk, 64 connections), "
            "each server on one core: Dockhand's proxy (a static service), nginx with "
            "`sendfile`, `tcp_nopush` and `open_file_cache`, and Caddy's `file_server`. The "
            "gzip case sends `Accept-Encoding: gzip` for a 100 KB JSON file (gzip level 5 in "
            "Dockhand and nginx, Caddy's default level). Medians of "
            f"{a.rounds} round(s).")
        lines.append("")
        lines.append(bl.md_table(["goal", "measured", "verdict"],
                                 [list(r) for r in bl.static_goals(st["table"])]))
        lines.append("")
        lines.append(bl.md_table(["file", "server", "req/s", "MiB/s", "CPU µs/request", "p99"],
                                 bl.static_rows(st["table"], st["peers"])))
        lines.append("")

    lines += ["## Idle agent with the bundled example", ""]
    idle = ctx["idle"]
    if isinstance(idle, str) or "skipped" in idle:
        lines += [idle if isinstance(idle, str) else idle["skipped"], ""]
    else:
        lines.append(
            f"`dockhand up` (no project: the bundled example, {idle['app_processes']} Python "
            "instances) left idle "
            f"for {idle['seconds']:.0f} s after {a.settle} s to settle; health checks run every "
            "second. Agent process only; the app's processes are listed separately. RSS splits "
            "into the agent's own memory (anonymous) and the pages of its executable and "
            "libraries it has mapped (file: clean, shared, given back under memory pressure; "
            "the agent gives start-up's back 10 s after it starts).")
        lines.append("")
        lines.append(bl.md_table(
            ["agent RSS", "of it anonymous / file", "agent PSS", "agent CPU", "agent threads",
             "app processes' RSS"],
            [[f"{idle['rss_kib'] / 1024:.1f} MiB",
              "—" if idle.get("rss_anon_kib") is None else
              f"{idle['rss_anon_kib'] / 1024:.1f} / {idle['rss_file_kib'] / 1024:.1f} MiB",
              "—" if idle["pss_kib"] is None else f"{idle['pss_kib'] / 1024:.1f} MiB",
              f"{idle['cpu_pct']:.2f}% of a core ({idle['cpu_ms']:.0f} ms in {idle['seconds']:.0f} s)",
              idle["threads"],
              f"{idle['app_rss_kib'] / 1024:.1f} MiB ({idle['app_processes']} processes)"]]))
        lines.append("")
        st = idle.get("stack", {"skipped": "not measured"})
        if "skipped" in st:
            lines += [f"The monitoring stack it replaces: {st['skipped']}.", ""]
        else:
            lines.append(
                "The agent's monitoring (metrics, `/metrics`, alert rules, the release watch) is "
                "on in the figures above. The stack it replaces, measured idle right after "
                f"over {st['seconds']:.0f} s: Debian's prometheus scraping the agent's "
                "`/metrics` and prometheus-node-exporter every 15 s, with "
                "prometheus-alertmanager.")
            lines.append("")
            lines.append(bl.md_table(
                ["stack RSS", "stack CPU", "prometheus", "node-exporter", "alertmanager"],
                [[f"{st['rss_kib'] / 1024:.1f} MiB", f"{st['cpu_pct']:.2f}% of a core",
                  f"{st['each']['prometheus'] / 1024:.1f} MiB",
                  f"{st['each']['node-exporter'] / 1024:.1f} MiB",
                  f"{st['each']['alertmanager'] / 1024:.1f} MiB"]]))
            lines.append("")

    lines += ["## Remote: images without a registry, status over SSH", ""]
    rm = ctx.get("remote", "not run (--only)")
    if isinstance(rm, str):
        lines += [rm, ""]
    else:
        sm = rm["summary"]
        lines.append(
            "A local SSH target (Debian 12 from debootstrap, systemd and sshd in a container, "
            "reached on 127.0.0.1; `scripts/test-target`), set up by `dockhand setup` "
            f"({rm['setup_ms'] / 1000:.0f} s, Docker installed from the apt cache). The app's image is "
            f"the testapp plus a {APP_CODE_LINES}-line code file; each round changes one line, "
            "builds the image locally and deploys it with `dockhand deploy -d bench` (project "
            "sync, only the missing layers as zstd over SSH, `docker load` there, the gated "
            "deploy), then sends the same image with `docker save | ssh HOST sudo docker load`. "
            f"Medians of {len(rm['rounds'])} round(s).")
        lines.append("")
        fd = rm["first_deploy"]
        lines.append(bl.md_table(
            ["", "bytes over SSH", "wall time"],
            [["first deploy (every layer)", bl.fmt_bytes(fd["image"]["bytes_sent"]),
              f"{bl.fmt_num(fd['ms'])} ms"],
             ["deploy after a one-line change", bl.fmt_bytes(sm["deploy_bytes"]),
              f"{bl.fmt_num(sm['deploy_ms'])} ms (the whole deploy)"],
             ["`docker save | ssh docker load` of that image", bl.fmt_bytes(sm["save_bytes"]),
              f"{bl.fmt_num(sm['save_ms'])} ms (the transfer only)"],
             ["ratio", f"{sm['bytes_ratio'] * 100:.2f}%", bl.fmt_ratio(sm["time_ratio"])]]))
        lines.append("")
        st = rm["status"]
        lines.append(bl.md_table(
            ["", "median wall time"],
            [["`dockhand status -d bench` (riding the shared SSH master)", f"{bl.fmt_num(st['status_ms'])} ms"],
             ["`ssh HOST true` (a new connection)", f"{bl.fmt_num(st['ssh_true_ms'])} ms"],
             ["`dockhand status -d bench` opening its own connection", f"{bl.fmt_num(st['cold_ms'])} ms"]]))
        lines.append("")


    lines += render_cluster(ctx.get("cluster", "not run (--only)"))
    lines += render_update(ctx["update"])
    lines += render_import(ctx["import"])
    lines += render_metrics(ctx.get("metrics", "not run (--only)"), a)
    lines += render_policies(ctx.get("policies", "not run (--only)"), a)

    lines += ["## Backups", ""]
    bk = ctx["backups"]
    if isinstance(bk, str) or "skipped" in bk:
        lines += [bk if isinstance(bk, str) else bk["skipped"], ""]
    else:
        lines.append(
            "A PostgreSQL 15 database (`dockhand-test/postgres:15`) initialised by "
            f"`pgbench -i -s SCALE` for scales {', '.join(map(str, sorted(bk)))}, one agent per "
            "scale. `dockhand backup run` (pg_dump custom format uncompressed in the database's "
            "container, zstd level 3, age X25519 encryption, SHA-256, to a local directory) "
            "against `docker exec … pg_dump -Fc | zstd -3` to a file, on the same database in "
            f"the same run, interleaved, medians of {a.rounds} runs. Throughput is the "
            "database's size (`pg_database_size`) over the wall time. CPU is the database "
            "container's cgroup (pg_dump and its server backend) plus the agent's process, or "
            "plus zstd for the pipeline (note that `pg_dump -Fc` also compresses, with zlib, "
            "before zstd). Agent peak RSS is the largest anonymous memory (RssAnon: heap and "
            "stacks) of the agent sampled every 20 ms during the backup — VmHWM would also "
            "hold the agent's start-up, when all its code is resident, whatever the database's "
            "size. The restore row is `dockhand backup restore` of the last backup — which "
            "first takes a safety backup of the live database, stops the app, drops and "
            "recreates the database, restores and starts the app again — against `pg_restore` "
            "of the pipeline's dump into a new empty database of the same server.")
        lines.append("")
        lines.append(bl.md_table(bl.BACKUP_HEADER, bl.backup_rows(bk)))
        lines.append("")

    lines += render_dashboard(ctx.get("dashboard", "not run"), a)
    lines += ["## Performance goals (issue 4)", ""]
    goals = list(bl.proxy_goals(table))
    goals += bl.loadtest_goals(lt, wrk)
    if isinstance(hs, dict):
        goals += bl.handshake_goals(hs)
    if isinstance(zd, dict) and "error" not in zd["load"]:
        failed = zd["load"]["errors"] + zd["watch_failures"]
        goals.append(("zero failed requests across the deploys", f"{failed} failed",
                      bl.verdict(failed == 0 and all(d["succeeded"] for d in zd["deploys"]))))
    else:
        goals.append(("zero failed requests across the deploys", "—", "not measured"))
    rm = ctx.get("remote")
    goals += bl.remote_goals(rm["summary"] if isinstance(rm, dict) else (rm or "not run"))
    cl = ctx.get("cluster", "not run (--only)")
    goals += bl.cluster_goals(cl if isinstance(cl, str) else
                              {k: cl[k] for k in ("overlay", "deploys", "dead_node")})
    goals += bl.idle_goals(ctx.get("idle", "not run (--only)"))
    goals += bl.metrics_goals(ctx.get("metrics", "not run (--only)"))
    goals += bl.policies_goals(ctx.get("policies", "not run (--only)"))
    up = ctx.get("update")
    goals += bl.update_goals(up["unchanged_check"] if isinstance(up, dict) else up)
    goals += dashboard_goals(ctx.get("dashboard", "not run"))
    lines.append(bl.md_table(["goal", "measured", "verdict"], goals))
    lines.append("")
    if not (isinstance(bk, str) or "skipped" in bk):
        lines += ["## Backup goals (issue 19)", ""]
        lines.append(bl.md_table(["goal", "measured", "verdict"], bl.backup_goals(bk)))
        lines.append("")
    if ctx.get("notes"):
        lines += ["## Notes from this run", ""]
        lines += [f"- {n}" for n in ctx["notes"]]
        lines.append("")
    # The soak (run only when asked for) and the fuzzing sections: this run's, else the ones
    # the previous report had.
    previous = a.out.read_text() if a.out.is_file() else ""
    lines += soak_lines(ctx, a, previous)
    lines += fuzz_lines(a, previous)
    notes = Path(__file__).with_name("NOTES.md")
    if notes.is_file():
        # Hand-written findings (profiles, what changed): carried over verbatim.
        lines += [notes.read_text().rstrip(), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# main


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/run",
        description="Measure Dockhand's proxy against nginx, HAProxy and Caddy, `dockhand "
                    "loadtest` against wrk, zero-downtime deploys, the idle agent, remote and "
                    "cluster deploys and more (the stages of --only); write BENCHMARKS.md.")
    p.add_argument("--quick", action="store_true",
                   help="a short smoke run (one round of 2 s runs, 2 deploys, 5 s idle) written "
                        "to target/bench/BENCHMARKS.quick.md unless --out is given")
    p.add_argument("--out", type=Path, help="where to write the report (default BENCHMARKS.md)")
    p.add_argument("--rounds", type=int, help="interleaved runs per figure (default 3)")
    p.add_argument("--duration", type=int, help="seconds per measured run (default 5)")
    p.add_argument("--deploys", type=int, help="deploys under load (default 10)")
    p.add_argument("--idle", type=int, help="seconds of idle agent measurement (default 30)")
    p.add_argument("--proxy-cpu", type=int, default=0,
                   help="CPU the proxies are pinned to (and the backend, on a 2-core machine)")
    p.add_argument("--client-cpu", type=int, default=1,
                   help="CPU wrk and dockhand loadtest are pinned to (alone)")
    p.add_argument("--budget", type=int, default=14 * 60,
                   help="seconds the measurements may take in all (default 840)")
    p.add_argument("--no-build", action="store_true", help="use the existing release build")
    p.add_argument("--dockhand-bin", type=Path,
                   help="measure this dockhand binary instead of target/release/dockhand "
                        "(to compare a baseline build)")
    p.add_argument("--proto", choices=["http", "https"], action="append",
                   help="only these protocols in the proxy table (repeatable; default both)")
    p.add_argument("--conns", type=int, action="append",
                   help="only these connection counts in the proxy table (repeatable; default "
                        "64 and 256)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    p.add_argument("--only", choices=["proxy", "handshakes", "loadtest", "deploys", "idle",
                                      "backups", "remote", "static", "update", "import",
                                      "metrics", "policies", "dashboard", "cluster", "soak"],
                   action="append",
                   help="run only these stages (repeatable). `soak` runs only when asked for; "
                        "`--only soak` alone replaces only the soak and fuzzing sections of an "
                        "existing report and keeps the rest. `cluster` starts a real three-node "
                        "swarm on this machine (as root) through the debug helper "
                        "`dockhand-swarm-bench`, built when missing or without --no-build, "
                        "and measures the ingress to a task on another node against one on "
                        "its own, deploys to every node serving and a dead worker "
                        "(--rounds runs and deploys, --duration, the smallest --conns), and "
                        "the capacity figures (idle windows of --idle seconds, `spread` "
                        "scaled to 10 and 20 replicas); `--only cluster` alone replaces only "
                        "its section of an existing report (`--cluster-replay` rebuilds it "
                        "from a saved results.json)")
    p.add_argument("--soak-minutes", type=float, default=30,
                   help="length of the soak run in minutes (default 30)")
    p.add_argument("--soak-interval", type=float, default=60,
                   help="seconds between the soak's deploys (default 60; a rollback every 5th, "
                        "a failing release every 10th): shorter for a debugging run")
    p.add_argument("--soak-replay", type=Path, metavar="RESULTS_JSON",
                   help="do not run the soak: rebuild its plots and section from a run's "
                        "results.json (bench/soak/results.json), e.g. after a merge")
    p.add_argument("--cluster-replay", type=Path, metavar="RESULTS_JSON",
                   help="do not run the cluster stage: rebuild its section from a `--only "
                        "cluster` run's results.json (target/bench/results.json) and splice it "
                        "into the report, e.g. after a change to the summaries")
    p.add_argument("--fuzz-summary", type=Path,
                   help="the `scripts/fuzz` summary reported in the fuzzing section (default "
                        "target/fuzz-summary.txt)")
    p.add_argument("--handshake-clients", type=int, default=4,
                   help="concurrent `openssl s_time` loops in the handshake stage (default 4)")
    p.add_argument("--backup-scale", type=int, action="append", dest="backup_scales",
                   help="pgbench scales of the backup stage (repeatable; default 10 and 50, "
                        "--quick 2 and 10)")
    a = p.parse_args(argv)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.duration = a.duration or (2 if a.quick else 5)
    a.warmup = 1
    a.deploys = a.deploys if a.deploys is not None else (2 if a.quick else 10)
    a.idle = a.idle or (5 if a.quick else 30)
    a.settle = 2 if a.quick else 5
    a.conns = a.conns or [64, 256]
    a.backup_scales = sorted(set(a.backup_scales or ([2, 10] if a.quick else [10, 50])))
    a.protos = a.proto or ["http", "https"]
    if a.out is None:
        a.out = ROOT / ("target/bench/BENCHMARKS.quick.md" if a.quick else "BENCHMARKS.md")
    if a.rounds < 1 or a.duration < 1:
        p.error("--rounds and --duration must be at least 1")
    if a.soak_minutes <= 0 or a.soak_interval < 5:
        p.error("--soak-minutes must be above 0 and --soak-interval at least 5 (seconds)")
    a.fuzz_summary = a.fuzz_summary or ROOT / "target/fuzz-summary.txt"
    return a


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.cluster_replay:
        return cluster_replay(args)
    if not sys.platform.startswith("linux"):
        print("bench/run: needs Linux (/proc, taskset)", file=sys.stderr)
        return 2
    ncpu = len(os.sched_getaffinity(0))
    if ncpu < 2:
        args.client_cpu = args.proxy_cpu
    for name in ("proxy_cpu", "client_cpu"):
        if getattr(args, name) not in os.sched_getaffinity(0):
            print(f"bench/run: CPU {getattr(args, name)} is not available here; pick one of "
                  f"{sorted(os.sched_getaffinity(0))} with --{name.replace('_', '-')}",
                  file=sys.stderr)
            return 2

    def on_signal(signum, _frame):
        raise Interrupted(f"received {signal.Signals(signum).name}")

    # Explicitly: a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    stages = set(args.only or ["proxy", "handshakes", "loadtest", "deploys", "idle", "backups",
                               "remote", "static", "update", "import", "metrics",
                               "policies", "dashboard", "cluster"])
    replay_only = stages == {"soak"} and args.soak_replay
    if not replay_only:
        ensure_packages()
        build(args)
    exe = (args.dockhand_bin or ROOT / "target/release/dockhand").resolve()
    testapp = ROOT / "target/release/dockhand-testapp"
    # The remote and idle stages do not use the testapp binary (remote deploys an image).
    needed = ((exe, testapp) if stages & {"proxy", "loadtest", "deploys", "metrics", "policies",
                                          "dashboard"}
              else (exe,) if stages - {"soak"} or not args.soak_replay else ())
    for f in needed:
        if not f.is_file():
            print(f"bench/run: {f} is missing; run without --no-build", file=sys.stderr)
            return 2

    started = time.monotonic()
    budget = Budget(args.budget)
    workdir = Path(tempfile.mkdtemp(prefix="dockhand-bench-"))
    procs = Procs(workdir)
    args.command = "bench/run" + "".join(
        f" {x}" for x in (argv if argv is not None else sys.argv[1:]))
    ctx = {
        "args": args,
        "command": args.command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "versions": versions(exe),
        "load_start": loadavg(),
        "notes": [],
        "proxy": {},
        "handshakes": "not run (--only)",
        "loadtest": "not run (--only)",
        "loadtest_wrk": None,
        "zero_downtime": "not run (--only)",
        "idle": "not run (--only)",
        "backups": "not run (--only)",
        "remote": "not run (--only)",
        "static": "not run (--only)",
        "update": "not run (--only)",
        "import": "not run (--only)",
        "metrics": "not run (--only)",
        "policies": "not run (--only)",
        "dashboard": "not run (--only)",
        "cluster": "not run (--only)",
        "soak": None,
    }
    busy0, own0 = system_busy_ticks(), own_cpu_seconds()
    raw = {}
    dh = None
    ok = False
    try:
        log(f"work directory {workdir}")
        cert, key = self_signed(workdir)
        dh = Dockhand(procs, workdir, exe, testapp, args.proxy_cpu, cert, key)
        if stages & {"proxy", "handshakes", "loadtest", "deploys"}:
            inst = dh.start()
            # The app runs on the server's core, beside the proxy (as on a VPS, where both
            # share the cores), or on a core of its own when there is a third; the client's
            # core holds only the load generator, so the client never becomes the bottleneck
            # (bench/NOTES.md: with the backend there, it did, and latency measured it).
            spare = sorted(os.sched_getaffinity(0) - {args.proxy_cpu, args.client_cpu})
            backend_cpu = spare[0] if spare else args.proxy_cpu
            ctx["backend_cpu"] = backend_cpu
            run(["taskset", "-a", "-cp", str(backend_cpu), str(inst["pid"])], timeout=10)
            backend_port = inst["port"]
            log(f"backend: dockhand-testapp pid {inst['pid']} on 127.0.0.1:{backend_port}, "
                f"CPU {backend_cpu}; dockhand proxy on 127.0.0.1:{dh.port} (https {dh.https_port})")
            peers = {"dockhand": dh.peer}
            if stages & {"proxy", "handshakes"}:
                peers.update(start_peers(procs, workdir, backend_port, cert, key, args.proxy_cpu))
                if "proxy" in stages:
                    ctx["proxy"], raw["proxy"] = proxy_matrix(peers, args, budget, inst["pid"])
                if "handshakes" in stages:
                    ctx["handshakes"], raw["handshakes"] = handshake_matrix(peers, args, budget)
                for name in ("caddy", "haproxy", "nginx"):
                    procs.stop(peers[name].proc)
            if "loadtest" in stages:
                lt, wrk, raw["loadtest"] = loadtest_vs_wrk(
                    exe, f"http://127.0.0.1:{dh.port}{PATH}", args, budget)
                ctx["loadtest"], ctx["loadtest_wrk"] = lt, wrk
            if "deploys" in stages:
                if args.deploys > 0:
                    ctx["zero_downtime"] = zero_downtime(dh, procs, args, budget)
                else:
                    ctx["zero_downtime"] = "not run (--deploys 0)"
            procs.stop(dh.peer.proc)
            dh.kill_leftovers()
        if "idle" in stages:
            ctx["idle"] = idle_agent(exe, procs, workdir, args, budget)
        if "backups" in stages:
            ctx["backups"], raw["backups"] = backups_bench(exe, testapp, procs, workdir, args,
                                                           budget)
        if "remote" in stages:
            ctx["remote"] = remote_stage(exe, workdir, args, budget)
        if "static" in stages:
            ctx["static"], raw["static"] = static_stage(exe, procs, workdir, args, budget)
        if "update" in stages:
            ctx["update"] = update_stage(exe, procs, workdir, args, budget)
        if "import" in stages:
            ctx["import"] = import_stage(exe, workdir, args, budget)
        if "metrics" in stages:
            ctx["metrics"], raw["metrics"] = metrics_stage(exe, testapp, procs, workdir, cert,
                                                           key, args, budget)
        if "policies" in stages:
            ctx["policies"], raw["policies"] = policies_stage(exe, testapp, procs, workdir,
                                                              cert, key, args, budget)
        if "dashboard" in stages:
            ctx["dashboard"] = dashboard_stage(exe, testapp, procs, workdir, args, budget)
        if "cluster" in stages:
            cl = cluster_stage(exe, args, budget)
            if isinstance(cl, dict):
                raw["cluster"] = cl.pop("raw")
            ctx["cluster"] = cl
        if "soak" in stages:
            import soakrun

            if args.soak_replay:
                ctx["soak"] = soakrun.finish(json.loads(args.soak_replay.read_text()),
                                             soak_dir(args))
            else:
                budget.check("soak")
                ctx["soak"] = soakrun.soak_stage(exe, procs, workdir, args, soak_dir(args))
        ok = True
    except KeyboardInterrupt:
        log("interrupted; stopping everything the harness started")
        return 130
    except Interrupted as e:
        log(f"{e}; stopping everything the harness started")
        return 143
    finally:
        procs.stop_all()
        if dh is not None:
            dh.kill_leftovers()
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"logs and configs kept in {workdir}")

    elapsed = time.monotonic() - started
    busy = (system_busy_ticks() - busy0) / CLK_TCK
    own = own_cpu_seconds() - own0
    total = elapsed * len(os.sched_getaffinity(0))
    ctx["foreign_cpu_pct"] = max(0.0, (busy - own) / total * 100) if total else 0.0
    ctx["load_end"] = loadavg()
    ctx["elapsed"] = elapsed
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if stages == {"cluster"} and args.out.is_file():
        # The other sections stay as their own runs wrote them.
        doc = sl.splice_section(args.out.read_text(),
                                render_cluster(ctx["cluster"], cluster_run_note(ctx)),
                                ("## GitOps",) + SECTIONS_BEFORE)
        args.out.write_text(doc)
    elif stages == {"soak"} and args.out.is_file():
        # The other sections stay as the last full run wrote them.
        doc = args.out.read_text()
        for section in (soak_lines(ctx, args), fuzz_lines(args, doc)):
            doc = sl.splice_section(doc, section, SECTIONS_BEFORE)
        args.out.write_text(doc)
    else:
        args.out.write_text(render(ctx))
    raw_path = ROOT / "target/bench/results.json"
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    raw_path.write_text(json.dumps({"context": {k: v for k, v in ctx.items()
                                                if k not in ("args", "proxy")},
                                    "raw": raw}, indent=1, default=str))
    log(f"wrote {args.out} (raw runs in {raw_path}) in {elapsed / 60:.1f} min")
    return 0


def cluster_replay(args):
    """`--cluster-replay`: the cluster section rebuilt from a saved run and spliced in."""
    saved = json.loads(args.cluster_replay.read_text())
    ctx = dict(saved["context"])
    raw = saved["raw"].get("cluster")
    if not isinstance(ctx.get("cluster"), dict) or raw is None:
        print(f"bench/run: {args.cluster_replay} holds no cluster run", file=sys.stderr)
        return 2
    run = {k: ctx["cluster"].get(k) for k in ("exe", "conns", "duration", "cores")}
    doc = args.out.read_text() if args.out.is_file() else ""
    ctx["cluster"] = cluster_summary(raw, run, doc)
    section = render_cluster(ctx["cluster"], cluster_run_note(ctx))
    args.out.write_text(sl.splice_section(doc, section, ("## GitOps",) + SECTIONS_BEFORE))
    log(f"wrote the cluster section of {args.out} from {args.cluster_replay}")
    return 0


# `--only soak` puts its sections before the first of these (the hand-written notes).
SECTIONS_BEFORE = ("## Profiling notes",)


def soak_dir(args):
    """Where the soak's plots and report go: `bench/soak/` beside the real BENCHMARKS.md, else
    `<report>-soak/` beside another report (--quick, --out)."""
    if args.out.resolve() == (ROOT / "BENCHMARKS.md").resolve():
        return ROOT / "bench/soak"
    return args.out.parent / f"{args.out.stem}-soak"


def soak_lines(ctx, args, previous=""):
    """The soak section: this run's, else the previous report's, else how to run it."""
    rel = os.path.relpath(soak_dir(args), args.out.parent)
    if ctx.get("soak") is not None:
        # Hand-written findings about the committed run, kept beside its plots.
        notes = soak_dir(args) / "NOTES.md"
        return sl.soak_section(ctx["soak"], rel,
                               notes.read_text() if notes.is_file() else None)
    kept = sl.extract_section(previous, "## Soak run")
    if kept:
        return kept
    return sl.soak_section("Not run yet: `bench/run --only soak` (30 minutes; "
                           "`--soak-minutes N`).", rel)


def fuzz_lines(args, previous=""):
    """The fuzzing section from `scripts/fuzz`'s summary, else the previous report's."""
    path = args.fuzz_summary
    if path.is_file():
        when = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
        try:
            shown = path.resolve().relative_to(ROOT)
        except ValueError:
            shown = path
        entries = sl.parse_fuzz_summary(path.read_text())
        return sl.fuzz_section(entries, f"`{shown}`, written {when:%Y-%m-%d %H:%M UTC}")
    kept = sl.extract_section(previous, "## Fuzzing")
    if kept:
        return kept
    return sl.fuzz_section([], f"`{path}` does not exist: run `scripts/fuzz`")


def own_cpu_seconds():
    """CPU time of the harness and of every child it has waited for (and theirs)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# ---------------------------------------------------------------------------------------------
# the dashboard (issue 23): its memory on the idle agent, and the overview's render time with
# 30 days of metrics stored

# The metric store's spans and limit (crates/agent/src/monitor/series.rs).
STORE_FINE_STEP, STORE_FINE_SPAN = 300, 48 * 3600
STORE_COARSE_STEP, STORE_COARSE_SPAN = 3600, 30 * 24 * 3600
STORE_MAX_SERIES = 128


def metric_store_fixture(path, service, now=None):
    """Writes a full metric store as the agent persists it (`.dockhand/metrics.json`: the
    5-minute roll-ups of 48 hours and the hourly ones of 30 days of every series, raw samples
    are never persisted): `service`'s series, the host's, and made-up services' up to the
    store's limit of 128 series — what 30 days of a busy app leave behind. The agent loads it
    at start. A bench-only fixture: the only way to have 30 days without waiting them."""
    import math
    now = int(now or time.time())
    metrics = ["requests_per_second", "error_ratio", "p50_ms", "p99_ms", "memory_bytes"]
    names = [f"service:{service}:{m}" for m in metrics]
    names += ["host:cpu_ratio", "host:memory_used_ratio", "host:load1", "host:disk:/:used_ratio"]
    n = 0
    while len(names) < STORE_MAX_SERIES:
        names += [f"service:other{n}:{m}" for m in metrics]
        n += 1
    names = names[:STORE_MAX_SERIES]

    def value(name, t):
        wave = 0.5 + 0.5 * math.sin(t / 86400 * 2 * math.pi)
        if name.endswith("memory_bytes"):
            return 80e6 + 20e6 * wave
        if name.endswith("_ratio") or name == "host:load1":
            return 0.2 + 0.3 * wave
        if name.endswith("_ms"):
            return 5 + 20 * wave
        return 50 + 200 * wave

    def points(name, step, span):
        end = now - now % step
        return [{"t": t, "avg": value(name, t), "max": value(name, t) * 1.2}
                for t in range(end - span + step, end, step)]

    store = {"series": {name: {"fine": points(name, STORE_FINE_STEP, STORE_FINE_SPAN),
                               "coarse": points(name, STORE_COARSE_STEP, STORE_COARSE_SPAN)}
                        for name in names}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(store))
    return {"series": len(names), "bytes": path.stat().st_size}


def dashboard_toml(port, testapp, dashboard_port):
    """The bench app with `[dashboard]` on `dashboard_port`, or off (`None`)."""
    if dashboard_port is None:
        dashboard = "[dashboard]\nenabled = false\n"
    else:
        dashboard = f'[dashboard]\nlisten = "127.0.0.1:{dashboard_port}"\n'
    return pc.dockhand_toml(port, testapp, "bench-dashboard") + "\n" + dashboard


def dashboard_agent(exe, testapp, procs, workdir, args, name, dashboard_port):
    """Starts the bench app's agent with the 30-day store; returns (process, project) once
    its service is healthy and it settled for `args.settle` + `args.idle` seconds."""
    project = workdir / name
    project.mkdir()
    (project / "dockhand.toml").write_text(dashboard_toml(free_port(), testapp, dashboard_port))
    fixture = metric_store_fixture(project / ".dockhand" / "metrics.json", "backend")
    env = dict(os.environ, RUST_LOG="warn")
    env.pop("DOCKHAND_SOCKET", None)
    p = procs.start(name, [str(exe), "agent", "-f", str(project / "dockhand.toml")],
                    cpu=args.proxy_cpu, env=env, cwd=project, grace=30.0)
    deadline = time.monotonic() + 60
    while True:
        if p.poll() is not None:
            raise RuntimeError(f"dockhand agent exited with {p.returncode}; see {name}.log")
        r = run([str(exe), "status", "--json"], timeout=20, cwd=project, check=False)
        try:
            healthy = any(i.get("health") == "healthy"
                          for s in json.loads(r.stdout).get("services", [])
                          for i in s.get("instances", []))
        except ValueError:
            healthy = False
        if healthy:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the bench app was not healthy within 60s; see {name}.log")
        time.sleep(0.3)
    time.sleep(args.settle + args.idle)
    return p, project, fixture


def dashboard_session(port, login_url):
    """Uses a one-time login link; returns the session cookie (`name=value`)."""
    import http.client
    import urllib.parse
    u = urllib.parse.urlsplit(login_url)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", f"{u.path}?{u.query}")
    r = c.getresponse()
    r.read()
    cookie = r.getheader("Set-Cookie") or ""
    c.close()
    if r.status != 303 or not cookie:
        raise RuntimeError(f"the login link answered {r.status} without a session cookie")
    return cookie.split(";")[0]


def time_page(port, cookie, path, n):
    """GETs `path` `n` times (after 5 unmeasured) on one keep-alive connection with the
    session; returns each request's latency in milliseconds."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    try:
        for i in range(n + 5):
            t0 = time.perf_counter()
            c.request("GET", path, headers={"Cookie": cookie})
            r = c.getresponse()
            body = r.read()
            dt = (time.perf_counter() - t0) * 1000
            if r.status != 200:
                raise RuntimeError(f"GET {path} answered {r.status}: {body[:200]!r}")
            if i >= 5:
                out.append(dt)
    finally:
        c.close()
    return out


def quantile(values, q):
    import math
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(math.ceil(q * len(s))) - 1))]


def dashboard_stage(exe, testapp, procs, workdir, args, budget):
    """The idle agent's RSS with the dashboard off and on (the same app and the same full
    30-day metric store), then the overview's latency over HTTP with a session (rendered on
    the server from the agent's API: status, events, the request-rate series)."""
    budget.check("dashboard")
    out = {"runs": []}
    # Off, on, off, on: the median of each side (one pair with --quick).
    pairs = 1 if args.quick else 2
    for i in range(pairs):
        for enabled in (False, True):
            name = f"dashboard-{'on' if enabled else 'off'}-{i}"
            dport = free_port() if enabled else None
            p, project, fixture = dashboard_agent(exe, testapp, procs, workdir, args, name, dport)
            out["fixture"] = fixture
            run_out = {"enabled": enabled, "rss_kib": proc_status_kib(p.pid),
                       "pss_kib": proc_pss_kib(p.pid)}
            if enabled and i == pairs - 1:
                r = run([str(exe), "dashboard", "--json", "--no-open"], timeout=20, cwd=project)
                cookie = dashboard_session(dport, json.loads(r.stdout)["url"])
                n = 50 if args.quick else 500
                for path, key in (("/", "overview"), ("/?window=7d", "overview_7d"),
                                  ("/services/backend?window=7d", "service_7d")):
                    lat = time_page(dport, cookie, path, n)
                    out[key] = {"n": n, "p50_ms": quantile(lat, 0.5),
                                "p95_ms": quantile(lat, 0.95), "max_ms": max(lat)}
                out["rss_after_kib"] = proc_status_kib(p.pid)
            procs.stop(p)
            out["runs"].append(run_out)
    off = [r["rss_kib"] for r in out["runs"] if not r["enabled"]]
    on = [r["rss_kib"] for r in out["runs"] if r["enabled"]]
    out["rss_off_kib"] = statistics.median(off)
    out["rss_on_kib"] = statistics.median(on)
    out["rss_delta_kib"] = out["rss_on_kib"] - out["rss_off_kib"]
    return out


def dashboard_goals(db):
    """The issue's two dashboard goals."""
    if isinstance(db, str) or "error" in db:
        return [("the dashboard adds at most 3 MB to the idle agent's RSS", "—", "not measured"),
                ("the overview renders in under 20 ms at p95 with 30 days of metrics", "—",
                 "not measured")]
    delta_mb = db["rss_delta_kib"] / 1024
    ov = db["overview"]
    return [
        ("the dashboard adds at most 3 MB to the idle agent's RSS", f"{delta_mb:+.1f} MiB",
         bl.verdict(db["rss_delta_kib"] <= 3 * 1024)),
        ("the overview renders in under 20 ms at p95 with 30 days of metrics",
         f"p95 {ov['p95_ms']:.1f} ms", bl.verdict(ov["p95_ms"] < 20)),
    ]


def render_dashboard(db, args):
    """The dashboard section of BENCHMARKS.md."""
    lines = ["## Dashboard (issue 23)", ""]
    if isinstance(db, str):
        return lines + [db, ""]
    f = db.get("fixture", {})
    lines += [
        "The bench app's agent (one testapp service) started with a full metric store written "
        f"before its start — {f.get('series', '?')} series (the store's limit), each with 48 h "
        "of 5-minute and 30 days of hourly roll-ups, "
        f"{f.get('bytes', 0) / 1e6:.1f} MB of `metrics.json` (bench/harness.py "
        "`metric_store_fixture`: the format the agent persists) — with `[dashboard] enabled = "
        "false`, then on, each left idle "
        f"{args.settle + args.idle} s after its service was healthy; RSS is VmRSS of the agent "
        "process (the median of each side). Then, with a session opened by a one-time login "
        "link, each page was requested over one keep-alive HTTP connection from this machine "
        "(5 unmeasured first): the latency is the whole request, the server-side render plus "
        "loopback HTTP (the agent exports no render duration of its own).",
        "",
        bl.md_table(["dashboard", "agent RSS", "agent PSS"],
                    [["off" if not r["enabled"] else "on", f"{r['rss_kib'] / 1024:.1f} MiB",
                      "—" if r["pss_kib"] is None else f"{r['pss_kib'] / 1024:.1f} MiB"]
                     for r in db["runs"]]),
        "",
        f"Difference of the medians: {db['rss_delta_kib'] / 1024:+.1f} MiB.",
        "",
    ]
    rows = []
    for key, what in (("overview", "overview (`/`, 1 h charts)"),
                      ("overview_7d", "overview over 7 days (`/?window=7d`)"),
                      ("service_7d", "a service over 7 days (`/services/backend?window=7d`)")):
        if key in db:
            t = db[key]
            rows.append([what, t["n"], f"{t['p50_ms']:.1f} ms", f"{t['p95_ms']:.1f} ms",
                         f"{t['max_ms']:.1f} ms"])
    lines += [bl.md_table(["page", "requests", "p50", "p95", "max"], rows), ""]
    if "rss_after_kib" in db:
        lines += [f"The agent's RSS after those requests: {db['rss_after_kib'] / 1024:.1f} MiB.",
                  ""]
    return lines
