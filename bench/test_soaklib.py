"""Tests of the soak stage's and the fuzzing section's pure parts (`soaklib`): the schedule,
the flat, growing or levelled-off verdict and the goal it feeds, the failure classes, the
SVG's scaling, the fuzz summary parser and the section splice. Plain data, milliseconds,
nothing started."""

import re
import unittest

import soaklib as sl


def samples(values, pid=1, t0=0.0, step=10.0, key="v"):
    return [{"t": t0 + i * step, "pid": pid, key: v} for i, v in enumerate(values)]


class Schedule(unittest.TestCase):
    def test_thirty_minutes(self):
        s = sl.soak_schedule(30)
        kinds = [k for _, k in s]
        self.assertEqual(kinds.count(sl.DEPLOY), 27)
        self.assertEqual([t for t, k in s if k == sl.FAILING], [600, 1200])
        self.assertEqual([t for t, k in s if k == sl.ROLLBACK], [330, 630, 930, 1230, 1530])
        self.assertEqual([t for t, k in s if k == sl.RESTART], [945])
        self.assertEqual(s, sorted(s))
        # Nothing in the last quarter interval: the last action's effect is sampled.
        self.assertLessEqual(s[-1][0], 30 * 60 - 15)

    def test_short_debugging_run_has_every_kind(self):
        kinds = {k for _, k in sl.soak_schedule(3, interval=15)}
        self.assertEqual(kinds, {sl.DEPLOY, sl.ROLLBACK, sl.FAILING, sl.RESTART})

    def test_one_minute_still_restarts_inside_the_run(self):
        s = sl.soak_schedule(1)
        self.assertEqual([k for _, k in s], [sl.RESTART])
        self.assertLess(s[0][0], 60)


class Classify(unittest.TestCase):
    EVENTS = [
        {"kind": sl.DEPLOY, "t0": 60.0, "t1": 62.0},
        {"kind": sl.FAILING, "t0": 120.0, "t1": 136.0},
        {"kind": sl.RESTART, "t0": 200.0, "t1": 203.0},
        {"kind": sl.ROLLBACK, "t0": 199.5, "t1": 201.0},
    ]

    def window(self, t0, failed, target="example"):
        return {"t0": t0, "t1": t0 + 10.0, "failed": failed, "requests": 100, "target": target}

    def test_each_window_takes_the_first_kind_it_overlaps(self):
        ws = [self.window(0, 0), self.window(55, 1), self.window(130, 3), self.window(195, 7),
              self.window(300, 2)]
        out, totals = sl.classify_windows(ws, self.EVENTS)
        self.assertEqual([w["class"] for w in out],
                         [sl.STEADY, sl.DEPLOY, sl.FAILING, sl.RESTART, sl.STEADY])
        self.assertEqual(totals, {sl.FAILING: 3, sl.RESTART: 7, sl.ROLLBACK: 0, sl.DEPLOY: 1,
                                  sl.STEADY: 2})
        self.assertEqual(sl.failure_goal(totals), (10, 7))

    def test_slack_catches_a_request_in_flight_at_the_edge(self):
        # The window ends 0.5 s before the deploy starts: within the default 1 s of slack.
        out, _ = sl.classify_windows([self.window(49.5, 1)], self.EVENTS)
        self.assertEqual(out[0]["class"], sl.DEPLOY)
        out, _ = sl.classify_windows([self.window(49.5, 1)], self.EVENTS, slack=0.0)
        self.assertEqual(out[0]["class"], sl.STEADY)

    def test_input_windows_are_not_changed(self):
        ws = [self.window(0, 0)]
        sl.classify_windows(ws, self.EVENTS)
        self.assertNotIn("class", ws[0])


