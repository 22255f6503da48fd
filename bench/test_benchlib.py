"""Smoke tests of the harness's pure parts: `python3 -m unittest discover -s bench`
(scripts/test runs them; they take milliseconds and start nothing)."""

import unittest

import benchlib as bl
import peers

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:40001/health
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.46ms  210.33us   9.87ms   91.02%
    Req/Sec    44.10k     1.20k   46.00k    78.00%
  Latency Distribution
     50%    1.43ms
     75%    1.52ms
     90%    1.65ms
     99%  850.00us
  219456 requests in 5.00s, 25.53MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:  43882.17
Transfer/sec:      5.10MB
"""


class ParseWrk(unittest.TestCase):
    def test_reads_every_figure(self):
        r = bl.parse_wrk(WRK_OUTPUT)
        self.assertEqual(r["requests"], 219456)
        self.assertAlmostEqual(r["seconds"], 5.0)
        self.assertAlmostEqual(r["rps"], 43882.17)
        self.assertAlmostEqual(r["p50_us"], 1430.0)
        self.assertAlmostEqual(r["p90_us"], 1650.0)
        self.assertAlmostEqual(r["p99_us"], 850.0)
        self.assertEqual(
            (r["connect_errors"], r["read_errors"], r["write_errors"], r["timeout_errors"]),
            (1, 2, 3, 4),
        )
        self.assertEqual(r["non_2xx"], 5)
        self.assertEqual(r["errors"], 15)

    def test_clean_run_has_zero_errors(self):
        clean = "\n".join(
            line for line in WRK_OUTPUT.splitlines() if "errors" not in line and "Non-2xx" not in line
        )
        self.assertEqual(bl.parse_wrk(clean)["errors"], 0)

    def test_time_units(self):
        self.assertEqual(bl.parse_time_us("12.00us"), 12.0)
        self.assertEqual(bl.parse_time_us("1.50s"), 1.5e6)
        self.assertEqual(bl.parse_time_us("2.00m"), 120e6)
        with self.assertRaises(bl.ParseError):
            bl.parse_time_us("fast")

    def test_not_wrk_output_is_an_error(self):
        with self.assertRaises(bl.ParseError):
            bl.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


class ParseLoadtest(unittest.TestCase):
    def test_nested_latency_in_ms(self):
        r = bl.parse_loadtest_json(
            {"summary": {"requests": 1000, "requests_per_second": 2000.5},
             "latency_ms": {"p50": 1.2, "p90": 1.5, "p99": 3.0, "max": 9.0}}
        )
        self.assertEqual(r["rps"], 2000.5)
        self.assertAlmostEqual(r["p50_us"], 1200.0)
        self.assertAlmostEqual(r["p99_us"], 3000.0)
        self.assertEqual(r["requests"], 1000)

    def test_unit_in_the_key(self):
        r = bl.parse_loadtest_json({"rps": 10, "latency": {"p50_us": 800, "p99_us": 1900}})
        self.assertEqual(r["p50_us"], 800)
        self.assertEqual(r["p99_us"], 1900)

    def test_schema_1_report_reads_totals(self):
        report = {
            "schema": 1, "connections": 64, "threads": 1, "elapsed_s": 5.0,
            "totals": {"requests": 50000, "failed": 0, "requests_per_sec": 9999.5,
                       "latency_us": {"count": 50000, "mean_us": 6000.0, "p50_us": 5800,
                                      "p90_us": 7000, "p95_us": 7500, "p99_us": 9100,
                                      "p999_us": 12000, "max_us": 20000}},
            "endpoints": [{"name": "x", "stats": {"requests_per_sec": 1.0,
                                                  "latency_us": {"p50_us": 1}}}],
            "exit_code": 0,
        }
        r = bl.parse_loadtest_json(report)
        self.assertEqual(r["rps"], 9999.5)
        self.assertEqual(r["p50_us"], 5800)
        self.assertEqual(r["p90_us"], 7000)
        self.assertEqual(r["p99_us"], 9100)
        self.assertEqual(r["requests"], 50000)

    def test_missing_rps_is_an_error(self):
        with self.assertRaises(bl.ParseError):
            bl.parse_loadtest_json({"latency_ms": {"p50": 1}})


class Stats(unittest.TestCase):
    def test_median_skips_missing(self):
        self.assertEqual(bl.median([3, None, 1, 2]), 2)
        self.assertEqual(bl.median([1, 2, 3, 4]), 2.5)
        self.assertIsNone(bl.median([None]))

    def test_ratio(self):
        self.assertEqual(bl.ratio(3, 2), 1.5)
        self.assertIsNone(bl.ratio(3, 0))
        self.assertIsNone(bl.ratio(None, 2))

    def test_cpu_per_request(self):
        # 250 ticks at 100 Hz = 2.5 s of CPU over 125 000 requests = 20 µs each.
        self.assertAlmostEqual(bl.cpu_us_per_request(250, 100, 125_000), 20.0)
        self.assertIsNone(bl.cpu_us_per_request(5, 100, 0))

    def test_summarize_takes_medians_per_key(self):
        s = bl.summarize([{"rps": 1, "x": "a"}, {"rps": 5}, {"rps": 3, "cpu_us": 2}])
        self.assertEqual(s, {"rps": 3, "cpu_us": 2})

    def test_rotate_interleaves(self):
        peers_ = ["a", "b", "c", "d"]
        self.assertEqual(bl.rotate(peers_, 0), ["a", "b", "c", "d"])
        self.assertEqual(bl.rotate(peers_, 1), ["b", "c", "d", "a"])
        self.assertEqual(bl.rotate(peers_, 5), ["b", "c", "d", "a"])


class Goals(unittest.TestCase):
    def table(self, dockhand_cpu64, dockhand_cpu256):
        def s(cpu, p99=1000, rss=8192):
            return {"cpu_us": cpu, "p99_us": p99, "rss_kib": rss, "rps": 1}

        return {
            ("http", 64): {"nginx": s(19), "haproxy": s(20), "caddy": s(70),
                           "dockhand": s(dockhand_cpu64, p99=900, rss=4096)},
            ("http", 256): {"nginx": s(20), "haproxy": s(19), "caddy": s(75),
                            "dockhand": s(dockhand_cpu256, p99=1100)},
            ("https", 64): {"nginx": s(24), "dockhand": "not yet supported"},
        }

    def test_verdicts(self):
        rows = {g: v for g, _, v in bl.proxy_goals(self.table(18.0, 19.9))}
        self.assertEqual(rows["proxy CPU per request, HTTP @ 64 connections, at or below nginx's"], "met")
        # best peer at 256 is HAProxy (19): 19.9 is within 5%.
        self.assertEqual(
            rows["proxy CPU per request, HTTP @ 256 connections, within 5% of the best peer"], "met")
        self.assertEqual(
            rows["proxy CPU per request, HTTPS @ 64 connections, at least 10% below nginx's"], "not yet")
        self.assertEqual(rows["p99 latency, HTTP @ 64 connections, no worse than nginx's"], "met")
        self.assertEqual(rows["p99 latency, HTTP @ 256 connections, no worse than nginx's"], "missed")
        self.assertEqual(rows["resident memory (after the HTTP @ 64 runs) at or below nginx's"], "met")

    def test_misses(self):
        rows = {g: v for g, _, v in bl.proxy_goals(self.table(19.5, 20.0))}
        self.assertEqual(rows["proxy CPU per request, HTTP @ 64 connections, at or below nginx's"], "missed")
        self.assertEqual(
            rows["proxy CPU per request, HTTP @ 256 connections, within 5% of the best peer"], "missed")

    def test_loadtest_goal(self):
        wrk = {"rps": 100, "p50_us": 1000, "p99_us": 2000}
        self.assertEqual(bl.loadtest_goals({"rps": 95, "p50_us": 1050, "p99_us": 1900}, wrk)[0][2], "met")
        self.assertEqual(bl.loadtest_goals({"rps": 85, "p50_us": 1000, "p99_us": 2000}, wrk)[0][2], "missed")
        self.assertEqual(bl.loadtest_goals("skipped: dockhand loadtest not built", None)[0][2],
                         "not measured")


class Render(unittest.TestCase):
    def test_md_table_escapes_pipes(self):
        t = bl.md_table(["a", "b"], [["x|y", 1]])
        self.assertEqual(t, "| a | b |\n|---|---|\n| x\\|y | 1 |")

    def test_proxy_rows_show_ratio_to_nginx_and_reasons(self):
        table = {("https", 64): {"nginx": {"rps": 100.0, "p50_us": 900, "p99_us": 2000,
                                           "cpu_us": 20.0, "rss_kib": 10240, "pss_kib": 8192},
                                 "dockhand": "not yet supported"}}
        rows = bl.proxy_rows(table, "https", 64, ["nginx", "dockhand"])
        self.assertEqual(rows[0][1], "100 (1.00×)")
        self.assertEqual(rows[0][4], "20.0 (1.00×)")
        self.assertEqual(rows[1][:2], ["dockhand", "not yet supported"])


class PeerConfigs(unittest.TestCase):
    def test_everything_binds_loopback_only(self):
        texts = [
            peers.nginx_conf("/w", 1, 2, 3, "/c", "/k"),
            peers.haproxy_cfg(1, 2, 3, "/ck"),
            peers.caddyfile(1, 2, 3, "/c", "/k"),
            peers.dockhand_toml(1, "/t", "v1"),
            peers.dockhand_toml(1, "/t", "v1", https_port=2, cert="/c", key="/k"),
        ]
        for t in texts:
            for line in t.splitlines():
                s = line.strip()
                if s.startswith(("listen", "bind", "https_listen")):
                    self.assertIn("127.0.0.1", s, t)

    def test_dockhand_serves_https_with_the_peers_certificate(self):
        text = peers.dockhand_toml(1, "/t", "v1", https_port=2, cert="/w/cert.pem",
                                   key="/w/key.pem")
        self.assertIn('https_listen = "127.0.0.1:2"', text)
        self.assertIn('certificates = [{ cert = "/w/cert.pem", key = "/w/key.pem" }]', text)
        # The keys belong to [proxy], before the first service table.
        self.assertLess(text.index("https_listen"), text.index("[services."))
        self.assertNotIn("https_listen", peers.dockhand_toml(1, "/t", "v1"))

    def test_one_worker_each(self):
        self.assertIn("worker_processes 1;", peers.nginx_conf("/w", 1, 2, 3, "/c", "/k"))
        self.assertIn("nbthread 1", peers.haproxy_cfg(1, 2, 3, "/ck"))
        self.assertIn("workers = 1", peers.dockhand_toml(1, "/t", "v1"))

    def test_the_backend_runs_one_thread(self):
        # Pinned to one core, a second runtime thread only adds wake-ups between the two.
        self.assertIn('THREADS = "1"', peers.dockhand_toml(1, "/t", "v1"))


if __name__ == "__main__":
    unittest.main()
