"""The pure parts of the soak stage and of the fuzzing section: the soak's schedule, the
flat-or-growing verdict per sampled series, the classification of failed requests by what
happened during their time window, the SVG plots (written here, no plotting dependency),
the parser of `scripts/fuzz`'s summary, and the BENCHMARKS.md sections with the splice that
lets `bench/run --only soak` replace its own sections and keep the rest of the file.

Nothing here starts a process or touches a file: `bench/test_soaklib.py` checks it with plain
data; `bench/soakrun.py` does the I/O.
"""

import html
import math
import re
import statistics

# ---------------------------------------------------------------------------------------------
# the schedule

DEPLOY, ROLLBACK, FAILING, RESTART = "deploy", "rollback", "failing release", "agent restart"


def soak_schedule(minutes, interval=60.0):
    """The actions of a soak run of `minutes`, as `(seconds from the start, action)` sorted by
    time: a deploy every `interval` (the 10th, 20th, … is a failing release instead), a
    rollback half an interval after every 5th, and the agent restarted once, three quarters of
    an interval after the interval nearest the middle. Nothing is scheduled in the last quarter
    interval, so the last action's effect is sampled."""
    total = minutes * 60.0
    out = []
    k = 1
    while k * interval <= total - interval / 4:
        out.append((k * interval, FAILING if k % 10 == 0 else DEPLOY))
        if k % 5 == 0 and k * interval + interval / 2 <= total - interval / 4:
            out.append((k * interval + interval / 2, ROLLBACK))
        k += 1
    middle = max(1, round(total / 2 / interval))
    restart = middle * interval + 0.75 * interval
    if restart > total - interval / 4:
        restart = total / 2
    out.append((restart, RESTART))
    return sorted(out)


# ---------------------------------------------------------------------------------------------
# failed requests by window

# When a window overlaps several events, the first of these names it.
CLASS_ORDER = (FAILING, RESTART, ROLLBACK, DEPLOY)
STEADY = "no action"


def classify_windows(windows, events, slack=1.0):
    """Which action each load window's failures belong to.

    `windows`: dicts with `t0`, `t1` (seconds from the start) and `failed` (and any other
    keys); `events`: dicts with `kind` (one of `CLASS_ORDER`), `t0`, `t1`. A window belongs
    to the first kind in `CLASS_ORDER` of any event it overlaps, widened by `slack` seconds
    on both sides (a request in flight at the event's edge), else to `STEADY`. Returns
    `(windows, totals)`: copies of the windows with `class` set, and failed requests per
    class (every class present, zeros included)."""
    out = []
    totals = {k: 0 for k in CLASS_ORDER + (STEADY,)}
    for w in windows:
        kinds = {e["kind"] for e in events
                 if w["t0"] < e["t1"] + slack and w["t1"] > e["t0"] - slack}
        cls = next((k for k in CLASS_ORDER if k in kinds), STEADY)
        w = dict(w, **{"class": cls})
        totals[cls] += w.get("failed", 0)
        out.append(w)
    return out, totals


def failure_goal(totals):
    """`(failed outside the failing releases' gates, of them during the agent's restart)`."""
    outside = sum(v for k, v in totals.items() if k != FAILING)
    return outside, totals.get(RESTART, 0)


# ---------------------------------------------------------------------------------------------
# flat, growing or levelled off

# A series grows when its robust slope, over an hour, is at least this share of its level
# and the later samples are mostly above the earlier ones (Kendall's tau at least MIN_TAU).
GROWTH_PER_HOUR = 0.05
MIN_TAU = 0.3
MIN_PAIRS = 10


def segments(samples):
    """Consecutive runs of samples with the same agent `pid` (one per agent lifetime)."""
    out = []
    for s in samples:
        if out and out[-1][0]["pid"] == s["pid"]:
            out[-1].append(s)
        else:
            out.append([s])
    return out


def warmup_seconds(run_seconds, default=120.0):
    """The warm-up left out of each lifetime: two minutes, or a fifth of a shorter run."""
    return min(default, run_seconds / 5)


