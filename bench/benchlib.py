"""The pure parts of the benchmark harness: parsing what the tools print, medians and
ratios, the performance-goal verdicts and the BENCHMARKS.md tables.

Nothing here starts a process or touches a file, so `bench/test_benchlib.py` checks it with
plain data in milliseconds (scripts/test runs it); `bench/harness.py` does the I/O.
"""

import re
import statistics

# wrk prints times through format_time_us: a number and one of these units.
_TIME_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
_TIME_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)$")


class ParseError(ValueError):
    """The text is not what the tool prints; the message says what was missing."""


def parse_time_us(text):
    """`1.23ms` -> 1230.0 (microseconds)."""
    m = _TIME_RE.match(text.strip())
    if not m:
        raise ParseError(f"not a wrk time: {text!r}")
    return float(m.group(1)) * _TIME_UNITS_US[m.group(2)]


def parse_wrk(output):
    """Reads `wrk --latency` output into a dict.

    Keys: requests, seconds, rps, p50_us, p75_us, p90_us, p99_us (those printed), socket
    errors (connect, read, write, timeout), non_2xx (wrk counts status >= 400) and errors
    (their sum).
    """
    out = {
        "connect_errors": 0,
        "read_errors": 0,
        "write_errors": 0,
        "timeout_errors": 0,
        "non_2xx": 0,
    }
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h),", output, re.M)
    if not m:
        raise ParseError("wrk output has no 'N requests in T' line")
    out["requests"] = int(m.group(1))
    out["seconds"] = float(m.group(2)) * _TIME_UNITS_US[m.group(3)] / 1e6
    m = re.search(r"^Requests/sec:\s*([0-9.]+)", output, re.M)
    if not m:
        raise ParseError("wrk output has no 'Requests/sec:' line")
    out["rps"] = float(m.group(1))
    dist = output.split("Latency Distribution", 1)
    if len(dist) == 2:
        for pct, value in re.findall(r"^\s*(\d+)%\s+(\S+)", dist[1], re.M):
            out[f"p{pct}_us"] = parse_time_us(value)
    m = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if m:
        out["connect_errors"], out["read_errors"], out["write_errors"], out["timeout_errors"] = (
            int(g) for g in m.groups()
        )
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if m:
        out["non_2xx"] = int(m.group(1))
    out["errors"] = (
        out["connect_errors"]
        + out["read_errors"]
        + out["write_errors"]
        + out["timeout_errors"]
        + out["non_2xx"]
    )
    return out


# ---------------------------------------------------------------------------------------------
# `dockhand loadtest --json`


_RPS_KEYS = ("requests_per_sec", "requests_per_second", "rps", "req_per_sec", "throughput_rps")
_PCTS = ("p50", "p90", "p95", "p99", "p99_9", "p999", "max")


def _unit_scale(name):
    """Microseconds per unit implied by a key name (`latency_ms`, `p99_us`), or None."""
    name = name.lower()
    for suffix, scale in (("_ns", 1e-3), ("_us", 1.0), ("_ms", 1e3), ("_s", 1e6), ("_secs", 1e6)):
        if name.endswith(suffix):
            return scale
    return None


def _walk(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield path + (str(k),), v
            yield from _walk(v, path + (str(k),))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, path + (str(i),))


def parse_loadtest_json(report):
    """Reads the figures the harness compares from `dockhand loadtest --json`'s report.

    The report is searched rather than read at fixed places, so a renamed wrapper object does
    not break the harness: requests per second under one of `_RPS_KEYS`, and latency
    percentiles as `p50`/`p99`-style keys whose unit comes from their own name (`p99_ms`) or
    an enclosing one (`latency_ms`, `latency_us`). Returns rps, p50_us, p90_us, p99_us
    (those found) and requests, errors when present.
    """
    if not isinstance(report, dict):
        raise ParseError("loadtest report is not a JSON object")
    # Schema 1 (crates/loadtest/src/report.rs): all endpoints together are in `totals`.
    if isinstance(report.get("totals"), dict):
        report = report["totals"]
    out = {}
    for path, value in _walk(report):
        key = path[-1].lower()
        if key in _RPS_KEYS and isinstance(value, (int, float)) and "rps" not in out:
            out["rps"] = float(value)
        if key in ("requests", "total_requests", "total") and isinstance(value, int):
            out.setdefault("requests", value)
        base = key
        scale = _unit_scale(key)
        if scale is not None:
            base = key.rsplit("_", 1)[0]
        base = base.replace(".", "_")
        if base not in ("p50", "p90", "p99") or not isinstance(value, (int, float)):
            continue
        if scale is None:
            for parent in reversed(path[:-1]):
                scale = _unit_scale(parent)
                if scale is not None:
                    break
        if scale is None:
            # A bare `latency.p99` with no unit anywhere: milliseconds is what people print.
            scale = 1e3
        out.setdefault(f"{base}_us", float(value) * scale)
    if "rps" not in out:
        raise ParseError(
            "loadtest report has no requests-per-second figure (looked for "
            + ", ".join(_RPS_KEYS)
            + ")"
        )
    return out


# ---------------------------------------------------------------------------------------------
# statistics


