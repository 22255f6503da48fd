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