def kept_groups(samples, key, per_process, warmup):
    """The samples a verdict pairs, as groups whose pairs count: for a series of the agent
    process (`per_process`), one group per agent lifetime, each after its own warm-up; for a
    series on disk, one group spanning the restart, after the first lifetime's warm-up only.
    Samples without `key` are left out."""
    groups = []
    for i, seg in enumerate(segments([s for s in samples if s.get(key) is not None])):
        t_start = seg[0]["t"]
        if per_process or i == 0:
            kept = [s for s in seg if s["t"] - t_start >= warmup]
        else:
            kept = list(seg)
        if per_process:
            groups.append(kept)
        elif groups:
            groups[0].extend(kept)
        else:
            groups.append(kept)
    return groups


def last_half(groups, per_process):
    """The later half of `kept_groups`' groups: of each lifetime's kept samples for a series of
    the agent process (the later half by count), of the kept time span for one on disk (the
    samples from its middle on)."""
    if per_process:
        return [g[len(g) // 2:] for g in groups]
    out = []
    for g in groups:
        if not g:
            out.append([])
            continue
        middle = (g[0]["t"] + g[-1]["t"]) / 2
        out.append([s for s in g if s["t"] >= middle])
    return out


def trend(groups, key):
    """The Theil–Sen slope over the pairs within each group, and the flat-or-growing rule on
    it. Returns a dict: verdict (`flat`, `growing` or `too few samples`), slope_per_hour,
    level (the median value), growth_per_hour (slope over level), tau (Kendall's: the share
    of pairs going up minus those going down), pairs; the numbers are None with fewer than
    MIN_PAIRS pairs."""
    slopes = []
    up = down = 0
    for g in groups:
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                dt = g[j]["t"] - g[i]["t"]
                if dt <= 0:
                    continue
                dv = g[j][key] - g[i][key]
                slopes.append(dv / dt)
                up += dv > 0
                down += dv < 0
    if len(slopes) < MIN_PAIRS:
        return {"verdict": "too few samples", "slope_per_hour": None, "level": None,
                "growth_per_hour": None, "tau": None, "pairs": len(slopes)}
    slope = statistics.median(slopes) * 3600
    level = statistics.median(s[key] for g in groups for s in g)
    tau = (up - down) / len(slopes)
    growth = slope / level if level else (math.inf if slope > 0 else 0.0)
    growing = slope > 0 and tau >= MIN_TAU and growth >= GROWTH_PER_HOUR
    return {"verdict": "growing" if growing else "flat", "slope_per_hour": slope,
            "level": level, "growth_per_hour": growth, "tau": tau, "pairs": len(slopes)}


def series_verdict(samples, key, per_process, warmup):
    """Flat, growing or levelled off, for one sampled series.

    `samples`: dicts with `t` (seconds), `pid` (the agent's) and `key`. The slope is the
    Theil–Sen estimator, the median of the slopes of all pairs of samples, taken after the
    warm-up (`warmup` seconds) — and, for a series of the agent process (`per_process`:
    memory, descriptors, threads), only over pairs within one agent lifetime, each after its
    own warm-up: a restarted agent starts small again, and a pair across the restart would
    compare a young process with an old one. A series on disk (database, logs) survives the
    restart, so its pairs span it, after the first warm-up only (`kept_groups`).

    A series growing over the whole run is judged again on its last half (`last_half`): a
    fill that stops at a ceiling (SQLite's WAL reaching its checkpoint size, log files
    reaching their retention) grows over the whole run but is flat at its end — `levelled
    off`; a leak still grows there — `growing`. With too few pairs in the last half the
    whole run's `growing` stands (`last_half` then says `too few samples`).

    Returns a dict: verdict (`flat`, `growing`, `levelled off` or `too few samples`),
    slope_per_hour (the series' unit per hour), level (the median after warm-up),
    growth_per_hour (slope over level), tau, pairs, first/last (values after warm-up),
    last_half (`trend`'s dict for the last half, computed whatever the whole run's verdict),
    and for a per-process series `like_with_like`: the values of the first and the second
    lifetime at the same age (the second one's last sample's), or None with one lifetime."""
    groups = kept_groups(samples, key, per_process, warmup)
    whole = trend(groups, key)
    late = trend(last_half(groups, per_process), key)
    kept = [s for g in groups for s in g]
    out = {"pairs": whole["pairs"], "like_with_like": None, "last_half": late}
    if per_process:
        out["like_with_like"] = like_with_like(samples, key)
    if whole["verdict"] == "too few samples":
        out.update(verdict="too few samples", slope_per_hour=None, level=None,
                   growth_per_hour=None, tau=None, first=None, last=None)
        return out
    verdict = whole["verdict"]
    if verdict == "growing" and late["verdict"] == "flat":
        verdict = "levelled off"
    out.update(verdict=verdict, slope_per_hour=whole["slope_per_hour"], level=whole["level"],
               growth_per_hour=whole["growth_per_hour"], tau=whole["tau"],
               first=kept[0][key], last=kept[-1][key])
    return out


def like_with_like(samples, key):
    """The first and second agent lifetimes compared at the same age: `(age seconds, first's
    value, second's value)` at the second lifetime's last sample, or None."""
    segs = [seg for seg in segments([s for s in samples if s.get(key) is not None])]
    if len(segs) < 2:
        return None
    a, b = segs[0], segs[1]
    age = b[-1]["t"] - b[0]["t"]
    older = [s for s in a if s["t"] - a[0]["t"] <= age]
    if not older:
        return None
    return (age, older[-1][key], b[-1][key])


# ---------------------------------------------------------------------------------------------
# SVG


def nice_step(span, n=5):
    """A round step (1, 2 or 5 × 10^k) that cuts `span` into about `n` parts."""
    if span <= 0:
        return 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def axis(lo, hi, n=5):
    """`(axis_lo, axis_hi, ticks)`: the range widened to whole steps, and the ticks in it. A
    flat series (lo == hi) gets a range around its value."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = nice_step(hi - lo, n)
    a = math.floor(lo / step + 1e-9) * step
    b = math.ceil(hi / step - 1e-9) * step
    ticks = []
    v = a
    while v <= b + step * 1e-6:
        ticks.append(round(v, 10))
        v += step
    return a, b, ticks


def scale(v, d0, d1, r0, r1):
    """Maps `v` from the domain [d0, d1] onto the range [r0, r1] (r1 < r0 for SVG's y)."""
    if d1 == d0:
        return (r0 + r1) / 2
    return r0 + (v - d0) * (r1 - r0) / (d1 - d0)


MARKER_COLOURS = {DEPLOY: "#9e9e9e", ROLLBACK: "#1f6fb2", FAILING: "#c62828",
                  RESTART: "#000000"}
LINE_COLOURS = ("#2e7d32", "#ef6c00")
TREND_COLOUR, LATE_TREND_COLOUR = "#6a1b9a", "#00838f"


def fmt_tick(v):
    if v == int(v):
        return f"{int(v):,}"
    return f"{v:g}"


def svg_chart(title, unit, lines, x_max, markers=(), trends=(), warmups=(), width=760,
              height=260, y_from_zero=True, late_trends=()):
    """A line chart as SVG text.

    `lines`: lists of `(t seconds, value)`, one per agent lifetime (drawn apart: the restart
    is not a line); `markers`: `(t, kind)` drawn as ticks under the plot and the restart as a
    dashed vertical line; `trends`: `((t0, v0), (t1, v1))` fitted lines, dotted;
    `late_trends`: the same over the last half (the levelled-off check), dashed in another
    colour; `warmups`: `(t0, t1)` shaded. The y axis starts at zero unless `y_from_zero` is
    false, so a flat series looks flat; the x axis is in minutes."""
    left, right, top, bottom = 64, 16, 28, 44
    pw, ph = width - left - right, height - top - bottom
    values = [v for line in lines for _, v in line]
    if not values:
        values = [0.0]
    lo = min(0.0, min(values)) if y_from_zero else min(values)
    y0, y1, yticks = axis(lo, max(values) * (1.05 if y_from_zero else 1.0))
    x1 = x_max if x_max > 0 else 1.0
    xstep = nice_step(x1 / 60, 6) * 60
    def X(t):
        return scale(t, 0.0, x1, left, left + pw)

    def Y(v):
        return scale(v, y0, y1, top + ph, top)

    esc = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="{left}" y="18" font-size="13" font-weight="bold">{esc(title)}'
           f'{" (" + esc(unit) + ")" if unit else ""}</text>']
    for t0, t1 in warmups:
        out.append(f'<rect x="{X(t0):.1f}" y="{top}" width="{max(0.0, X(t1) - X(t0)):.1f}" '
                   f'height="{ph}" fill="#f0f0f0"/>')
    for v in yticks:
        y = Y(v)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" '
                   'stroke="#e0e0e0"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f'{esc(fmt_tick(v))}</text>')
    t = 0.0
    while t <= x1 + 1e-6:
        x = X(t)
        out.append(f'<line x1="{x:.1f}" y1="{top + ph}" x2="{x:.1f}" y2="{top + ph + 4}" '
                   'stroke="#606060"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">'
                   f'{fmt_tick(round(t / 60, 6))}</text>')
        t += xstep
    out.append(f'<text x="{left + pw}" y="{height - 6}" text-anchor="end">minutes</text>')
    out.extend(legend(left, height - 6))
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" '
               'stroke="#606060"/>')
    for t, kind in markers:
        x = X(t)
        colour = MARKER_COLOURS.get(kind, "#606060")
        if kind == RESTART:
            out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" '
                       f'stroke="{colour}" stroke-dasharray="4 3"><title>{esc(kind)}</title>'
                       '</line>')
        else:
            out.append(f'<line x1="{x:.1f}" y1="{top + ph - 6}" x2="{x:.1f}" y2="{top + ph}" '
                       f'stroke="{colour}" stroke-width="2"><title>{esc(kind)}</title></line>')
    for (ta, va), (tb, vb) in trends:
        out.append(f'<line x1="{X(ta):.1f}" y1="{Y(va):.1f}" x2="{X(tb):.1f}" y2="{Y(vb):.1f}" '
                   f'stroke="{TREND_COLOUR}" stroke-dasharray="2 2"/>')
    for (ta, va), (tb, vb) in late_trends:
        out.append(f'<line x1="{X(ta):.1f}" y1="{Y(va):.1f}" x2="{X(tb):.1f}" y2="{Y(vb):.1f}" '
                   f'stroke="{LATE_TREND_COLOUR}" stroke-width="1.5" stroke-dasharray="6 3"/>')
    for i, line in enumerate(lines):
        if not line:
            continue
        pts = " ".join(f"{X(t):.1f},{Y(v):.1f}" for t, v in line)
        out.append(f'<polyline points="{pts}" fill="none" '
                   f'stroke="{LINE_COLOURS[i % len(LINE_COLOURS)]}" stroke-width="1.5"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def legend(x, y):
    """The key under the plot: the markers, the warm-up, the fitted slopes."""
    out = []
    for kind in (DEPLOY, ROLLBACK, FAILING):
        out.append(f'<rect x="{x}" y="{y - 8}" width="3" height="9" '
                   f'fill="{MARKER_COLOURS[kind]}"/>')
        out.append(f'<text x="{x + 6}" y="{y}">{kind}</text>')
        x += 12 + 6 * len(kind)
    out.append(f'<line x1="{x}" y1="{y - 8}" x2="{x}" y2="{y + 1}" stroke="#000000" '
               'stroke-dasharray="3 2"/>')
    out.append(f'<text x="{x + 4}" y="{y}">{RESTART}</text>')
    x += 10 + 6 * len(RESTART)
    out.append(f'<rect x="{x}" y="{y - 8}" width="12" height="9" fill="#f0f0f0"/>')
    out.append(f'<text x="{x + 15}" y="{y}">warm-up</text>')
    x += 64
    out.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 14}" y2="{y - 4}" '
               f'stroke="{TREND_COLOUR}" stroke-dasharray="2 2"/>')
    out.append(f'<text x="{x + 18}" y="{y}">Theil–Sen slope</text>')
    x += 110
    out.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 14}" y2="{y - 4}" '
               f'stroke="{LATE_TREND_COLOUR}" stroke-width="1.5" stroke-dasharray="6 3"/>')
    out.append(f'<text x="{x + 18}" y="{y}">last half</text>')
    return out