def median(values):
    """Median of the values that are not None; None when there are none."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return statistics.median(vals)


def ratio(value, reference):
    """value / reference, None when either is missing or the reference is zero."""
    if value is None or reference in (None, 0):
        return None
    return value / reference


def cpu_us_per_request(ticks, clk_tck, requests):
    """CPU microseconds per request from a utime+stime delta in clock ticks."""
    if not requests:
        return None
    return ticks * 1e6 / clk_tck / requests


def summarize(runs):
    """Median of every numeric figure over several runs of one configuration."""
    keys = sorted({k for r in runs for k, v in r.items() if isinstance(v, (int, float))})
    return {k: median([r.get(k) for r in runs]) for k in keys}


def rotate(items, n):
    """The order of round n: each round starts one peer later, so no peer always runs first."""
    if not items:
        return []
    n %= len(items)
    return list(items[n:]) + list(items[:n])


# ---------------------------------------------------------------------------------------------
# goals


def verdict(ok):
    return {True: "met", False: "missed", None: "not measured"}[ok]


def proxy_goals(table):
    """The issue's proxy goals from the summarized matrix.

    `table[(proto, conns)][peer]` is a summary dict (cpu_us, p99_us, rss_kib) or a string
    saying why it is missing. Returns a list of (goal, measured, verdict) rows.
    """

    def fig(proto, conns, peer, key):
        row = table.get((proto, conns), {}).get(peer)
        if isinstance(row, dict):
            return row.get(key)
        return None

    rows = []
    d = fig("http", 64, "dockhand", "cpu_us")
    n = fig("http", 64, "nginx", "cpu_us")
    r = ratio(d, n)
    rows.append(
        (
            "proxy CPU per request, HTTP @ 64 connections, at or below nginx's",
            _fmt_cmp(d, n, r, "µs", "nginx"),
            verdict(None if r is None else r <= 1.0),
        )
    )
    peers = {
        p: fig("http", 256, p, "cpu_us")
        for p in ("nginx", "haproxy", "caddy")
        if fig("http", 256, p, "cpu_us") is not None
    }
    d = fig("http", 256, "dockhand", "cpu_us")
    if peers and d is not None:
        best = min(peers, key=peers.get)
        r = ratio(d, peers[best])
        rows.append(
            (
                "proxy CPU per request, HTTP @ 256 connections, within 5% of the best peer",
                _fmt_cmp(d, peers[best], r, "µs", best),
                verdict(r <= 1.05),
            )
        )
    else:
        rows.append(
            (
                "proxy CPU per request, HTTP @ 256 connections, within 5% of the best peer",
                "—",
                verdict(None),
            )
        )
    https = table.get(("https", 64), {}).get("dockhand")
    rows.append(
        (
            "proxy CPU per request, HTTPS @ 64 connections, at least 10% below nginx's",
            https if isinstance(https, str) else "—",
            "not yet" if isinstance(https, str) else verdict(None),
        )
    )
    if isinstance(https, dict):
        d, n = https.get("cpu_us"), fig("https", 64, "nginx", "cpu_us")
        r = ratio(d, n)
        rows[-1] = (rows[-1][0], _fmt_cmp(d, n, r, "µs", "nginx"), verdict(None if r is None else r <= 0.9))
    for conns in (64, 256):
        d, n = fig("http", conns, "dockhand", "p99_us"), fig("http", conns, "nginx", "p99_us")
        r = ratio(d, n)
        rows.append(
            (
                f"p99 latency, HTTP @ {conns} connections, no worse than nginx's",
                _fmt_cmp(d, n, r, None, "nginx"),
                verdict(None if r is None else r <= 1.0),
            )
        )
    d, n = fig("http", 64, "dockhand", "rss_kib"), fig("http", 64, "nginx", "rss_kib")
    r = ratio(d, n)
    rows.append(
        (
            "resident memory (after the HTTP @ 64 runs) at or below nginx's",
            _fmt_cmp(None if d is None else d / 1024, None if n is None else n / 1024, r, "MiB", "nginx"),
            verdict(None if r is None else r <= 1.0),
        )
    )
    return rows


def loadtest_goals(lt, wrk):
    """`dockhand loadtest` against wrk: at least 0.9x the rps, p50 and p99 within 10%."""
    name = "`dockhand loadtest`: ≥ 0.9× wrk's requests/s, p50 and p99 within 10% of wrk's"
    if not isinstance(lt, dict) or not isinstance(wrk, dict):
        return [(name, lt if isinstance(lt, str) else "—", "not measured")]
    r_rps = ratio(lt.get("rps"), wrk.get("rps"))
    r50 = ratio(lt.get("p50_us"), wrk.get("p50_us"))
    r99 = ratio(lt.get("p99_us"), wrk.get("p99_us"))
    parts = [f"rps {fmt_ratio(r_rps)}", f"p50 {fmt_ratio(r50)}", f"p99 {fmt_ratio(r99)}"]
    if None in (r_rps, r50, r99):
        ok = None
    else:
        ok = r_rps >= 0.9 and abs(r50 - 1) <= 0.1 and abs(r99 - 1) <= 0.1
    return [(name, ", ".join(parts), verdict(ok))]


def _fmt_cmp(value, reference, r, unit, ref_name):
    """`45.4 µs vs nginx 33.6 µs (1.35×)`; unit None formats microseconds as latencies."""
    if value is None or reference is None:
        return "—"
    if unit is None:
        return f"{fmt_latency(value)} vs {ref_name} {fmt_latency(reference)} ({fmt_ratio(r)})"
    return f"{fmt_num(value)} {unit} vs {ref_name} {fmt_num(reference)} {unit} ({fmt_ratio(r)})"


# ---------------------------------------------------------------------------------------------
# formatting


def fmt_num(value, digits=None):
    """Numbers for tables: three significant figures, thousands grouped."""
    if value is None:
        return "—"
    if digits is not None:
        return f"{value:,.{digits}f}"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def fmt_latency(us):
    if us is None:
        return "—"
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def md_table(header, rows):
    """A GitHub markdown table; every cell is str()'d, `|` escaped."""
    def cell(c):
        return str(c).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    return "\n".join(lines)