class Verdict(unittest.TestCase):
    def test_a_leak_is_growing(self):
        # 20 MiB plus 1 MiB every 10 minutes: 15 %/h.
        s = samples([20480 + i * 1024 / 60 for i in range(180)])
        v = sl.series_verdict(s, "v", per_process=True, warmup=120)
        self.assertEqual(v["verdict"], "growing")
        self.assertAlmostEqual(v["slope_per_hour"], 6144, delta=1)
        self.assertGreater(v["tau"], 0.99)

    def test_noise_around_a_level_is_flat(self):
        noise = [0, 3, -2, 5, -4, 1, -1, 2, -3, 4] * 18
        v = sl.series_verdict(samples([100 + n for n in noise]), "v", True, 120)
        self.assertEqual(v["verdict"], "flat")
        self.assertAlmostEqual(v["slope_per_hour"], 0.0, delta=5)

    def test_one_step_is_not_growth(self):
        # 40 descriptors, then 41 for the last third: a pool reaching its size, not a leak.
        v = sl.series_verdict(samples([40] * 120 + [41] * 60), "v", True, 120)
        self.assertEqual(v["verdict"], "flat")
        self.assertEqual(v["slope_per_hour"], 0)

    def test_warm_up_is_left_out(self):
        # Memory climbs for the first two minutes, then holds.
        s = samples([10000 + 500 * i for i in range(12)] + [16000] * 168)
        self.assertEqual(sl.series_verdict(s, "v", True, warmup=120)["verdict"], "flat")
        self.assertEqual(sl.series_verdict(s, "v", True, warmup=0)["first"], 10000)

    def test_a_restart_is_compared_like_with_like(self):
        # Each lifetime warms up to the same flat level; naively the restart's drop and
        # climb would read as change, and pairs across it would compare young with old.
        life = [8000 + 400 * min(i, 12) for i in range(90)]
        s = samples(life, pid=1) + samples(life, pid=2, t0=900.0)
        v = sl.series_verdict(s, "v", per_process=True, warmup=120)
        self.assertEqual(v["verdict"], "flat")
        self.assertEqual(v["like_with_like"], (890.0, 12800, 12800))

    def test_growth_in_every_lifetime_is_found_across_a_restart(self):
        life = [8000 + 20 * i for i in range(90)]  # +20 KiB per 10 s in each lifetime
        s = samples(life, pid=1) + samples(life, pid=2, t0=900.0)
        v = sl.series_verdict(s, "v", per_process=True, warmup=120)
        self.assertEqual(v["verdict"], "growing")
        self.assertAlmostEqual(v["slope_per_hour"], 7200, delta=1)

    def test_on_disk_series_span_the_restart(self):
        # A database growing steadily through the restart: one run of pairs, pid ignored.
        s = samples([1000 + 10 * i for i in range(90)], pid=1) + samples(
            [1900 + 10 * i for i in range(90)], pid=2, t0=900.0)
        v = sl.series_verdict(s, "v", per_process=False, warmup=120)
        self.assertEqual(v["verdict"], "growing")
        self.assertAlmostEqual(v["slope_per_hour"], 3600, delta=1)
        self.assertIsNone(v["like_with_like"])

    def test_too_few_samples(self):
        v = sl.series_verdict(samples([1, 2, 3]), "v", True, 0)
        self.assertEqual(v["verdict"], "too few samples")

    def test_missing_values_are_skipped(self):
        s = samples([5] * 40)
        s[10]["v"] = None
        self.assertEqual(sl.series_verdict(s, "v", True, 0)["verdict"], "flat")

    def test_warm_up_of_a_short_run(self):
        self.assertEqual(sl.warmup_seconds(900), 120)
        self.assertEqual(sl.warmup_seconds(90), 18)


NOISE = [0, 3, -2, 5, -4, 1, -1, 2, -3, 4, -5, 2]


def fill_then_flat(n=180, base=500, ceiling=4200, noise=20, at=1 / 3):
    """A fill that reaches its ceiling `at` (a share) of the way through `n` samples, then
    holds it with noise: SQLite's WAL up to its checkpoint size."""
    third = round(n * at)
    return [base + (ceiling - base) * i / third if i < third
            else ceiling + noise * NOISE[i % len(NOISE)] / 5 for i in range(n)]


def saw_tooth(n=180, start=1600, low=10000, high=11700, period=6):
    """A log directory filling until retention a third of the way through, then cut back to
    `low` every `period` samples as the oldest files go."""
    third = n // 3
    out = []
    for i in range(n):
        if i < third:
            out.append(start + (low - start) * i / third)
        else:
            out.append(low + (high - low) * ((i - third) % period) / (period - 1))
    return out