# ---------------------------------------------------------------------------------------------
# `scripts/fuzz`'s summary

_FUZZ_RAN = re.compile(r"^(?P<target>[\w.-]+): (?P<execs>\d+|\?) executions in (?P<secs>\d+)s, "
                       r"corpus (?P<corpus>\d+) inputs, (?P<result>.+)$")
_FUZZ_OTHER = re.compile(r"^(?P<target>[\w.-]+): (?P<result>.+)$")


def parse_fuzz_summary(text):
    """The lines of `target/fuzz-summary.txt` as dicts: target, executions (None when
    libFuzzer printed none), seconds, corpus (inputs), result (`no finding`, or what the
    line says: a finding, a fuzzer that did not run). Blank lines are skipped; a line of
    another shape is a `ParseError`."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        m = _FUZZ_RAN.match(line)
        if m:
            out.append({"target": m["target"],
                        "executions": None if m["execs"] == "?" else int(m["execs"]),
                        "seconds": int(m["secs"]), "corpus": int(m["corpus"]),
                        "result": m["result"]})
            continue
        m = _FUZZ_OTHER.match(line)
        if not m:
            raise ParseError(f"line {n} of the fuzz summary is not `TARGET: …`: {line!r}")
        out.append({"target": m["target"], "executions": None, "seconds": None,
                    "corpus": None, "result": m["result"]})
    return out


class ParseError(ValueError):
    """The text is not what the tool writes; the message says where."""


def fuzz_section(entries, source):
    """The `## Fuzzing` section: one row per target; `source` says which run it came from."""
    lines = ["## Fuzzing", ""]
    if not entries:
        return lines + [f"No fuzz summary ({source}).", ""]
    lines.append(f"Executions and corpus size per target from the last `scripts/fuzz` run "
                 f"({source}). Each target runs under AddressSanitizer with debug assertions "
                 "after replaying the findings kept in `fuzz/regressions/`; the corpus grows "
                 "across runs, so its size counts every run so far, the executions only this "
                 "one. `FUZZ_SECONDS=600 scripts/fuzz` is a longer run.")
    lines.append("")
    lines.append("| target | executions | time | executions/s | corpus (inputs) | result |")
    lines.append("|---|---|---|---|---|---|")
    for e in entries:
        ex, secs, corpus = e["executions"], e["seconds"], e["corpus"]
        rate = "—" if ex is None or not secs else f"{ex / secs:,.0f}"
        cells = [e["target"], "—" if ex is None else f"{ex:,}",
                 "—" if secs is None else f"{secs} s", rate,
                 "—" if corpus is None else f"{corpus:,}", e["result"].replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    findings = [e["target"] for e in entries if e["result"] != "no finding"]
    total = sum(e["executions"] or 0 for e in entries)
    lines.append("")
    lines.append(f"{len(entries)} targets, {total:,} executions in all; "
                 + ("no finding." if not findings
                    else f"**not clean: {', '.join(findings)}** (see the result column)."))
    lines.append("")
    return lines


# ---------------------------------------------------------------------------------------------
# BENCHMARKS.md sections


def section_bounds(doc_lines, heading):
    """`(start, end)` line indexes of the level-2 section titled `heading` (its `## ` line up
    to the next `## ` line or the end), or None."""
    for i, line in enumerate(doc_lines):
        if line.rstrip() == heading:
            j = i + 1
            while j < len(doc_lines) and not doc_lines[j].startswith("## "):
                j += 1
            return i, j
    return None


def splice_section(doc, section_lines, before_prefixes):
    """`doc` with the level-2 section whose heading is `section_lines[0]` replaced by
    `section_lines` — or, when absent, inserted before the first `## ` heading that starts with
    one of `before_prefixes` (else at the end). Every other line is kept as it was."""
    lines = doc.split("\n")
    new = list(section_lines)
    if new and new[-1] != "":
        new.append("")
    found = section_bounds(lines, new[0])
    if found:
        i, j = found
        return "\n".join(lines[:i] + new + lines[j:])
    for prefix in before_prefixes:
        for i, line in enumerate(lines):
            if line.startswith("## ") and line.startswith(prefix):
                return "\n".join(lines[:i] + new + lines[i:])
    if lines and lines[-1] == "":
        return "\n".join(lines[:-1] + [""] + new)
    return "\n".join(lines + [""] + new)


def extract_section(doc, heading):
    """The lines of the level-2 section `heading` in `doc`, or None."""
    lines = doc.split("\n")
    found = section_bounds(lines, heading)
    if not found:
        return None
    i, j = found
    return lines[i:j]


# ---------------------------------------------------------------------------------------------
# the soak section

# (key in a sample, name, unit shown, divisor from the sample's unit, per agent process)
SERIES = (
    ("rss_kib", "agent resident memory", "MiB", 1024, True),
    ("anon_kib", "agent anonymous memory (heap, stacks)", "MiB", 1024, True),
    ("fds", "agent open descriptors", "", 1, True),
    ("threads", "agent threads", "", 1, True),
    ("db_bytes", "state database (with its WAL)", "KiB", 1024, False),
    ("logs_bytes", "log directory", "KiB", 1024, False),
)

# Series shown (table, plot) but left out of the "every sampled series flat or levelled off"
# goal. The total resident memory counts file-backed pages: the agent gives its executable's
# code pages back to the kernel 10 s after start (crates/agent/src/footprint.rs) and they
# fault back in as code runs, so it climbs without a leak; its anonymous part is what a leak
# grows.
INFORMATIONAL = frozenset({"rss_kib"})


def fmt_value(v, div):
    if v is None:
        return "—"
    v = v / div
    if div == 1 and v == int(v):
        return f"{int(v):,}"
    return f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"


def fmt_mmss(seconds):
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


def fmt_trend(slope, growth, div):
    """`+1.2/h (+3.4 %/h)`: a slope in the shown unit per hour and as a share of the level."""
    if slope is None:
        return "—"
    out = f"{slope / div:+,.3g}/h"
    if growth is not None and not math.isinf(growth):
        out += f" ({growth * 100:+.1f} %/h)"
    return out


def soak_summary_rows(verdicts):
    """The verdict table's rows: one per series of `SERIES` present in `verdicts`. A verdict
    written before the last-half rule (no `last_half`) shows `—` there."""
    rows = []
    for key, name, unit, div, per_process in SERIES:
        v = verdicts.get(key)
        if v is None:
            continue
        slope = v.get("slope_per_hour")
        growth = v.get("growth_per_hour")
        lwl = v.get("like_with_like")
        same_age = "—"
        if lwl:
            age, a, b = lwl
            same_age = f"{fmt_value(a, div)} → {fmt_value(b, div)} at {fmt_mmss(age)}"
        late = v.get("last_half")
        if not late:
            late_cell = "—"
        elif late.get("slope_per_hour") is None:
            late_cell = "too few samples"
            if v["verdict"] == "growing":
                late_cell += " (the whole run's verdict stands)"
        else:
            late_cell = (f"{fmt_trend(late['slope_per_hour'], late.get('growth_per_hour'), div)}"
                         f", τ {late['tau']:+.2f}: {late['verdict']}")
        verdict = v["verdict"]
        if key in INFORMATIONAL:
            verdict += " (informational: not judged)"
        rows.append([
            f"{name} ({unit})" if unit else name,
            "—" if v.get("first") is None else f"{fmt_value(v['first'], div)} → "
                                                f"{fmt_value(v['last'], div)}",
            "—" if slope is None else f"{slope / div:+,.3g}/h",
            "—" if growth is None or math.isinf(growth) else f"{growth * 100:+.1f} %/h",
            "—" if v.get("tau") is None else f"{v['tau']:+.2f}",
            late_cell,
            same_age if per_process else "(on disk: spans the restart)",
            verdict,
        ])
    return rows


SOAK_HEADER = ["series", "after warm-up: first → last", "slope (Theil–Sen)", "slope / level",
               "Kendall τ", "last half: slope (/ level), τ", "first vs second lifetime, same age",
               "verdict"]


def series_goal(verdicts):
    """The "every sampled series flat or levelled off" goal over the series not in
    INFORMATIONAL: `(measured, ok)`; ok is False when one grows, None when none grows but
    one was not sampled (a run from before it was) or had too few samples, else True."""
    judged = [(key, name) for key, name, *_ in SERIES if key not in INFORMATIONAL]
    by = {}
    for key, name in judged:
        v = verdicts.get(key, {}).get("verdict", "not sampled in this run")
        by.setdefault(v, []).append(name)
    parts = [f"{v}: {', '.join(by[v])}"
             for v in ("growing", "levelled off", "too few samples", "not sampled in this run")
             if v in by]
    if not parts:
        measured = "all flat"
    elif "flat" in by:
        measured = "; ".join(parts) + "; the rest flat"
    else:
        measured = "; ".join(parts)
    if "growing" in by:
        return measured, False
    if "too few samples" in by or "not sampled in this run" in by:
        return measured, None
    return measured, True


def soak_section(res, plot_dir, notes=None):
    """The `## Soak run` section of BENCHMARKS.md from a soak result (see `bench/soakrun.py`);
    `plot_dir` is where its plots are, relative to BENCHMARKS.md; `notes`, hand-written
    findings (markdown), go at its end."""
    lines = ["## Soak run", ""]
    if isinstance(res, str):
        return lines + [res, ""]
    n_events = {}
    for e in res["events"]:
        n_events[e["kind"]] = n_events.get(e["kind"], 0) + 1
    lines.append(
        f"`{res['command']}` on {res['date']}: {res['minutes']} minutes of load through the "
        f"agent's proxy against the bundled example (`examples/hello`: its Python API, two "
        f"process instances, and its static page) and a container app (`{res['image']}`, the "
        f"testapp's image) in one agent, with {n_events.get(DEPLOY, 0)} deploys, "
        f"{n_events.get(ROLLBACK, 0)} rollbacks, {n_events.get(FAILING, 0)} failing releases "
        f"(the container's health check answers 503; the gate must refuse the release) and "
        f"{n_events.get(RESTART, 0)} agent restart (SIGTERM, then started again). "
        f"{res['load_desc']} The agent's resident memory"
        + (" (`VmRSS`, and apart its anonymous part, `RssAnon`, and its file-backed part, "
           "`RssFile`)" if "anon_kib" in res["verdicts"] else "")
        + f", descriptors (`/proc/PID/fd`), threads, the state database and the log directory "
        f"were sampled every {res['sample_every']:.0f} s."
        f" Other work shared the machine: {res['foreign_cpu_pct']:.0f}% of its CPU time went "
        f"to processes the harness did not start (other engineers' builds and tests); that can "
        f"cost latency and requests, not memory or descriptors."
        + ("" if plot_dir == "." else
           f" The whole report (every action, every window with a failure): "
           f"[{plot_dir}/report.md]({plot_dir}/report.md)."))
    lines.append("")
    lines.append(
        f"The verdict per series: the Theil–Sen slope (the median of every pair's slope) after "
        f"{res['warmup']:.0f} s of warm-up; the agent's own series pair samples only within one "
        f"agent lifetime (the restart starts a fresh process: compare like with like), the "
        f"on-disk ones across it. **Growing** means a slope of at least "
        f"{GROWTH_PER_HOUR * 100:.0f} % of the level per hour with Kendall's τ ≥ {MIN_TAU} "
        f"(mostly up, not a step or noise); else flat. A series growing over the whole run "
        f"is judged again by the same rule on its last half (the later half of each "
        f"lifetime's samples after warm-up; for the on-disk ones, of the time after warm-up): "
        f"flat there is **levelled off** — a fill that stopped at a ceiling, such as SQLite's "
        f"WAL reaching its checkpoint size or the log files their retention — and still "
        f"growing there stays growing (with fewer than {MIN_PAIRS} pairs in the last half, "
        f"the whole run's verdict stands). The total resident memory is informational, not "
        f"judged: it counts file-backed pages, the agent's code, which it gives back to the "
        f"kernel 10 s after start and which fault back in as the code runs (reclaimable, not "
        f"a leak); its anonymous memory (heap, stacks) is what a leak grows.")
    lines.append("")
    rows = soak_summary_rows(res["verdicts"])
    lines.append("| " + " | ".join(SOAK_HEADER) + " |")
    lines.append("|" + "|".join("---" for _ in SOAK_HEADER) + "|")
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    lines.append("")
    for key, name, _unit, _div, _pp in SERIES:
        if key in res.get("plots", {}):
            lines.append(f"![{name}]({plot_dir}/{res['plots'][key]})")
    lines.append("")
    totals = res["totals"]
    outside, restart = failure_goal(totals)
    lines.append(
        f"Requests: {res['requests']:,}, of which {sum(totals.values()):,} failed. By what "
        f"happened in their {res['window']:.0f}-second window:")
    lines.append("")
    lines.append("| window during | windows | requests | failed |")
    lines.append("|---|---|---|---|")
    for cls in CLASS_ORDER + (STEADY,):
        ws = [w for w in res["windows"] if w["class"] == cls]
        lines.append(f"| {cls} | {len(ws)} | {sum(w['requests'] for w in ws):,} | "
                     f"{totals.get(cls, 0):,} |")
    lines.append("")
    acts = res["actions"]
    lines.append(
        f"Actions: {acts['deploys_ok']} of {n_events.get(DEPLOY, 0)} deploys serving the new "
        f"release after it; {acts['rollbacks_ok']} of {n_events.get(ROLLBACK, 0)} rollbacks "
        f"serving the earlier release; {acts['failing_refused']} of {n_events.get(FAILING, 0)} "
        f"failing releases refused with the old release still serving both apps; the agent "
        f"back and serving {fmt_secs(acts.get('restart_s'))} after its SIGTERM.")
    lines.append("")
    lines.append("| goal | measured | verdict |")
    lines.append("|---|---|---|")
    verdict = {True: "met", False: "missed"}
    lines.append(f"| zero failed requests outside the failing releases' gates | {outside:,} "
                 f"failed (of them {restart:,} in the agent restart's windows) | "
                 f"{verdict[outside == 0]} |")
    lines.append(f"| zero failed requests outside the failing releases' gates and the agent "
                 f"restart (the proxy is in the agent: ARCHITECTURE.md, \"Kill and restart on "
                 f"agent start\") | {outside - restart:,} failed | "
                 f"{verdict[outside - restart == 0]} |")
    measured, ok = series_goal(res["verdicts"])
    unjudged = " and ".join(name for key, name, *_ in SERIES if key in INFORMATIONAL)
    ok = {True: "met", False: "missed", None: "not measured"}[ok]
    lines.append(f"| every sampled series flat or levelled off ({unjudged}: informational) | "
                 f"{measured} | {ok} |")
    lines.append("")
    if notes and notes.strip():
        lines += notes.strip().split("\n") + [""]
    return lines


def fmt_secs(s):
    return "—" if s is None else f"{s:.1f} s"


def failure_rows(windows, limit=None):
    """Rows of the windows that had failures: start, target, requests, failed, kinds, class."""
    rows = []
    for w in windows:
        if not w.get("failed"):
            continue
        kinds = ", ".join(f"{k} {v}" for k, v in sorted((w.get("kinds") or {}).items()) if v)
        rows.append([fmt_mmss(w["t0"]), w["target"], f"{w['requests']:,}", f"{w['failed']:,}",
                     kinds or "—", w["class"]])
    return rows if limit is None else rows[:limit]