def proxy_rows(table, proto, conns, peers):
    """Rows of the proxy table for one (protocol, connections) cell of the matrix."""
    cells = table.get((proto, conns), {})
    ref = cells.get("nginx") if isinstance(cells.get("nginx"), dict) else {}
    rows = []
    for peer in peers:
        s = cells.get(peer)
        if s is None:
            continue
        if isinstance(s, str):
            rows.append([peer, s, "", "", "", "", "", ""])
            continue
        rows.append(
            [
                peer,
                f"{fmt_num(s.get('rps'))} ({fmt_ratio(ratio(s.get('rps'), ref.get('rps')))})",
                f"{fmt_latency(s.get('p50_us'))}",
                f"{fmt_latency(s.get('p99_us'))} ({fmt_ratio(ratio(s.get('p99_us'), ref.get('p99_us')))})",
                f"{fmt_num(s.get('cpu_us'))} ({fmt_ratio(ratio(s.get('cpu_us'), ref.get('cpu_us')))})",
                f"{fmt_num(None if s.get('rss_kib') is None else s['rss_kib'] / 1024)}"
                f" ({fmt_ratio(ratio(s.get('rss_kib'), ref.get('rss_kib')))})",
                fmt_num(None if s.get("pss_kib") is None else s["pss_kib"] / 1024),
                f"{s.get('errors', 0):.0f}",
            ]
        )
    return rows


PROXY_HEADER = [
    "proxy",
    "requests/s (× nginx)",
    "p50",
    "p99 (× nginx)",
    "CPU µs/request (× nginx)",
    "RSS MiB (× nginx)",
    "PSS MiB",
    "errors",
]


# ---------------------------------------------------------------------------------------------
# handshakes (every request on a new TLS connection)

HANDSHAKE_MODES = [("new", "full handshakes"), ("reuse", "resumed handshakes")]
HANDSHAKE_PEERS = ["nginx", "haproxy", "dockhand"]
HANDSHAKE_HEADER = ["peer", "connections/s", "CPU µs/connection", "CPU vs nginx"]
# The goal: at most 0.8x nginx's CPU per full and per resumed handshake.
HANDSHAKE_GOAL = 0.8


def parse_s_time(output):
    """The connection count of an `openssl s_time` run ("N connections in T real seconds")."""
    m = re.search(r"(\d+) connections in \d+ real seconds", output)
    if not m:
        m = re.search(r"(\d+) connections in [\d.]+s", output)
    return int(m.group(1)) if m else None


def handshake_rows(table, mode):
    """Rows of the handshake table for `mode` ("new" or "reuse"): peers with their figures
    and the CPU ratio to nginx."""
    cell = table.get(mode, {})
    ref = cell.get("nginx") if isinstance(cell.get("nginx"), dict) else {}
    rows = []
    for name in HANDSHAKE_PEERS:
        s = cell.get(name)
        if s is None:
            continue
        if isinstance(s, str):
            rows.append([name, s, "", ""])
            continue
        rows.append([name, fmt_num(s.get("conns_per_s")), fmt_num(s.get("cpu_us")),
                     fmt_ratio(ratio(s.get("cpu_us"), ref.get("cpu_us")))])
    return rows


def handshake_goals(table):
    """(goal, measured, verdict) rows: Dockhand's CPU per new connection against nginx's."""
    out = []
    for mode, what in HANDSHAKE_MODES:
        cell = table.get(mode, {})
        d, n = cell.get("dockhand"), cell.get("nginx")
        if not isinstance(d, dict) or not isinstance(n, dict):
            out.append((f"CPU per {what[:-1]} ≤ {HANDSHAKE_GOAL}× nginx", "—", "not measured"))
            continue
        r = ratio(d.get("cpu_us"), n.get("cpu_us"))
        out.append((f"CPU per {what[:-1]} ≤ {HANDSHAKE_GOAL}× nginx",
                    _fmt_cmp(d.get("cpu_us"), n.get("cpu_us"), r, "µs", "nginx"),
                    verdict(None if r is None else r <= HANDSHAKE_GOAL)))
    return out


# backups


def parse_cgroup_cpu_s(name, text):
    """CPU seconds from a cgroup file: v2 `cpu.stat` (`usage_usec N`) or v1 `cpuacct.usage`
    (nanoseconds). None when the text holds neither."""
    if name == "cpu.stat":
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "usage_usec":
                return int(parts[1]) / 1e6
        return None
    try:
        return int(text.strip()) / 1e9
    except ValueError:
        return None


def throughput_mib_s(db_bytes, seconds):
    """The database's size over the wall time, MiB/s; None without a time."""
    if db_bytes is None or not seconds:
        return None
    return db_bytes / (1 << 20) / seconds


def backup_summary(runs):
    """Medians of interleaved backup runs, per scale and tool.

    `runs` is a list of dicts: scale, tool (`dockhand` or `pg_dump | zstd`), seconds, cpu_s
    (None if unknown), db_bytes, and for dockhand rss_peak_kib; also restore runs with tool
    `dockhand restore` or `pg_restore`. Returns `{scale: {tool: summary}}`.
    """
    grouped = {}
    for r in runs:
        grouped.setdefault(r["scale"], {}).setdefault(r["tool"], []).append(r)
    out = {}
    for scale, tools in grouped.items():
        out[scale] = {}
        for tool, rs in tools.items():
            secs = median([r["seconds"] for r in rs])
            cpus = [r["cpu_s"] for r in rs if r.get("cpu_s") is not None]
            rss = [r["rss_peak_kib"] for r in rs if r.get("rss_peak_kib") is not None]
            out[scale][tool] = {
                "seconds": secs,
                "cpu_s": median(cpus) if cpus else None,
                "db_bytes": rs[0].get("db_bytes"),
                "mib_s": throughput_mib_s(rs[0].get("db_bytes"), secs),
                "rss_peak_kib": max(rss) if rss else None,
                "stored_bytes": rs[0].get("stored_bytes"),
            }
    return out


