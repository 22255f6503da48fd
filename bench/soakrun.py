"""The soak stage of the benchmark harness (`bench/run --only soak`): minutes of load through
the agent's proxy against the bundled example and a container app in one agent, with
deploys, rollbacks, failing releases and one agent restart on a schedule, the agent's memory
(total and anonymous), descriptors, threads, state database and log directory sampled every
ten seconds, and the report (plots, `report.md`, `results.json`) written under `bench/soak/`.

The I/O only: the schedule, the verdicts, the failure classes, the plots and the report text
are `soaklib`'s pure functions.
"""

import datetime
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import harness as h
import soaklib as sl

APP = "bench-soak"
BOX_HOST = "box.localhost"
IMAGE_SOURCE = "dockhand-testapp:latest"  # built by scripts/test-images
IMAGE = "dockhand-bench/soak-testapp:pinned"  # our own tag: a rebuild elsewhere cannot move it
SAMPLE_EVERY = 10.0
WINDOW = 10.0
EXAMPLE_RATE, BOX_RATE, CONNS = 60, 200, 4


class Soak:
    """One agent running the bundled example plus a container service, and its clients."""

    def __init__(self, exe, procs, workdir, args):
        self.exe = exe
        self.procs = procs
        self.args = args
        self.dir = workdir / "soak"
        self.project = self.dir / "project"
        self.state = self.project / ".dockhand"
        self.port = h.free_port()
        self.https_port = h.free_port()
        # The proxy's sockets, held here as systemd's dockhand.socket holds them on a server:
        # connections made while the agent restarts wait in their backlog.
        self.sockets = [h.listening_socket(self.port), h.listening_socket(self.https_port)]
        self.metrics_port = h.free_port()
        self.dashboard_port = h.free_port()
        self.version = 0
        self.serving = None  # the version both apps answer with
        self.agent = None
        self.agent_pid = None
        self.t_start = None
        self.lock = threading.Lock()
        self.samples = []
        self.windows = []
        self.events = []
        self.stop_flag = threading.Event()
        self.errors = []

    # setup ---------------------------------------------------------------------------------

    def prepare(self):
        example = h.ROOT / "examples/hello"
        if not (example / "dockhand.toml").is_file():
            raise RuntimeError(f"{example}/dockhand.toml is missing")
        shutil.copytree(example, self.project)
        r = h.run(["docker", "image", "inspect", "--format", "{{.Id}}", IMAGE_SOURCE],
                  timeout=30, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"the container app's image {IMAGE_SOURCE} is missing: build it "
                               "with `scripts/test-images --testapp target/debug/dockhand-testapp`"
                               f" ({(r.stderr or r.stdout).strip()})")
        self.image_id = r.stdout.strip()
        h.run(["docker", "tag", IMAGE_SOURCE, IMAGE], timeout=30)
        key = self.state / "backup.key"
        key.parent.mkdir(parents=True, exist_ok=True)
        r = h.run([str(self.exe), "backup", "keygen", "--out", str(key)], timeout=30,
                  cwd=self.project)
        m = re.search(r"age1[0-9a-z]+", r.stdout + r.stderr)
        if not m:
            raise RuntimeError(f"`dockhand backup keygen` printed no age recipient: {r.stdout}")
        self.recipient = m.group(0)
        self.template = (example / "dockhand.toml").read_text()
        (self.dir / "example.toml").write_text(self.scenario())

    def config(self, version, box_healthy=True):
        """The bundled example's dockhand.toml with its ports, a name of its own, the release's
        greeting, and the container service appended."""
        text = self.template
        for old, new in (
            ('app = "hello"', f'app = "{APP}"'),
            ("${DOCKHAND_LISTEN:-127.0.0.1:8080}", f"127.0.0.1:{self.port}"),
            ("${DOCKHAND_HTTPS_LISTEN:-127.0.0.1:8443}", f"127.0.0.1:{self.https_port}"),
            ("${GREETING:-hello from dockhand}", f"soak-{version}"),
            ("@BACKUP_RECIPIENT@", self.recipient),
        ):
            if old not in text:
                raise RuntimeError(f"examples/hello/dockhand.toml no longer has {old!r}; "
                                   "update bench/soakrun.py")
            text = text.replace(old, new)
        healthy = "true" if box_healthy else "false"
        return text + f"""
# added by bench/run's soak stage
[monitor]
metrics_listen = "127.0.0.1:{self.metrics_port}"

[dashboard]
listen = "127.0.0.1:{self.dashboard_port}"

[services.box]
image = "{IMAGE}"
pull = "never"
port = 8080
env = {{ VERSION = "soak-{version}", THREADS = "1", HEALTHY = "{healthy}" }}
health = {{ path = "/health", interval = "500ms", deploy_timeout = "15s" }}
route = {{ host = "{BOX_HOST}" }}
"""

    def scenario(self):
        return f"""# the soak's load on the bundled example, written by bench/run
url = "http://localhost:{self.port}"

[[endpoints]]
name = "page"
path = "/"

[[endpoints]]
name = "info"
path = "/api/info"
weight = 2

[[endpoints]]
name = "visit"
method = "POST"
path = "/api/visits"
"""

    def write_config(self, version, box_healthy=True):
        (self.project / "dockhand.toml").write_text(self.config(version, box_healthy))

    # the agent -----------------------------------------------------------------------------

    def start_agent(self):
        env = dict(os.environ)
        env.pop("DOCKHAND_SOCKET", None)
        argv, fds = h.handed(
            self.sockets, [self.exe, "agent", "-f", self.project / "dockhand.toml"])
        self.agent = self.procs.start("soak-agent", argv, cwd=self.project, env=env, grace=60.0,
                                      pass_fds=fds)
        with self.lock:
            self.agent_pid = self.agent.pid
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.agent.poll() is not None:
                raise RuntimeError(f"the soak's agent exited with {self.agent.returncode}; see "
                                   f"soak-agent.log in {self.procs.workdir}")
            if self.serving_version() is not None:
                return
            time.sleep(0.25)
        raise RuntimeError("the soak's apps did not answer within 120 s; see soak-agent.log")

    def stop_agent(self):
        if self.agent is not None:
            self.procs.stop(self.agent)
            self.agent = None

    def client(self, *argv, timeout=180):
        env = dict(os.environ)
        env.pop("DOCKHAND_SOCKET", None)
        return h.run([str(self.exe), *argv], timeout=timeout, cwd=self.project, env=env,
                     check=False)

    def get(self, host, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            c.request("GET", path, headers={"Host": host})
            r = c.getresponse()
            return r.status, r.getheader("x-version"), r.read()
        finally:
            c.close()

    def serving_version(self):
        """The version both apps answer with, or None (down, or the two disagree)."""
        try:
            st, box, _ = self.get(BOX_HOST, "/")
            st2, _, body = self.get("localhost", "/api/info")
        except (OSError, http.client.HTTPException):
            return None
        if st != 200 or st2 != 200:
            return None
        try:
            greeting = json.loads(body).get("greeting")
        except ValueError:
            return None
        return box if box == greeting else None

    # actions -------------------------------------------------------------------------------

    def act(self, kind):
        t0 = self.now()
        # Read now, not kept from the last action: the watch after a deploy may have rolled
        # that release back since (then "before" is what serves, not what was deployed).
        now_serving = self.serving_version()
        before = now_serving if now_serving is not None else self.serving
        ev = {"kind": kind, "t0": t0, "before": before}
        try:
            if kind in (sl.DEPLOY, sl.FAILING):
                self.version += 1
                ev["version"] = f"soak-{self.version}"
                self.write_config(self.version, box_healthy=kind == sl.DEPLOY)
                ev.update(self.report(self.client("deploy", "--json")))
            elif kind == sl.ROLLBACK:
                ev.update(self.report(self.client("rollback", "--json")))
        except (subprocess.TimeoutExpired, OSError) as e:
            # Recorded as not as expected; the run goes on (a restart that fails stops it).
            ev.update(succeeded=False, message=f"the command failed: {e}")
        if kind == sl.RESTART:
            self.stop_agent()
            self.start_agent()
            ev["succeeded"] = True
        after = self.serving_version()
        ev["t1"] = self.now()
        ev["after"] = after
        if kind == sl.DEPLOY:
            ev["as_expected"] = bool(ev.get("succeeded")) and after == ev["version"]
        elif kind == sl.FAILING:
            ev["as_expected"] = ev.get("succeeded") is False and after == before
        elif kind == sl.ROLLBACK:
            ev["as_expected"] = bool(ev.get("succeeded")) and after not in (None, before)
        else:
            ev["as_expected"] = after == before
        if after is not None:
            self.serving = after
        self.events.append(ev)
        h.log(f"soak {sl.fmt_mmss(t0)} {kind}: {before} → {after} "
              f"({'as expected' if ev['as_expected'] else 'NOT as expected'}; "
              f"{ev.get('message', '')[:160]})")

    @staticmethod
    def report(r):
        try:
            rep = json.loads(r.stdout)
        except ValueError:
            return {"succeeded": False, "exit": r.returncode,
                    "message": (r.stderr or r.stdout).strip()[-400:]}
        if not isinstance(rep, dict):
            return {"succeeded": False, "exit": r.returncode, "message": str(rep)[:400]}
        msg = rep.get("message") or (rep.get("error") or {}).get("message") or ""
        return {"succeeded": bool(rep.get("succeeded")), "exit": r.returncode,
                "message": str(msg)[:400], "release": rep.get("release")}

    def now(self):
        return time.monotonic() - self.t_start

    # load and samples ----------------------------------------------------------------------

    def load_loop(self):
        example = [str(self.exe), "loadtest", "--scenario", str(self.dir / "example.toml"),
                   "--rate", str(EXAMPLE_RATE)]
        box = [str(self.exe), "loadtest", f"http://{BOX_HOST}:{self.port}/", "--rate",
               str(BOX_RATE)]
        common = ["-c", str(CONNS), "--threads", "1", "-d", f"{WINDOW:.0f}s", "--timeout", "5s",
                  "--json"]
        while not self.stop_flag.is_set():
            t0 = self.now()
            running = []
            for target, argv in (("example", example), ("container", box)):
                running.append((target, subprocess.Popen(
                    argv + common, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, start_new_session=True)))
            for target, p in running:
                try:
                    out, err = p.communicate(timeout=WINDOW + 60)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    out, err = p.communicate()
                t1 = self.now()
                try:
                    tot = json.loads(out)["totals"]
                except (ValueError, KeyError, TypeError):
                    self.errors.append(f"loadtest ({target}) at {sl.fmt_mmss(t0)} printed no "
                                       f"report (exit {p.returncode}): {err.decode()[-300:]}")
                    if len(self.errors) > 3:
                        self.stop_flag.set()
                    continue
                kinds = {k: v for k, v in (tot.get("errors") or {}).items() if v}
                for status, n in (tot.get("status") or {}).items():
                    if not ("200" <= status < "400"):
                        kinds[f"status {status}"] = n
                self.windows.append({"t0": t0, "t1": t1, "target": target,
                                     "requests": tot.get("requests", 0),
                                     "failed": tot.get("failed", 0), "kinds": kinds,
                                     "p99_us": (tot.get("latency_us") or {}).get("p99_us")})

    def sample_loop(self):
        next_t = 0.0
        while not self.stop_flag.is_set():
            with self.lock:
                pid = self.agent_pid
            try:
                if pid is None or h.proc_status_kib(pid) == 0:
                    raise OSError("no agent, or a zombie")
                s = {"t": self.now(), "pid": pid,
                     "rss_kib": h.proc_status_kib(pid),
                     # Its parts: anonymous (heap, stacks: what a leak grows) and file-backed
                     # (the executable's code, paged out 10 s after start and faulting back
                     # in). None where the kernel does not report them.
                     "anon_kib": h.proc_status_kib(pid, "RssAnon") or None,
                     "file_kib": h.proc_status_kib(pid, "RssFile") or None,
                     "threads": h.proc_status_kib(pid, "Threads"),
                     "fds": len(os.listdir(f"/proc/{pid}/fd")),
                     "db_bytes": sum(file_size(self.state / n)
                                     for n in ("state.db", "state.db-wal")),
                     # Apart too: SQLite reuses its WAL file after a checkpoint without
                     # shrinking it, so the sum first grows to the WAL's high-water mark.
                     "wal_bytes": file_size(self.state / "state.db-wal"),
                     "logs_bytes": dir_size(self.state / "logs")}
                self.samples.append(s)
            except (OSError, TypeError):
                pass  # the agent is restarting: no sample this time
            next_t += SAMPLE_EVERY
            self.stop_flag.wait(max(0.0, next_t - self.now()))


def file_size(p):
    try:
        return p.stat().st_size
    except OSError:
        return 0


def dir_size(root):
    total = 0
    for d, _dirs, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_size
            except OSError:
                pass
    return total


def soak_stage(exe, procs, workdir, args, soak_dir):
    """Runs the soak and writes its plots, `report.md` and `results.json` to `soak_dir`;
    returns the result dict for the BENCHMARKS.md section."""
    if shutil.which("docker") is None or h.run(["docker", "version"], timeout=30,
                                                check=False).returncode != 0:
        return "not run: the Docker Engine does not answer (`scripts/dockerd start`)"
    s = Soak(exe, procs, workdir, args)
    s.prepare()
    minutes, interval = args.soak_minutes, args.soak_interval
    schedule = sl.soak_schedule(minutes, interval)
    s.write_config(0)
    s.t_start = time.monotonic()
    busy0, own0 = h.system_busy_ticks(), h.own_cpu_seconds()
    threads = []
    try:
        s.start_agent()
        s.serving = s.serving_version()
        h.log(f"soak: agent pid {s.agent_pid}, proxy 127.0.0.1:{s.port}, serving {s.serving}; "
              f"{minutes} min, {len(schedule)} actions")
        s.t_start = time.monotonic()  # the run's clock starts with the apps serving
        threads = [threading.Thread(target=s.sample_loop, daemon=True),
                   threading.Thread(target=s.load_loop, daemon=True)]
        for t in threads:
            t.start()
        for at, kind in schedule:
            wait = at - s.now()
            if wait > 0 and s.stop_flag.wait(wait):
                break
            s.act(kind)
        rest = minutes * 60 - s.now()
        if rest > 0:
            s.stop_flag.wait(rest)
    finally:
        s.stop_flag.set()
        for t in threads:
            t.join(timeout=WINDOW + 90)
        elapsed = s.now()
        s.stop_agent()
        cleanup_docker()
    if s.errors:
        raise RuntimeError("the soak's load generator failed: " + "; ".join(s.errors))
    busy = (h.system_busy_ticks() - busy0) / h.CLK_TCK
    own = h.own_cpu_seconds() - own0
    total = elapsed * len(os.sched_getaffinity(0))
    res = {
        "command": args.command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "minutes": minutes, "interval": interval, "seconds": elapsed,
        "image": IMAGE_SOURCE, "image_id": s.image_id,
        "window": WINDOW, "sample_every": SAMPLE_EVERY,
        "load_desc": (
            f"The load: `dockhand loadtest` in back-to-back {WINDOW:.0f}-second windows, open "
            f"loop over {CONNS} keep-alive connections each — {EXAMPLE_RATE} requests/s to the "
            f"example (its page, `GET /api/info` twice as often, `POST /api/visits`: a SQLite "
            f"write) and {BOX_RATE}/s to the container app (`GET /` on `{BOX_HOST}`)."),
        "foreign_cpu_pct": max(0.0, (busy - own) / total * 100) if total else 0.0,
        "samples": s.samples, "windows": s.windows, "events": s.events,
    }
    return finish(res, soak_dir)


def finish(res, soak_dir):
    """Verdicts, classes, plots, `report.md` and `results.json` from a soak's raw result."""
    run_s = max([res["minutes"] * 60] + [x["t"] for x in res["samples"]])
    res["warmup"] = sl.warmup_seconds(res["minutes"] * 60 / 2)
    res["windows"], res["totals"] = sl.classify_windows(res["windows"], res["events"])
    res["requests"] = sum(w["requests"] for w in res["windows"])
    # A series no sample has (a results.json from before it was sampled) gets no verdict and
    # no plot; the section says it was not sampled.
    present = [x for x in sl.SERIES
               if any(smp.get(x[0]) is not None for smp in res["samples"])]
    res["verdicts"] = {key: sl.series_verdict(res["samples"], key, pp, res["warmup"])
                       for key, _n, _u, _d, pp in present}
    evs = res["events"]
    restarts = [e["t1"] - e["t0"] for e in evs if e["kind"] == sl.RESTART]
    res["actions"] = {
        "deploys_ok": sum(1 for e in evs if e["kind"] == sl.DEPLOY and e["as_expected"]),
        "rollbacks_ok": sum(1 for e in evs if e["kind"] == sl.ROLLBACK and e["as_expected"]),
        "failing_refused": sum(1 for e in evs if e["kind"] == sl.FAILING and e["as_expected"]),
        "restart_s": restarts[0] if restarts else None,
    }
    soak_dir.mkdir(parents=True, exist_ok=True)
    res["plots"] = {}
    markers = [(e["t0"], e["kind"]) for e in evs]
    segs = sl.segments(res["samples"])
    for key, name, unit, div, per_process in present:
        lines = [[(x["t"], x[key] / div) for x in seg if x.get(key) is not None]
                 for seg in segs]
        if not per_process:
            lines = [[p for line in lines for p in line]]
        warm = [(seg[0]["t"], seg[0]["t"] + res["warmup"]) for seg in segs][
            : None if per_process else 1]
        v = res["verdicts"][key]
        groups = sl.kept_groups(res["samples"], key, per_process, res["warmup"])
        # The fitted slopes through each lifetime's (or the whole run's) median sample: over
        # all the kept samples, and over their last half.
        trends = fitted(groups, v.get("slope_per_hour"), key, div)
        late = fitted(sl.last_half(groups, per_process),
                      (v.get("last_half") or {}).get("slope_per_hour"), key, div)
        fname = f"{key.split('_')[0]}.svg"
        (soak_dir / fname).write_text(sl.svg_chart(name, unit, lines, run_s, markers, trends,
                                                   warm, late_trends=late))
        res["plots"][key] = fname
    (soak_dir / "results.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    notes = soak_dir / "NOTES.md"
    (soak_dir / "report.md").write_text(
        report_md(res, notes.read_text() if notes.is_file() else None))
    return res


def fitted(groups, slope_per_hour, key, div):
    """`((t0, v0), (t1, v1))` per group of at least two samples: a line of the slope (per
    hour, in the sample's unit) through the group's median time and median value, from its
    first sample to its last, in the shown unit. None for a slope gives no line."""
    if slope_per_hour is None:
        return []
    k = slope_per_hour / 3600 / div
    out = []
    for g in groups:
        if len(g) < 2:
            continue
        tm = sorted(x["t"] for x in g)[len(g) // 2]
        vm = sorted(x[key] for x in g)[len(g) // 2] / div
        ta, tb = g[0]["t"], g[-1]["t"]
        out.append(((ta, vm + k * (ta - tm)), (tb, vm + k * (tb - tm))))
    return out


def report_md(res, notes=None):
    lines = ["# Soak run: the whole report", "",
             "Written by `bench/run --only soak` (its summary and verdicts are in "
             "`BENCHMARKS.md`, section \"Soak run\"; raw samples, windows and actions in "
             "`results.json` beside this file).", ""]
    lines += sl.soak_section(res, ".", notes)[2:]
    lines += ["## Actions", "",
              "| at | action | serving before | after | took | as expected | message |",
              "|---|---|---|---|---|---|---|"]
    for e in res["events"]:
        msg = str(e.get("message", "")).replace("|", "\\|").replace("\n", " ")[:200]
        lines.append(f"| {sl.fmt_mmss(e['t0'])} | {e['kind']} | {e.get('before')} | "
                     f"{e.get('after')} | {e['t1'] - e['t0']:.1f} s | "
                     f"{'yes' if e['as_expected'] else '**no**'} | {msg} |")
    lines += ["", "## Windows with failed requests", ""]
    rows = sl.failure_rows(res["windows"])
    if rows:
        lines.append("| window start | target | requests | failed | kinds | during |")
        lines.append("|---|---|---|---|---|---|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        lines.append("None.")
    lines.append("")
    return "\n".join(lines)


def cleanup_docker():
    """Containers the soak's agent left (it removes its own on stop; this is the backstop),
    its network, and our tag of the image."""
    r = h.run(["docker", "ps", "-aq", "--filter", f"label=dockhand.app={APP}"], timeout=60,
              check=False)
    ids = r.stdout.split()
    if ids:
        h.log(f"soak: removing {len(ids)} container(s) the agent left")
        h.run(["docker", "rm", "-f", *ids], timeout=120, check=False)
    h.run(["docker", "network", "rm", f"dockhand-{APP}"], timeout=60, check=False)
    h.run(["docker", "rmi", IMAGE], timeout=60, check=False)