class LevelledOff(unittest.TestCase):
    def test_a_linear_leak_stays_growing(self):
        for per_process in (True, False):
            s = samples([20480 + i * 1024 / 60 for i in range(180)])
            v = sl.series_verdict(s, "v", per_process, warmup=120)
            self.assertEqual(v["verdict"], "growing", per_process)
            self.assertEqual(v["last_half"]["verdict"], "growing")
            self.assertAlmostEqual(v["last_half"]["slope_per_hour"], 6144, delta=1)

    def test_a_fill_to_a_ceiling_then_flat_is_levelled_off(self):
        v = sl.series_verdict(samples(fill_then_flat()), "v", per_process=False, warmup=120)
        # Over the whole run the fill dominates: by the old rule this was "growing".
        self.assertGreater(v["slope_per_hour"] / v["level"], sl.GROWTH_PER_HOUR)
        self.assertGreaterEqual(v["tau"], sl.MIN_TAU)
        self.assertEqual(v["verdict"], "levelled off")
        self.assertEqual(v["last_half"]["verdict"], "flat")
        self.assertLess(abs(v["last_half"]["slope_per_hour"]), 0.01 * 4200)

    def test_a_fill_in_each_lifetime_is_levelled_off_pooled_like_the_whole_run(self):
        # Each lifetime fills for its first half: a third of it would leave too little of the
        # fill after the warm-up for the whole run to read as growing.
        life = fill_then_flat(n=90, base=8000, ceiling=12000, noise=10, at=1 / 2)
        s = samples(life, pid=1) + samples(life, pid=2, t0=900.0)
        v = sl.series_verdict(s, "v", per_process=True, warmup=120)
        self.assertEqual(v["verdict"], "levelled off")
        self.assertEqual(v["last_half"]["verdict"], "flat")
        # Each lifetime's last half alone: 39 of its 78 kept samples, pairs within it only.
        self.assertEqual(v["last_half"]["pairs"], 2 * 39 * 38 // 2)

    def test_a_saw_tooth_bounded_by_retention_is_not_growing(self):
        v = sl.series_verdict(samples(saw_tooth()), "v", per_process=False, warmup=120)
        self.assertIn(v["verdict"], ("levelled off", "flat"))
        self.assertEqual(v["last_half"]["verdict"], "flat")

    def test_a_flat_series_is_flat_in_both_halves(self):
        v = sl.series_verdict(samples([100 + n for n in NOISE * 15]), "v", True, 120)
        self.assertEqual(v["verdict"], "flat")
        self.assertEqual(v["last_half"]["verdict"], "flat")

    def test_growth_only_in_the_first_half_of_the_whole_run_on_disk_is_split_by_time(self):
        # On disk the last half is the later half of the kept time span, not of the samples:
        # dense samples early (every 10 s) and sparse ones late (every 60 s).
        s = samples([100 * i for i in range(60)]) + samples([6000] * 30, t0=600.0, step=60.0)
        (half,) = sl.last_half(sl.kept_groups(s, "v", False, 0), False)
        # The middle of 0 … 2340 s is 1170 s: the first sample from it on is at 1200 s.
        self.assertEqual(half[0]["t"], 1200.0)
        self.assertTrue(all(x["v"] == 6000 for x in half))
        self.assertEqual(sl.series_verdict(s, "v", False, 0)["verdict"], "levelled off")

    def test_too_few_samples_in_the_last_half_keeps_growing(self):
        # Six samples after warm-up: 15 pairs over the whole run, 3 in its last half.
        v = sl.series_verdict(samples([1000 + 50 * i for i in range(6)]), "v", True, 0)
        self.assertEqual(v["verdict"], "growing")
        self.assertEqual(v["last_half"]["verdict"], "too few samples")
        self.assertEqual(v["last_half"]["pairs"], 3)
        (row,) = sl.soak_summary_rows({"fds": v})
        self.assertEqual(row[5], "too few samples (the whole run's verdict stands)")
        self.assertEqual(row[-1], "growing")


def verdicts(**series):
    """Verdicts of `SERIES`' keys: flat ones, with `series` (key → values) instead."""
    out = {}
    for key, _n, _u, _d, pp in sl.SERIES:
        values = series.get(key, [1000 + n for n in NOISE * 15])
        s = samples(values, pid=1, key=key)
        out[key] = sl.series_verdict(s, key, pp, 120)
    return out


class Goal(unittest.TestCase):
    LEAK = [20480 + i * 1024 / 60 for i in range(180)]

    def test_growing_total_memory_with_flat_anonymous_memory_meets_it(self):
        v = verdicts(rss_kib=self.LEAK)
        self.assertEqual(v["rss_kib"]["verdict"], "growing")
        self.assertEqual(sl.series_goal(v), ("all flat", True))
        (row,) = [r for r in sl.soak_summary_rows(v) if r[0].startswith("agent resident")]
        self.assertEqual(row[-1], "growing (informational: not judged)")

    def test_growing_anonymous_memory_misses_it(self):
        v = verdicts(anon_kib=self.LEAK)
        self.assertEqual(sl.series_goal(v),
                         ("growing: agent anonymous memory (heap, stacks); the rest flat", False))

    def test_levelled_off_meets_it_and_is_named(self):
        v = verdicts(db_bytes=fill_then_flat(), logs_bytes=saw_tooth())
        measured, ok = sl.series_goal(v)
        self.assertTrue(ok)
        self.assertIn("levelled off: state database (with its WAL)", measured)

    def test_a_series_missing_from_an_old_run_is_not_measured(self):
        v = verdicts()
        del v["anon_kib"]
        for x in v.values():
            del x["last_half"]  # written before the last-half rule
        self.assertEqual(sl.series_goal(v), (
            "not sampled in this run: agent anonymous memory (heap, stacks); the rest flat",
            None))
        rows = sl.soak_summary_rows(v)
        self.assertEqual(len(rows), len(sl.SERIES) - 1)
        self.assertTrue(all(r[5] == "—" for r in rows))


class Svg(unittest.TestCase):
    def test_scale_maps_the_domain_onto_the_range(self):
        self.assertEqual(sl.scale(0, 0, 100, 50, 250), 50)
        self.assertEqual(sl.scale(100, 0, 100, 50, 250), 250)
        self.assertEqual(sl.scale(25, 0, 100, 50, 250), 100)
        # SVG's y grows downwards: the range runs backwards.
        self.assertEqual(sl.scale(25, 0, 100, 200, 0), 150)
        self.assertEqual(sl.scale(3, 3, 3, 0, 10), 5)

    def test_axis_widens_to_round_ticks(self):
        self.assertEqual(sl.axis(0, 13.2), (0, 15, [0, 5, 10, 15]))
        self.assertEqual(sl.axis(0, 9.2), (0, 10, [0, 2, 4, 6, 8, 10]))
        lo, hi, ticks = sl.axis(0, 23_500_000)
        self.assertEqual((lo, hi), (0, 25_000_000))
        self.assertEqual(ticks[1], 5_000_000)
        lo, hi, ticks = sl.axis(41, 41)
        self.assertLess(lo, 41)
        self.assertGreater(hi, 41)

    def test_points_land_inside_the_plot(self):
        svg = sl.svg_chart("agent resident memory", "MiB",
                           [[(0, 10.0), (600, 12.0)], [(900, 9.0), (1800, 11.0)]], 1800,
                           markers=[(60, sl.DEPLOY), (945, sl.RESTART)],
                           trends=[((120, 10.5), (600, 10.6))], warmups=[(0, 120)])
        self.assertTrue(svg.startswith("<svg "))
        lines = re.findall(r'<polyline points="([^"]+)"', svg)
        self.assertEqual(len(lines), 2)  # the restart is a gap, not a line
        width, height = 760, 260
        left, right, top, bottom = 64, 16, 28, 44
        for pts in lines:
            for p in pts.split():
                x, y = map(float, p.split(","))
                self.assertTrue(left <= x <= width - right, p)
                self.assertTrue(top <= y <= height - bottom, p)
        # t = 0 is the left edge, t = x_max the right one; the y axis starts at zero.
        first = lines[0].split()[0].split(",")
        self.assertEqual(float(first[0]), left)
        last = lines[1].split()[-1].split(",")
        self.assertEqual(float(last[0]), width - right)
        self.assertIn('stroke-dasharray="4 3"', svg)  # the restart
        self.assertIn('stroke-dasharray="2 2"', svg)  # the whole run's slope
        # No last-half slope given: only the legend's.
        self.assertEqual(svg.count('stroke-dasharray="6 3"/>'), 1)
        late = sl.svg_chart("x", "", [[(0, 1.0), (10, 1.0)]], 10,
                            late_trends=[((5, 1.0), (10, 1.0))])
        self.assertEqual(late.count(f'stroke="{sl.LATE_TREND_COLOUR}" stroke-width="1.5" '
                                    'stroke-dasharray="6 3"/>'), 2)
        self.assertIn(">0</text>", svg)

    def test_title_is_escaped(self):
        svg = sl.svg_chart("a < b & c", "", [[(0, 1.0), (10, 1.0)]], 10)
        self.assertIn("a &lt; b &amp; c", svg)


FUZZ = """config: 25696 executions in 20s, corpus 2684 inputs, no finding
webhook: 268455 executions in 20s, corpus 6431 inputs, no finding
cron: ? executions in 20s, corpus 572 inputs, no finding
proxy_request: FINDING (see target/fuzz-artifacts/proxy_request/run.log and target/fuzz-artifacts/proxy_request/)
nginx: the fuzzer did not run, no finding (see target/fuzz-artifacts/nginx/run.log)

"""


class Fuzz(unittest.TestCase):
    def test_parses_every_line_shape(self):
        e = sl.parse_fuzz_summary(FUZZ)
        self.assertEqual([x["target"] for x in e],
                         ["config", "webhook", "cron", "proxy_request", "nginx"])
        self.assertEqual(e[1], {"target": "webhook", "executions": 268455, "seconds": 20,
                                "corpus": 6431, "result": "no finding"})
        self.assertIsNone(e[2]["executions"])
        self.assertEqual(e[2]["corpus"], 572)
        self.assertTrue(e[3]["result"].startswith("FINDING"))
        self.assertIsNone(e[4]["executions"])

    def test_another_shape_is_an_error_with_its_line(self):
        with self.assertRaisesRegex(sl.ParseError, "line 2"):
            sl.parse_fuzz_summary("config: 1 executions in 1s, corpus 1 inputs, no finding\n"
                                  "garbage\n")

    def test_section_lists_targets_and_findings(self):
        text = "\n".join(sl.fuzz_section(sl.parse_fuzz_summary(FUZZ), "the 20:08 run"))
        self.assertIn("| webhook | 268,455 | 20 s | 13,423 | 6,431 | no finding |", text)
        self.assertIn("the 20:08 run", text)
        self.assertIn("**not clean: proxy_request, nginx**", text)
        clean = sl.parse_fuzz_summary(FUZZ.splitlines()[0])
        self.assertIn("no finding.", "\n".join(sl.fuzz_section(clean, "x")))


DOC = """# Benchmarks

## Machine

- CPU: x

## Performance goals

| goal | measured | verdict |

## Profiling notes (hand-written)

- note
"""


class Splice(unittest.TestCase):
    def test_inserts_before_the_notes_and_keeps_the_rest(self):
        out = sl.splice_section(DOC, ["## Soak run", "", "soak 1"], ("## Profiling notes",))
        self.assertEqual(out.replace("## Soak run\n\nsoak 1\n\n", ""), DOC)
        self.assertLess(out.index("## Soak run"), out.index("## Profiling notes"))
        self.assertGreater(out.index("## Soak run"), out.index("## Performance goals"))

    def test_replaces_only_its_own_section(self):
        once = sl.splice_section(DOC, ["## Soak run", "", "soak 1", "", "### sub", "x"],
                                 ("## Profiling notes",))
        twice = sl.splice_section(once, ["## Soak run", "", "soak 2"], ("## Profiling notes",))
        self.assertEqual(twice, sl.splice_section(DOC, ["## Soak run", "", "soak 2"],
                                                  ("## Profiling notes",)))
        self.assertNotIn("### sub", twice)
        self.assertIn("## Performance goals\n\n| goal | measured | verdict |\n", twice)

    def test_appends_without_the_anchor(self):
        out = sl.splice_section("# B\n\n## A\n\na\n", ["## Fuzzing", "", "f"], ("## Nope",))
        self.assertEqual(out, "# B\n\n## A\n\na\n\n## Fuzzing\n\nf\n")

    def test_extract_gives_the_section_back(self):
        out = sl.splice_section(DOC, ["## Soak run", "", "soak 1", ""], ("## Profiling notes",))
        self.assertEqual(sl.extract_section(out, "## Soak run"), ["## Soak run", "", "soak 1", ""])
        self.assertIsNone(sl.extract_section(DOC, "## Soak run"))


class Section(unittest.TestCase):
    def result(self):
        s = samples([20480] * 90, pid=1, key="rss_kib") + samples([20480] * 90, pid=2,
                                                                   t0=900.0, key="rss_kib")
        for x in s:
            x.update(anon_kib=8192, fds=40, threads=9, db_bytes=4096, logs_bytes=1000)
        windows = [{"t0": 0.0, "t1": 10.0, "failed": 0, "requests": 3000, "target": "example",
                    "kinds": {}},
                   {"t0": 900.0, "t1": 910.0, "failed": 12, "requests": 3000,
                    "target": "container", "kinds": {"connect": 12}}]
        events = [{"kind": sl.RESTART, "t0": 899.0, "t1": 902.0, "as_expected": True}]
        ws, totals = sl.classify_windows(windows, events)
        return {"command": "bench/run --only soak", "date": "2026-12-06 22:00 UTC",
                "minutes": 30, "image": "dockhand-testapp:latest", "load_desc": "Load.",
                "sample_every": 10, "foreign_cpu_pct": 40.0, "warmup": 120, "window": 10,
                "events": events, "windows": ws, "totals": totals, "requests": 6000,
                "verdicts": {k: sl.series_verdict(s, k, pp, 120)
                             for k, _n, _u, _d, pp in sl.SERIES},
                "plots": {"rss_kib": "rss.svg"},
                "actions": {"deploys_ok": 0, "rollbacks_ok": 0, "failing_refused": 0,
                            "restart_s": 3.0}}

    def test_section_reports_verdicts_and_failures_by_class(self):
        text = "\n".join(sl.soak_section(self.result(), "bench/soak"))
        self.assertTrue(text.startswith("## Soak run\n"))
        self.assertIn("| agent resident memory (MiB) | 20.0 → 20.0 |", text)
        self.assertIn("![agent resident memory](bench/soak/rss.svg)", text)
        self.assertIn("| agent restart | 1 | 3,000 | 12 |", text)
        self.assertIn("| zero failed requests outside the failing releases' gates | 12 failed "
                      "(of them 12 in the agent restart's windows) | missed |", text)
        self.assertIn("| 0 failed | met |", text)
        goal = ("| every sampled series flat or levelled off (agent resident memory: "
                "informational) | all flat | met |")
        self.assertIn(goal, text)
        self.assertTrue(text.endswith(goal + "\n"))
        self.assertIn("| agent anonymous memory (heap, stacks) (MiB) | 8.00 → 8.00 |", text)
        self.assertIn("| flat (informational: not judged) |", text)
        with_notes = sl.soak_section(self.result(), "bench/soak", "### Findings\n\n- one\n")
        self.assertEqual(with_notes[-5:], ["", "### Findings", "", "- one", ""])
        rows = sl.failure_rows(self.result()["windows"])
        self.assertEqual(rows, [["15:00", "container", "3,000", "12", "connect 12",
                                 sl.RESTART]])


if __name__ == "__main__":
    unittest.main()