BACKUP_HEADER = ["scale", "database", "tool", "wall", "throughput", "CPU", "stored",
                 "agent peak RSS (anonymous)"]


def backup_rows(summary):
    """Table rows: per scale, the shell pipeline then Dockhand, then the restores."""
    rows = []
    order = ["pg_dump | zstd", "dockhand", "pg_restore", "dockhand restore"]
    for scale in sorted(summary):
        tools = summary[scale]
        for tool in order:
            s = tools.get(tool)
            if not s:
                continue
            rows.append([
                str(scale),
                "—" if s["db_bytes"] is None else f"{s['db_bytes'] / (1 << 20):.0f} MiB",
                tool,
                f"{s['seconds']:.2f} s",
                "—" if s["mib_s"] is None else f"{s['mib_s']:.1f} MiB/s",
                "—" if s["cpu_s"] is None else f"{s['cpu_s']:.2f} s",
                fmt_bytes(s.get("stored_bytes")),
                "—" if s["rss_peak_kib"] is None else f"{s['rss_peak_kib'] / 1024:.1f} MiB",
            ])
    return rows


def backup_goals(summary):
    """The issue's backup goals: throughput ≥ 0.9× `pg_dump -Fc | zstd` at the largest scale,
    and the agent's peak RSS at the largest scale within 10 % of the smallest's."""
    goals = []
    if not summary:
        return [("backup throughput ≥ 0.9× pg_dump -Fc | zstd", "—", "not measured"),
                ("agent peak RSS independent of the database size (±10 %)", "—",
                 "not measured")]
    big, small = max(summary), min(summary)
    dh = summary[big].get("dockhand")
    shell = summary[big].get("pg_dump | zstd")
    r = ratio(dh and dh["mib_s"], shell and shell["mib_s"])
    goals.append((f"backup throughput ≥ 0.9× pg_dump -Fc | zstd (scale {big})",
                  fmt_ratio(r), verdict(None if r is None else r >= 0.9)))
    a = summary[small].get("dockhand", {}).get("rss_peak_kib")
    b = summary[big].get("dockhand", {}).get("rss_peak_kib")
    if a and b and big != small:
        change = (b - a) / a
        goals.append((f"agent peak RSS independent of the database size (scale {small} vs "
                      f"{big}, ±10 %)", f"{a / 1024:.1f} → {b / 1024:.1f} MiB ({change:+.0%})",
                      verdict(abs(change) <= 0.10)))
    else:
        goals.append(("agent peak RSS independent of the database size (±10 %)", "—",
                      "not measured"))
    restore = summary[big].get("dockhand restore")
    plain = summary[big].get("pg_restore")
    r = ratio(restore and restore["seconds"], plain and plain["seconds"])
    goals.append((f"restore time against pg_restore of the same dump (scale {big})",
                  fmt_ratio(r), "reported"))
    return goals


# remote: registry-less image transfer and the SSH round trip (issue 21)


def fmt_bytes(n):
    """`812 B`, `4.2 KiB`, `31.4 MiB`."""
    if n is None:
        return "—"
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


def summarize_remote(rounds):
    """Medians of the remote stage's rounds.

    Each round is a dict: `deploy_bytes` and `deploy_ms` (dockhand's second deploy: bytes
    over SSH and wall time), `save_bytes` and `save_ms` (`docker save | ssh docker load` of
    the same image). Returns the medians and the bytes ratio (deploy / save).
    """
    out = {}
    for key in ("deploy_bytes", "deploy_ms", "save_bytes", "save_ms"):
        out[key] = median([r.get(key) for r in rounds])
    out["bytes_ratio"] = ratio(out["deploy_bytes"], out["save_bytes"])
    out["time_ratio"] = ratio(out["deploy_ms"], out["save_ms"])
    return out


def remote_goals(summary):
    """Issue 21: a second deploy after a one-line change sends at most 10% of the bytes of
    `docker save | ssh docker load` of the same image (its wall time is reported beside)."""
    name = ("second deploy after a one-line change: ≤ 10% of the bytes of "
            "`docker save | ssh docker load`")
    if not isinstance(summary, dict) or summary.get("bytes_ratio") is None:
        return [(name, summary if isinstance(summary, str) else "—", "not measured")]
    r = summary["bytes_ratio"]
    measured = (f"{fmt_bytes(summary['deploy_bytes'])} vs {fmt_bytes(summary['save_bytes'])} "
                f"({r * 100:.2f}%); wall time {fmt_num(summary['deploy_ms'])} ms vs "
                f"{fmt_num(summary['save_ms'])} ms")
    return [(name, measured, verdict(r <= 0.10))]


# ---------------------------------------------------------------------------------------------
# static files


def static_goals(table):
    """The static stage's goals: `table[case][peer]` is a summary (cpu_us, rps, mib_s) or a
    string. 1 KB and 100 KB: CPU per request at most nginx's; 1 MB: at least 0.9x nginx's
    throughput; gzip: CPU per request reported against nginx's (no goal)."""
    rows = []

    def get(case, peer, key):
        v = table.get(case, {}).get(peer)
        return v.get(key) if isinstance(v, dict) else None

    for case in ("1 KB", "100 KB"):
        d, n = get(case, "dockhand", "cpu_us"), get(case, "nginx", "cpu_us")
        r = ratio(d, n)
        rows.append((f"{case} file, CPU per request at most nginx's",
                     _fmt_cmp(d, n, r, "µs", "nginx"),
                     verdict(None if r is None else r <= 1.0)))
    d, n = get("1 MB", "dockhand", "mib_s"), get("1 MB", "nginx", "mib_s")
    r = ratio(d, n)
    rows.append(("1 MB file, throughput at least 0.9× nginx's",
                 _fmt_cmp(d, n, r, "MiB/s", "nginx"),
                 verdict(None if r is None else r >= 0.9)))
    d, n = get("gzip 100 KB JSON", "dockhand", "cpu_us"), get("gzip 100 KB JSON", "nginx",
                                                              "cpu_us")
    rows.append(("gzip of a 100 KB JSON file, CPU per request (reported)",
                 _fmt_cmp(d, n, ratio(d, n), "µs", "nginx"), "reported"))
    return rows


def static_rows(table, peers):
    """One row per (case, peer): req/s, MiB/s, CPU µs per request, p99."""
    rows = []
    for case, by_peer in table.items():
        for peer in peers:
            s = by_peer.get(peer)
            if s is None:
                continue
            if isinstance(s, str):
                rows.append([case, peer, s, "", "", ""])
                continue
            rows.append([case, peer, fmt_num(s.get("rps")), fmt_num(s.get("mib_s"), 1),
                         fmt_num(s.get("cpu_us"), 1), fmt_latency(s.get("p99_us"))])
    return rows


# ---------------------------------------------------------------------------------------------
# GitOps: the push-to-serving split and the cost of a check (issue 22)

# The parts of the agent's side of an update that the split reports, from the check's `steps`.
UPDATE_PARTS = ("check", "fetch", "build", "gate", "swap")
UPDATE_POLL_CPU_MS = 50


def step_totals(steps, kinds=UPDATE_PARTS):
    """Milliseconds per step kind from a report's `steps` (`[{"step", "duration_ms"}]`): a kind
    that ran more than once (two gates, two images) is added up, one that did not run is 0."""
    out = {k: 0 for k in kinds}
    for s in steps or []:
        if s.get("step") in out:
            out[s["step"]] += s.get("duration_ms") or 0
    return out


def push_split(rounds):
    """Medians over the update stage's rounds: the push-to-serving and webhook-to-serving times,
    each part of `UPDATE_PARTS` (from `round["steps"]`), and `rest`, what the parts leave of the
    webhook-to-serving time (the webhook's handling, the new instance's start, the commit, the
    config load, the 20 ms polling of the answer; never below 0)."""
    out = {"push_to_serving_ms": median([r.get("push_to_serving_ms") for r in rounds]),
           "hook_to_serving_ms": median([r.get("hook_to_serving_ms") for r in rounds])}
    rests = []
    for part in UPDATE_PARTS:
        out[part] = median([(r.get("steps") or {}).get(part) for r in rounds
                            if r.get("steps") is not None])
    for r in rounds:
        steps = r.get("steps")
        if steps is None or r.get("hook_to_serving_ms") is None:
            continue
        rests.append(max(0.0, r["hook_to_serving_ms"] - sum(steps.get(p, 0) for p in UPDATE_PARTS)))
    out["rest"] = median(rests)
    return out


def update_goals(unchanged):
    """Issue 22: a poll of an unchanged remote writes nothing to disk and costs under 50 ms of
    CPU (the agent's own and the `git ls-remote` it runs). `unchanged` is the update stage's
    `unchanged_check` (or a string saying why it is missing)."""
    write_goal = "a poll of an unchanged remote writes nothing to disk"
    cpu_goal = f"a poll of an unchanged remote costs under {UPDATE_POLL_CPU_MS} ms of CPU"
    if not isinstance(unchanged, dict):
        why = unchanged if isinstance(unchanged, str) else "—"
        return [(write_goal, why, "not measured"), (cpu_goal, why, "not measured")]
    written, changed = unchanged.get("written_bytes"), unchanged.get("files_changed")
    wrote = None if written is None or changed is None else (written == 0 and changed == 0)
    cpu = unchanged.get("cpu_ms_per_check")
    return [
        (write_goal,
         f"{written} bytes written by the agent, {changed} file(s) changed in the project "
         f"and state directories over {unchanged.get('checks')} checks", verdict(wrote)),
        (cpu_goal,
         f"{fmt_num(cpu, 1)} ms per check (the agent {fmt_num(unchanged.get('agent_cpu_ms_per_check'), 1)} ms, "
         f"`git ls-remote` the rest)",
         verdict(None if cpu is None else cpu < UPDATE_POLL_CPU_MS)),
    ]


# ---------------------------------------------------------------------------------------------
# per-route metrics on and off (issue 20)

METRICS_GOAL = 1.03


def metrics_summary(on_runs, off_runs):
    """Medians of the runs with `[monitor] proxy_metrics` on and off, and the CPU ratio on/off."""
    on, off = summarize(on_runs), summarize(off_runs)
    return {"on": on, "off": off, "cpu_ratio": ratio(on.get("cpu_us"), off.get("cpu_us")),
            "rounds": min(len(on_runs), len(off_runs))}


def metrics_rows(summary, names=("`proxy_metrics = false`", "`proxy_metrics = true` (default)")):
    """An on/off stage's table (the metrics stage's by default): one row per side (named by
    `names`, off then on), then the ratio on/off."""
    rows = []
    for side, name in zip(("off", "on"), names):
        s = summary.get(side) or {}
        rows.append([name, fmt_num(s.get("rps")), fmt_num(s.get("cpu_us"), 2),
                     fmt_latency(s.get("p99_us"))])
    on, off = summary.get("on") or {}, summary.get("off") or {}
    cpu = summary.get("cpu_ratio")
    rows.append(["on / off", fmt_ratio(ratio(on.get("rps"), off.get("rps"))),
                 "—" if cpu is None else f"{cpu:.3f}×",
                 fmt_ratio(ratio(on.get("p99_us"), off.get("p99_us")))])
    return rows


IDLE_RSS_GOAL_KIB = 20_000_000 / 1024  # 20 MB
IDLE_CPU_GOAL_PCT = 0.5


def idle_goals(idle):
    """Issue 20: the idle agent with the bundled example and monitoring on at most 20 MB
    resident and under 0.5 % of a core."""
    rss_name = "the idle agent (monitoring on) at most 20 MB resident"
    cpu_name = "the idle agent (monitoring on) under 0.5 % of a core"
    if not isinstance(idle, dict) or "rss_kib" not in idle:
        why = idle if isinstance(idle, str) else (idle or {}).get("skipped", "—")
        return [(rss_name, why, "not measured"), (cpu_name, why, "not measured")]
    rss = idle["rss_kib"]
    split = ""
    if idle.get("rss_anon_kib") is not None:
        split = (f" ({idle['rss_anon_kib'] / 1024:.1f} MiB anonymous, "
                 f"{idle['rss_file_kib'] / 1024:.1f} MiB file)")
    return [(rss_name, f"{rss * 1024 / 1e6:.1f} MB{split}", verdict(rss <= IDLE_RSS_GOAL_KIB)),
            (cpu_name, f"{idle['cpu_pct']:.2f}%", verdict(idle["cpu_pct"] < IDLE_CPU_GOAL_PCT))]


def metrics_goals(summary):
    """Issue 20: proxy CPU per request with per-route metrics on at most 1.03x the figure with
    them off (HTTP, 64 keep-alive connections)."""
    return on_off_goal(summary, "proxy CPU per request with per-route metrics on ≤ "
                       f"{METRICS_GOAL:.2f}× off (HTTP @ 64)", METRICS_GOAL)


def on_off_goal(summary, name, limit):
    """The goal row of an on/off stage: CPU per request on at most `limit` times off."""
    if not isinstance(summary, dict) or summary.get("cpu_ratio") is None:
        return [(name, summary if isinstance(summary, str) else "—", "not measured")]
    r = summary["cpu_ratio"]
    measured = (f"{fmt_num(summary['on'].get('cpu_us'), 2)} µs vs "
                f"{fmt_num(summary['off'].get('cpu_us'), 2)} µs ({r:.3f}×)")
    return [(name, measured, verdict(r <= limit))]


POLICIES_GOAL = 1.10


def policies_goals(summary):
    """Issue 17: with rate limiting and the access log on, proxy CPU per request at most 1.1x
    the figure with them off."""
    return on_off_goal(summary, "proxy CPU per request with a rate limit and the access log on "
                       f"≤ {POLICIES_GOAL:.1f}× off (HTTP @ 64, issue 17)", POLICIES_GOAL)


# ---------------------------------------------------------------------------------------------
# Swarm cluster (issue 24)


def cluster_overlay_summary(runs):
    """The ingress's cost of a hop over the overlay, from `dockhand-swarm-bench`'s `overlay`
    runs: each has `target` ("local": the task on the ingress's node, "remote": on another
    node), `wrk` (its `--latency` output), `ingress_cpu_ns` and `task_cpu_ns` (the cgroup CPU
    time of the ingress container and of the task's over the run).

    Returns, per target, the medians of rps, p50/p99 (µs), the ingress's and the task's CPU µs
    per request, the number of runs and the failed requests in all; and `ratio`, remote over
    local, of the ingress's CPU per request, p99 and rps.
    """
    out = {}
    for target in ("local", "remote"):
        rows = []
        for r in runs:
            if r.get("target") != target:
                continue
            w = parse_wrk(r["wrk"])
            n = w["requests"]
            rows.append({
                "rps": w["rps"],
                "p50_us": w.get("p50_us"),
                "p99_us": w.get("p99_us"),
                "ingress_cpu_us": r["ingress_cpu_ns"] / 1000 / n if n else None,
                "task_cpu_us": r["task_cpu_ns"] / 1000 / n if n else None,
                "errors": w["errors"],
            })
        if not rows:
            out[target] = None
            continue
        s = {k: median([row[k] for row in rows])
             for k in ("rps", "p50_us", "p99_us", "ingress_cpu_us", "task_cpu_us")}
        s["runs"] = len(rows)
        s["errors"] = sum(row["errors"] for row in rows)
        out[target] = s
    loc, rem = out["local"] or {}, out["remote"] or {}
    out["ratio"] = {k: ratio(rem.get(k), loc.get(k))
                    for k in ("ingress_cpu_us", "p99_us", "rps", "task_cpu_us")}
    return out


def cluster_deploy_summary(deploys):
    """Medians over `dockhand-swarm-bench`'s `deploys`: each has `command_ms` (the deploy
    command's wall time), `all_nodes_ms` (from its start until the last ingress node answered
    only the new release) and `nodes` {hostname: {serving_ms, first_new_ms}}."""
    nodes = sorted({h for d in deploys for h in d.get("nodes", {})})
    all_ms = [d.get("all_nodes_ms") for d in deploys]
    return {
        "deploys": len(deploys),
        "command_ms": median([d.get("command_ms") for d in deploys]),
        "all_nodes_ms": median(all_ms),
        "all_nodes_max_ms": max((v for v in all_ms if v is not None), default=None),
        "nodes": {h: {k: median([d["nodes"].get(h, {}).get(k) for d in deploys])
                      for k in ("serving_ms", "first_new_ms")} for h in nodes},
    }


def cluster_dead_summary(dead):
    """The dead-node run as reported, with, for each kind of client (`new_connections`: a
    connection per request, each routed anew; `keep_alive`), `stopped_ms`: when the ingress
    last routed one of its requests to the dead node's task, by failure or by answer (the later
    of its last failed request and its last answer from that node), None when neither happened
    after the kill; and over both kinds, `failed_after_kill` and `stopped_ms`."""
    out = dict(dead)
    stops, failed = [], 0
    for kind in ("new_connections", "keep_alive"):
        k = dict(dead.get(kind) or {})
        times = [t for t in (k.get("last_failure_ms"), k.get("last_w1_answer_ms"))
                 if t is not None]
        k["stopped_ms"] = max(times) if times else None
        failed += k.get("failed_after_kill", 0)
        if k["stopped_ms"] is not None:
            stops.append(k["stopped_ms"])
        out[kind] = k
    out["failed_after_kill"] = failed
    out["stopped_ms"] = max(stops) if stops else None
    return out


CLUSTER_OVERLAY_HEADER = ["task", "requests/s", "p50", "p99", "ingress CPU µs/request",
                          "task CPU µs/request", "failed"]


def cluster_overlay_rows(summary):
    """The overlay table: the task on the ingress's node, over the overlay, and the ratio."""
    names = {"local": "on the ingress's node (m1)", "remote": "on another node (w1), over the overlay"}
    rows = []
    for target in ("local", "remote"):
        s = summary.get(target)
        if not s:
            rows.append([names[target], "—", "—", "—", "—", "—", "—"])
            continue
        rows.append([names[target], fmt_num(s["rps"]), fmt_latency(s["p50_us"]),
                     fmt_latency(s["p99_us"]), fmt_num(s["ingress_cpu_us"]),
                     fmt_num(s["task_cpu_us"]), str(s["errors"])])
    r = summary.get("ratio", {})
    rows.append(["over the overlay / on its node", fmt_ratio(r.get("rps")), "",
                 fmt_ratio(r.get("p99_us")), fmt_ratio(r.get("ingress_cpu_us")),
                 fmt_ratio(r.get("task_cpu_us")), ""])
    return rows


# The capacity figures (issue 24 item 7; docs/capacity.md is built on them)

# The engine's processes on a node, by command name (`/proc/PID/comm`, 15 bytes at most).
ENGINE_PROCS = ("dockerd", "containerd", "containerd-shim")


def _mib(kib):
    return None if kib is None else kib / 1024


def _pct(group, seconds):
    """A group's CPU time over a window as a share of one core, in %."""
    cpu = (group or {}).get("cpu_ms")
    if cpu is None or not seconds:
        return None
    return cpu / (seconds * 1000) * 100


def _group(node, kind, name):
    return ((node or {}).get(kind) or {}).get(name) or {}


def node_role(hostname):
    """The fixture's hostnames say the role: `m1`… managers, `w1`… workers."""
    return "manager" if hostname.startswith("m") else "worker"


def capacity_footprint(window):
    """Per node of an idle window (`capacity.rs`'s `window`): the engine's processes' and the
    containers' memory (MiB) at its end and CPU (% of a core) over it. `tasks` sums every
    container but the ingress."""
    secs = window.get("seconds") or 0
    out = {}
    for host, node in sorted((window.get("nodes") or {}).items()):
        row = {"role": node_role(host)}
        for name in ENGINE_PROCS:
            g = _group(node, "engine", name)
            row[name] = {"count": g.get("count", 0), "rss_mib": _mib(g.get("rss_kib")),
                         "anon_mib": _mib(g.get("anon_kib")), "cpu_pct": _pct(g, secs)}
        ing = _group(node, "containers", "ingress")
        row["ingress"] = {"count": ing.get("count", 0), "rss_mib": _mib(ing.get("rss_kib")),
                          "anon_mib": _mib(ing.get("anon_kib")),
                          "file_mib": _mib(ing.get("file_kib")), "cpu_pct": _pct(ing, secs)}
        tasks = [g for n, g in (node.get("containers") or {}).items() if n != "ingress"]
        row["tasks"] = {"count": sum(g.get("count", 0) for g in tasks),
                        "rss_mib": _mib(sum(g.get("rss_kib", 0) for g in tasks))}
        engine = [_group(node, "engine", n) for n in ENGINE_PROCS]
        row["platform_mib"] = _mib(sum(g.get("rss_kib", 0) for g in engine)
                                   + ing.get("rss_kib", 0))
        row["platform_pss_mib"] = _mib(sum(g.get("pss_kib", 0) for g in engine)
                                       + ing.get("pss_kib", 0))
        cpus = [_pct(g, secs) for g in engine + [ing]]
        row["platform_cpu_pct"] = sum(c for c in cpus if c is not None)
        out[host] = row
    return out


def raft_growth(samples):
    """The Raft store and configs after each release (`capacity.rs`'s `raft` samples, the
    first taken before any release): the medians over consecutive releases of what one more
    release added (configs, their data, WAL bytes written, the manager's dockerd RSS), and
    the last sample."""
    rel = [s for s in samples if s.get("after") != "no release"]
    deltas = {k: [] for k in ("configs", "config_bytes", "wal_written_bytes",
                              "dockerd_rss_kib")}
    for a, b in zip(rel, rel[1:]):
        for k in deltas:
            if a.get(k) is not None and b.get(k) is not None:
                deltas[k].append(b[k] - a[k])
    return {
        "releases": len(rel),
        "per_release": {k: median(v) for k, v in deltas.items()},
        "last": samples[-1] if samples else {},
        "first": samples[0] if samples else {},
    }


def scale_steps(steps, service="spread"):
    """Per scale step with a window: replicas, time to converge, and on the nodes that ran the
    service's tasks their count, the tasks' memory, the shims', dockerd's and containerd's;
    the CPU of the workers' engine and tasks and of every ingress over the window. Then per
    added replica, from the first step to the last: the memory (tasks, shims, engine) and CPU
    each one added, and the ingress's CPU per probe (each ingress probes each routed task once
    a second: `dockhand ingress --interval-ms 1000`). The nodes counted are the same at every
    step: those that ran the service's tasks at any step (start-first updates may have left
    all of them on one node before the first step)."""
    hosts = sorted({h for st in steps for h, node in ((st.get("window") or {}).get("nodes")
                                                      or {}).items()
                    if (node.get("containers") or {}).get(service)})
    rows = []
    for st in steps:
        w = st.get("window")
        if not w:
            continue
        secs = w.get("seconds") or 0
        nodes = w.get("nodes") or {}
        row = {"replicas": st["replicas"], "converge_ms": st.get("converge_ms"), "seconds": secs,
               "per_node": {}, "tasks_mib": 0.0, "shims_mib": 0.0, "engine_mib": 0.0,
               "tasks_pss_mib": 0.0, "shims_pss_mib": 0.0, "engine_pss_mib": 0.0,
               "workload_cpu_pct": 0.0, "ingress_cpu_pct": 0.0, "ingress_nodes": 0,
               "routed_tasks": 0}
        for host, node in sorted(nodes.items()):
            ing = _group(node, "containers", "ingress")
            if ing:
                row["ingress_nodes"] += 1
                row["ingress_cpu_pct"] += _pct(ing, secs) or 0.0
            task_groups = {n: g for n, g in (node.get("containers") or {}).items()
                           if n != "ingress"}
            row["routed_tasks"] += sum(g.get("count", 0) for g in task_groups.values())
            if host not in hosts:
                continue
            row["per_node"][host] = (task_groups.get(service) or {}).get("count", 0)
            shim = _group(node, "engine", "containerd-shim")
            engine = [_group(node, "engine", n) for n in ("dockerd", "containerd")]
            for unit, key in (("rss_kib", ""), ("pss_kib", "_pss")):
                row[f"tasks{key}_mib"] += _mib(sum(g.get(unit, 0) for g in task_groups.values()))
                row[f"shims{key}_mib"] += _mib(shim.get(unit, 0))
                row[f"engine{key}_mib"] += _mib(sum(g.get(unit, 0) for g in engine))
            for g in engine + [shim] + list(task_groups.values()):
                row["workload_cpu_pct"] += _pct(g, secs) or 0.0
        rows.append(row)
    per = {}
    if len(rows) >= 2 and rows[-1]["replicas"] != rows[0]["replicas"]:
        a, b = rows[0], rows[-1]
        n = b["replicas"] - a["replicas"]
        for k in ("tasks_mib", "shims_mib", "engine_mib", "tasks_pss_mib", "shims_pss_mib",
                  "engine_pss_mib", "workload_cpu_pct"):
            per[k] = (b[k] - a[k]) / n
        per["total_mib"] = per["tasks_mib"] + per["shims_mib"] + per["engine_mib"]
        per["total_pss_mib"] = (per["tasks_pss_mib"] + per["shims_pss_mib"]
                                + per["engine_pss_mib"])
        probes = (b["routed_tasks"] - a["routed_tasks"]) * b["ingress_nodes"]
        # % of a core over probes per second → CPU µs per probe (1 % of a core = 10 ms/s).
        per["ingress_us_per_probe"] = ((b["ingress_cpu_pct"] - a["ingress_cpu_pct"]) * 10_000
                                       / probes if probes else None)
    return {"steps": rows, "per_replica": per}


def idle_agent_figures(doc):
    """The single-host idle agent's RSS and its anonymous and file parts (MiB) from the
    "Idle agent" section of a BENCHMARKS.md, or None: the peer of the cluster's ingress."""
    import re
    lines = doc.split("\n")
    try:
        i = lines.index("## Idle agent with the bundled example")
    except ValueError:
        return None
    for line in lines[i + 1:]:
        if line.startswith("## "):
            return None
        m = re.match(r"\|\s*([\d.]+) MiB\s*\|\s*([\d.]+) / ([\d.]+) MiB\s*\|", line)
        if m:
            return {"rss_mib": float(m.group(1)), "anon_mib": float(m.group(2)),
                    "file_mib": float(m.group(3))}
    return None


def cluster_goals(cl):
    """Issue 24's benchmark figures as rows of the goals table: reported, no goal named."""
    names = ("ingress CPU per request and p99, a task on another node over the overlay vs on "
             "the ingress's node (issue 24)",
             "`dockhand deploy` to every node's ingress serving the new release, 3 nodes "
             "(issue 24)",
             "the ingress stops routing to a dead node's tasks (issue 24)")
    if not isinstance(cl, dict):
        return [(n, cl if isinstance(cl, str) else "—", "not measured") for n in names]
    ov, dp, dn = cl["overlay"], cl["deploys"], cl["dead_node"]
    r = ov["ratio"]
    rows = [(names[0], f"CPU {fmt_ratio(r['ingress_cpu_us'])}, p99 {fmt_ratio(r['p99_us'])}",
             "reported")]
    rows.append((names[1], f"{fmt_num(dp['all_nodes_ms'])} ms median of {dp['deploys']} "
                           f"(the command {fmt_num(dp['command_ms'])} ms)", "reported"))
    if not dn.get("served_by_w1_before", True):
        rows.append((names[2], "the ingress routed nothing to the node's task before the kill",
                     "not measured"))
        return rows
    if dn.get("stopped_ms") is None:
        measured = f"no request routed to it after the kill; {dn['failed_after_kill']} failed"
    else:
        measured = (f"{fmt_num(dn['stopped_ms'])} ms after the kill, "
                    f"{dn['failed_after_kill']} failed request(s)")
    rows.append((names[2], measured, "reported"))
    return rows
