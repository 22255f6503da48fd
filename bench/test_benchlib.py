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



S_TIME_OUTPUT = """Collecting connection statistics for 5 seconds
****************************************

2106 connections in 1.04s; 2025.00 connections/user sec, bytes read 10904868
2106 connections in 6 real seconds, 5178 bytes read per connection
"""


class Handshakes(unittest.TestCase):
    def test_s_time_counts_connections(self):
        self.assertEqual(bl.parse_s_time(S_TIME_OUTPUT), 2106)
        self.assertEqual(bl.parse_s_time("2106 connections in 1.04s; 2025.00 conn"), 2106)
        self.assertIsNone(bl.parse_s_time("connect:errno=111"))

    def test_rows_and_goals_compare_cpu_per_connection_to_nginx(self):
        table = {
            "new": {"nginx": {"cpu_us": 100.0, "conns_per_s": 900.0},
                    "haproxy": {"cpu_us": 90.0, "conns_per_s": 950.0},
                    "dockhand": {"cpu_us": 70.0, "conns_per_s": 1000.0}},
            "reuse": {"nginx": {"cpu_us": 40.0, "conns_per_s": 2000.0},
                      "dockhand": "failed: connect refused"},
        }
        rows = bl.handshake_rows(table, "new")
        self.assertEqual([r[0] for r in rows], ["nginx", "haproxy", "dockhand"])
        self.assertEqual(rows[2][3], bl.fmt_ratio(0.7))
        self.assertEqual(bl.handshake_rows(table, "reuse")[1][1], "failed: connect refused")
        goals = bl.handshake_goals(table)
        self.assertEqual(goals[0][2], "met")
        self.assertEqual(goals[1][2], "not measured")
        table["new"]["dockhand"]["cpu_us"] = 81.0
        self.assertEqual(bl.handshake_goals(table)[0][2], "missed")

class Update(unittest.TestCase):
    def test_step_totals_add_up_each_kind(self):
        steps = [{"step": "check", "duration_ms": 9}, {"step": "fetch", "duration_ms": 40},
                 {"step": "build", "service": "a", "duration_ms": 5},
                 {"step": "build", "service": "b", "duration_ms": 7},
                 {"step": "gate", "duration_ms": 300}, {"step": "drain", "duration_ms": 80}]
        self.assertEqual(bl.step_totals(steps),
                         {"check": 9, "fetch": 40, "build": 12, "gate": 300, "swap": 0})
        self.assertEqual(bl.step_totals(None), dict.fromkeys(bl.UPDATE_PARTS, 0))

    def test_push_split_takes_medians_and_the_rest(self):
        parts = {"check": 10, "fetch": 40, "build": 0, "gate": 300, "swap": 1}
        rounds = [
            {"push_to_serving_ms": 500.0, "hook_to_serving_ms": 400.0, "steps": parts},
            {"push_to_serving_ms": 700.0, "hook_to_serving_ms": 600.0,
             "steps": dict(parts, gate=500)},
            # A round whose check was not read still counts in the totals.
            {"push_to_serving_ms": 900.0, "hook_to_serving_ms": 800.0, "steps": None},
        ]
        s = bl.push_split(rounds)
        self.assertEqual(s["push_to_serving_ms"], 700.0)
        self.assertEqual(s["hook_to_serving_ms"], 600.0)
        self.assertEqual(s["gate"], 400)
        self.assertEqual(s["fetch"], 40)
        self.assertEqual(s["rest"], 49.0)
        # The parts never leave a negative rest.
        s = bl.push_split([{"hook_to_serving_ms": 10.0, "steps": parts}])
        self.assertEqual(s["rest"], 0.0)

    def test_goals_need_no_write_and_little_cpu(self):
        ok = {"written_bytes": 0, "files_changed": 0, "checks": 20, "cpu_ms_per_check": 12.0,
              "agent_cpu_ms_per_check": 2.0}
        self.assertEqual([g[2] for g in bl.update_goals(ok)], ["met", "met"])
        bad = dict(ok, written_bytes=4096, cpu_ms_per_check=80.0)
        self.assertEqual([g[2] for g in bl.update_goals(bad)], ["missed", "missed"])
        changed = dict(ok, files_changed=1)
        self.assertEqual(bl.update_goals(changed)[0][2], "missed")
        self.assertEqual([g[2] for g in bl.update_goals("not run: git is not installed")],
                         ["not measured", "not measured"])


class Metrics(unittest.TestCase):
    def test_ratio_and_goal(self):
        on = [{"cpu_us": 20.6, "rps": 30000.0, "p99_us": 900.0},
              {"cpu_us": 20.4, "rps": 31000.0, "p99_us": 950.0}]
        off = [{"cpu_us": 20.0, "rps": 31000.0, "p99_us": 900.0},
               {"cpu_us": 20.0, "rps": 32000.0, "p99_us": 900.0}]
        s = bl.metrics_summary(on, off)
        self.assertAlmostEqual(s["cpu_ratio"], 1.025)
        self.assertEqual(s["rounds"], 2)
        goal = bl.metrics_goals(s)
        self.assertEqual(goal[0][2], "met")
        self.assertIn("1.025×", goal[0][1])
        rows = bl.metrics_rows(s)
        self.assertEqual(rows[-1][0], "on / off")
        self.assertEqual(rows[-1][2], "1.025×")
        worse = bl.metrics_summary([{"cpu_us": 21.0}], [{"cpu_us": 20.0}])
        self.assertEqual(bl.metrics_goals(worse)[0][2], "missed")
        self.assertEqual(bl.metrics_goals("not run (--only)")[0][2], "not measured")

    def test_policies_goal_is_at_most_1_1_times_off(self):
        s = bl.metrics_summary([{"cpu_us": 33.0, "rps": 1, "p99_us": 1}],
                               [{"cpu_us": 30.0, "rps": 1, "p99_us": 1}])
        self.assertEqual(bl.policies_goals(s)[0][2], "met")  # 1.10x
        s = bl.metrics_summary([{"cpu_us": 34.0, "rps": 1, "p99_us": 1}],
                               [{"cpu_us": 30.0, "rps": 1, "p99_us": 1}])
        self.assertEqual(bl.policies_goals(s)[0][2], "missed")
        self.assertIn("issue 17", bl.policies_goals(s)[0][0])



class Idle(unittest.TestCase):
    def test_goals_in_megabytes_and_percent_of_a_core(self):
        idle = {"rss_kib": 19_000, "rss_anon_kib": 2_400, "rss_file_kib": 16_600,
                "cpu_pct": 0.12}
        rss, cpu = bl.idle_goals(idle)
        self.assertEqual((rss[2], cpu[2]), ("met", "met"))
        self.assertIn("19.5 MB (2.3 MiB anonymous, 16.2 MiB file)", rss[1])
        # 20 MB is 19,531 KiB: 19,600 KiB misses it.
        rss, cpu = bl.idle_goals(dict(idle, rss_kib=19_600, cpu_pct=0.5))
        self.assertEqual((rss[2], cpu[2]), ("missed", "missed"))
        self.assertEqual([g[2] for g in bl.idle_goals({"skipped": "python3 is missing"})],
                         ["not measured", "not measured"])
        self.assertEqual(bl.idle_goals("not run (--only)")[0][1], "not run (--only)")

if __name__ == "__main__":
    unittest.main()


class Backups(unittest.TestCase):
    def test_cgroup_cpu_reads_v2_and_v1(self):
        self.assertEqual(bl.parse_cgroup_cpu_s("cpu.stat", "usage_usec 2500000\nuser_usec 1\n"),
                         2.5)
        self.assertEqual(bl.parse_cgroup_cpu_s("cpuacct.usage", "1500000000\n"), 1.5)
        self.assertEqual(bl.fmt_bytes(30 * 1024), "30.0 KiB")
        self.assertEqual(bl.fmt_bytes(3 << 20), "3.0 MiB")
        self.assertIsNone(bl.parse_cgroup_cpu_s("cpu.stat", "user_usec 1\n"))

    def runs(self, dh_seconds, rss_small, rss_big):
        db = 800 << 20
        return [
            {"scale": 10, "tool": "dockhand", "seconds": 2.0, "cpu_s": 1.0, "db_bytes": db // 5,
             "rss_peak_kib": rss_small},
            {"scale": 50, "tool": "pg_dump | zstd", "seconds": 10.0, "cpu_s": 12.0,
             "db_bytes": db},
            {"scale": 50, "tool": "dockhand", "seconds": dh_seconds, "cpu_s": 9.0, "db_bytes": db,
             "rss_peak_kib": rss_big, "stored_bytes": 50 << 20},
            {"scale": 50, "tool": "dockhand", "seconds": dh_seconds + 2, "cpu_s": 9.5,
             "db_bytes": db, "rss_peak_kib": rss_big - 100},
            {"scale": 50, "tool": "pg_restore", "seconds": 20.0, "cpu_s": None, "db_bytes": db},
            {"scale": 50, "tool": "dockhand restore", "seconds": 30.0, "cpu_s": None,
             "db_bytes": db},
        ]

    def test_summary_takes_medians_and_the_peak(self):
        s = bl.backup_summary(self.runs(10.0, 20000, 21000))
        self.assertEqual(s[50]["dockhand"]["seconds"], 11.0)
        self.assertEqual(s[50]["dockhand"]["rss_peak_kib"], 21000)
        self.assertAlmostEqual(s[50]["pg_dump | zstd"]["mib_s"], 80.0)
        rows = bl.backup_rows(s)
        self.assertEqual([r[2] for r in rows],
                         ["dockhand", "pg_dump | zstd", "dockhand", "pg_restore",
                          "dockhand restore"])

    def test_goals_compare_throughput_and_rss_across_scales(self):
        goals = bl.backup_goals(bl.backup_summary(self.runs(10.0, 20000, 21000)))
        self.assertEqual(goals[0][2], "met")        # 10/11 = 0.91×
        self.assertEqual(goals[1][2], "met")        # +5 %
        self.assertEqual(goals[2][1], "1.50×")
        goals = bl.backup_goals(bl.backup_summary(self.runs(14.0, 20000, 26000)))
        self.assertEqual(goals[0][2], "missed")
        self.assertEqual(goals[1][2], "missed")
        self.assertEqual(bl.backup_goals({})[0][2], "not measured")


class Remote(unittest.TestCase):
    def test_medians_and_ratios(self):
        rounds = [
            {"deploy_bytes": 1000, "deploy_ms": 900.0, "save_bytes": 30_000_000, "save_ms": 2000.0},
            {"deploy_bytes": 1200, "deploy_ms": 1100.0, "save_bytes": 30_000_000, "save_ms": 2200.0},
            {"deploy_bytes": 1100, "deploy_ms": 1000.0, "save_bytes": 30_000_000, "save_ms": 2100.0},
        ]
        s = bl.summarize_remote(rounds)
        self.assertEqual(s["deploy_bytes"], 1100)
        self.assertAlmostEqual(s["bytes_ratio"], 1100 / 30_000_000)
        self.assertAlmostEqual(s["time_ratio"], 1000.0 / 2100.0)
        ((_, measured, verdict),) = bl.remote_goals(s)
        self.assertEqual(verdict, "met")
        self.assertIn("1.1 KiB vs 28.6 MiB", measured)

    def test_a_full_transfer_misses_the_goal_and_nothing_is_not_measured(self):
        s = bl.summarize_remote([{"deploy_bytes": 5, "deploy_ms": 1, "save_bytes": 10, "save_ms": 1}])
        self.assertEqual(bl.remote_goals(s)[0][2], "missed")
        self.assertEqual(bl.remote_goals("skipped: no Docker")[0][2], "not measured")
        self.assertEqual(bl.remote_goals(bl.summarize_remote([]))[0][2], "not measured")

    def test_bytes_format(self):
        self.assertEqual(bl.fmt_bytes(812), "812 B")
        self.assertEqual(bl.fmt_bytes(4300), "4.2 KiB")
        self.assertEqual(bl.fmt_bytes(None), "—")


class Static(unittest.TestCase):
    def test_goals_compare_against_nginx(self):
        table = {
            "1 KB": {"dockhand": {"cpu_us": 10.0}, "nginx": {"cpu_us": 12.0}},
            "100 KB": {"dockhand": {"cpu_us": 30.0}, "nginx": {"cpu_us": 20.0}},
            "1 MB": {"dockhand": {"mib_s": 950.0}, "nginx": {"mib_s": 1000.0}},
            "gzip 100 KB JSON": {"dockhand": {"cpu_us": 900.0}, "nginx": {"cpu_us": 1000.0}},
        }
        goals = bl.static_goals(table)
        self.assertEqual([g[2] for g in goals], ["met", "missed", "met", "reported"])
        self.assertIn("0.90×", goals[3][1])
        self.assertEqual(bl.static_goals({})[0][2], "not measured")

    def test_rows_list_every_peer_and_reasons(self):
        table = {"1 KB": {"dockhand": {"rps": 1000.0, "cpu_us": 10.0, "p99_us": 900.0},
                          "caddy": "not installed"}}
        rows = bl.static_rows(table, ["dockhand", "nginx", "caddy"])
        self.assertEqual(rows[0][:2], ["1 KB", "dockhand"])
        self.assertEqual(rows[1], ["1 KB", "caddy", "not installed", "", "", ""])

    def test_static_configs_name_the_root_and_port(self):
        conf = peers.nginx_static_conf("/w", 8081, "/w/site")
        self.assertIn("open_file_cache", conf)
        self.assertIn("sendfile on", conf)
        self.assertIn("root /w/site;", conf)
        self.assertIn('static = "/w/site"', peers.dockhand_static_toml(8082, "/w/site"))
        self.assertIn("file_server", peers.caddy_static(8083, "/w/site"))


def _wrk(requests, rps, p99):
    return WRK_OUTPUT.replace("219456 requests", f"{requests} requests").replace(
        "43882.17", str(rps)).replace("99%  850.00us", f"99%  {p99}")


class Cluster(unittest.TestCase):
    OVERLAY = [
        {"target": "local", "wrk": _wrk(100000, 20000.0, "2.00ms"),
         "ingress_cpu_ns": 2_000_000_000, "task_cpu_ns": 1_000_000_000},
        {"target": "remote", "wrk": _wrk(80000, 16000.0, "3.00ms"),
         "ingress_cpu_ns": 2_400_000_000, "task_cpu_ns": 800_000_000},
        {"target": "remote", "wrk": _wrk(80000, 16000.0, "5.00ms"),
         "ingress_cpu_ns": 2_400_000_000, "task_cpu_ns": 800_000_000},
        {"target": "local", "wrk": _wrk(100000, 22000.0, "2.00ms"),
         "ingress_cpu_ns": 2_000_000_000, "task_cpu_ns": 1_000_000_000},
    ]

    def test_overlay_is_compared_per_request_against_the_local_task(self):
        s = bl.cluster_overlay_summary(self.OVERLAY)
        self.assertAlmostEqual(s["local"]["ingress_cpu_us"], 20.0)
        self.assertAlmostEqual(s["remote"]["ingress_cpu_us"], 30.0)
        self.assertAlmostEqual(s["local"]["rps"], 21000.0)
        self.assertAlmostEqual(s["remote"]["p99_us"], 4000.0)
        self.assertEqual(s["local"]["runs"], 2)
        # wrk's fixture counts 1+2+3+4 socket errors and 5 non-2xx: 15 per run.
        self.assertEqual(s["remote"]["errors"], 30)
        self.assertAlmostEqual(s["ratio"]["ingress_cpu_us"], 1.5)
        self.assertAlmostEqual(s["ratio"]["p99_us"], 2.0)
        rows = bl.cluster_overlay_rows(s)
        self.assertEqual(len(rows), 3)
        self.assertEqual(rows[2][4], "1.50×")
        self.assertEqual(len(rows[0]), len(bl.CLUSTER_OVERLAY_HEADER))

    def test_a_missing_target_leaves_the_ratio_empty(self):
        s = bl.cluster_overlay_summary(self.OVERLAY[:1])
        self.assertIsNone(s["remote"])
        self.assertIsNone(s["ratio"]["ingress_cpu_us"])
        self.assertEqual(bl.cluster_overlay_rows(s)[1][1], "—")

    def test_deploys_take_medians_and_the_slowest_node(self):
        deploys = [
            {"command_ms": 9000.0, "all_nodes_ms": 8000.0,
             "nodes": {"m1": {"serving_ms": 7000.0, "first_new_ms": 6000.0},
                       "w1": {"serving_ms": 8000.0, "first_new_ms": 6500.0}}},
            {"command_ms": 11000.0, "all_nodes_ms": 12000.0,
             "nodes": {"m1": {"serving_ms": 9000.0, "first_new_ms": 7000.0},
                       "w1": {"serving_ms": 12000.0, "first_new_ms": 7500.0}}},
        ]
        s = bl.cluster_deploy_summary(deploys)
        self.assertEqual(s["deploys"], 2)
        self.assertAlmostEqual(s["command_ms"], 10000.0)
        self.assertAlmostEqual(s["all_nodes_ms"], 10000.0)
        self.assertAlmostEqual(s["all_nodes_max_ms"], 12000.0)
        self.assertAlmostEqual(s["nodes"]["w1"]["serving_ms"], 10000.0)
        self.assertAlmostEqual(s["nodes"]["m1"]["first_new_ms"], 6500.0)

    def test_the_dead_node_stops_at_its_last_failure_or_answer(self):
        d = bl.cluster_dead_summary({
            "new_connections": {"last_failure_ms": 1500.0, "last_w1_answer_ms": 900.0,
                                "failed_after_kill": 3},
            "keep_alive": {"last_failure_ms": None, "last_w1_answer_ms": 2500.0,
                           "failed_after_kill": 1}})
        self.assertEqual(d["new_connections"]["stopped_ms"], 1500.0)
        self.assertEqual(d["keep_alive"]["stopped_ms"], 2500.0)
        self.assertEqual(d["stopped_ms"], 2500.0)
        self.assertEqual(d["failed_after_kill"], 4)
        d = bl.cluster_dead_summary({
            "new_connections": {"last_failure_ms": None, "last_w1_answer_ms": None,
                                "failed_after_kill": 0},
            "keep_alive": {"last_failure_ms": None, "last_w1_answer_ms": None,
                           "failed_after_kill": 0}})
        self.assertIsNone(d["stopped_ms"])
        self.assertIsNone(d["keep_alive"]["stopped_ms"])
        self.assertEqual(d["failed_after_kill"], 0)

    def test_goals_are_reported_or_say_why_not(self):
        cl = {"overlay": bl.cluster_overlay_summary(self.OVERLAY),
              "deploys": bl.cluster_deploy_summary([{"command_ms": 1.0, "all_nodes_ms": 2.0,
                                                      "nodes": {}}]),
              "dead_node": bl.cluster_dead_summary({
                  "new_connections": {"last_failure_ms": 1500.0, "last_w1_answer_ms": None,
                                      "failed_after_kill": 3}})}
        goals = bl.cluster_goals(cl)
        self.assertEqual([g[2] for g in goals], ["reported"] * 3)
        self.assertIn("CPU 1.50×", goals[0][1])
        self.assertIn("3 failed", goals[2][1])
        cl["dead_node"]["served_by_w1_before"] = False
        self.assertEqual(bl.cluster_goals(cl)[2][2], "not measured")
        missing = bl.cluster_goals("not run: no Docker Engine answers")
        self.assertEqual([g[2] for g in missing], ["not measured"] * 3)
        self.assertEqual(missing[0][1], "not run: no Docker Engine answers")


class Capacity(unittest.TestCase):
    @staticmethod
    def _g(count, rss_kib, cpu_ms, anon_kib=None):
        return {"count": count, "rss_kib": rss_kib, "anon_kib": anon_kib or rss_kib // 2,
                "file_kib": rss_kib - (anon_kib or rss_kib // 2), "pss_kib": rss_kib // 4,
                "cpu_ms": cpu_ms}

    def test_footprint_sums_the_platform_and_keeps_the_tasks_apart(self):
        g = self._g
        w = {"seconds": 10.0, "nodes": {
            "m1": {"engine": {"dockerd": g(1, 40 * 1024, 100.0),
                              "containerd": g(1, 20 * 1024, 50.0),
                              "containerd-shim": g(2, 8 * 1024, 10.0),
                              "sshd": g(1, 5 * 1024, 0.0)},
                   "containers": {"ingress": g(1, 12 * 1024, 40.0),
                                  "local": g(1, 4 * 1024, None)}},
            "w1": {"engine": {"dockerd": g(1, 30 * 1024, 0.0)}, "containers": {}}}}
        f = bl.capacity_footprint(w)
        m1 = f["m1"]
        self.assertEqual(m1["role"], "manager")
        self.assertEqual(f["w1"]["role"], "worker")
        self.assertAlmostEqual(m1["dockerd"]["rss_mib"], 40.0)
        self.assertAlmostEqual(m1["dockerd"]["cpu_pct"], 1.0)  # 100 ms in 10 s
        self.assertEqual(m1["containerd-shim"]["count"], 2)
        # The node's sshd (the fixture's) is not the platform's.
        self.assertAlmostEqual(m1["platform_mib"], 40 + 20 + 8 + 12)
        self.assertAlmostEqual(m1["platform_pss_mib"], (40 + 20 + 8 + 12) / 4)
        self.assertAlmostEqual(m1["platform_cpu_pct"], 1.0 + 0.5 + 0.1 + 0.4)
        self.assertEqual(m1["tasks"], {"count": 1, "rss_mib": 4.0})
        self.assertEqual(f["w1"]["ingress"]["count"], 0)
        self.assertIsNone(f["w1"]["containerd"]["rss_mib"])

    def test_raft_growth_is_the_median_step_between_releases(self):
        samples = [
            {"after": "no release", "configs": 0, "config_bytes": 0, "wal_written_bytes": 1000,
             "dockerd_rss_kib": 50_000},
            {"after": "r1", "configs": 3, "config_bytes": 9000, "wal_written_bytes": 60_000,
             "dockerd_rss_kib": 60_000},
            {"after": "r2", "configs": 4, "config_bytes": 12_000, "wal_written_bytes": 80_000,
             "dockerd_rss_kib": 61_000},
            {"after": "r3", "configs": 5, "config_bytes": 15_500, "wal_written_bytes": 110_000,
             "dockerd_rss_kib": 61_500},
            {"after": "r4", "configs": 6, "config_bytes": 18_500, "wal_written_bytes": 125_000,
             "dockerd_rss_kib": 61_700},
        ]
        r = bl.raft_growth(samples)
        self.assertEqual(r["releases"], 4)
        per = r["per_release"]
        self.assertEqual(per["configs"], 1)
        self.assertEqual(per["config_bytes"], 3000)
        self.assertEqual(per["wal_written_bytes"], 20_000)
        self.assertEqual(per["dockerd_rss_kib"], 500)
        self.assertEqual(r["last"]["after"], "r4")
        self.assertEqual(bl.raft_growth([])["per_release"]["configs"], None)

    def test_scale_steps_give_what_each_added_replica_costs(self):
        g = self._g

        def step(replicas, per_worker, ingress_ms):
            nodes = {"m1": {"engine": {}, "containers": {"ingress": g(1, 10 * 1024, ingress_ms),
                                                         "local": g(1, 3 * 1024, 0.0)}}}
            for h in ("w1", "w2"):
                nodes[h] = {"engine": {"dockerd": g(1, (40 + per_worker) * 1024, 100.0),
                                       "containerd": g(1, 20 * 1024, 0.0),
                                       "containerd-shim": g(per_worker + 1,
                                                            (per_worker + 1) * 1024, 0.0)},
                            "containers": {"ingress": g(1, 10 * 1024, ingress_ms),
                                           "spread": g(per_worker, per_worker * 4 * 1024,
                                                       per_worker * 10.0)}}
            return {"replicas": replicas, "converge_ms": 1000.0 * replicas,
                    "window": {"seconds": 10.0, "nodes": nodes}}

        steps = [step(2, 1, 100.0), step(10, 5, 180.0), {"replicas": 2, "converge_ms": 500.0}]
        s = bl.scale_steps(steps)
        self.assertEqual(len(s["steps"]), 2)  # the step without a window is not a row
        first, last = s["steps"]
        self.assertEqual(first["per_node"], {"w1": 1, "w2": 1})
        self.assertEqual(last["per_node"], {"w1": 5, "w2": 5})
        self.assertEqual(last["ingress_nodes"], 3)
        self.assertEqual(last["routed_tasks"], 11)  # local on m1, 5 spread on each worker
        per = s["per_replica"]
        self.assertAlmostEqual(per["tasks_mib"], 4.0)
        self.assertAlmostEqual(per["shims_mib"], 1.0)
        self.assertAlmostEqual(per["engine_mib"], 1.0)
        self.assertAlmostEqual(per["total_mib"], 6.0)
        # PSS: a quarter of each RSS in the fixture.
        self.assertAlmostEqual(per["shims_pss_mib"], 0.25)
        self.assertAlmostEqual(per["total_pss_mib"], 1.5)
        # 8 more tasks probed by 3 ingresses: 24 probes/s more; the three ingresses spent
        # 3 × 80 ms more in 10 s (2.4 % of a core): 24 ms/s over 24 probes/s = 1,000 µs each.
        self.assertAlmostEqual(per["ingress_us_per_probe"], 1000.0)
        # Each spread task 10 ms in 10 s: 0.1 % of a core per replica.
        self.assertAlmostEqual(per["workload_cpu_pct"], 0.1)
        self.assertEqual(bl.scale_steps(steps[:1])["per_replica"], {})

    def test_scale_steps_count_the_same_nodes_at_every_step(self):
        g = self._g

        def node(spread):
            containers = {"spread": g(spread, spread * 1024, 0.0)} if spread else {}
            return {"engine": {"dockerd": g(1, 40 * 1024, 0.0)}, "containers": containers}

        # Both first tasks on w2 (a start-first update put them there), then 2 + 2.
        steps = [{"replicas": 2, "window": {"seconds": 1.0, "nodes": {"w1": node(0),
                                                                       "w2": node(2)}}},
                 {"replicas": 4, "window": {"seconds": 1.0, "nodes": {"w1": node(2),
                                                                       "w2": node(2)}}}]
        s = bl.scale_steps(steps)
        self.assertEqual(s["steps"][0]["per_node"], {"w1": 0, "w2": 2})
        # w1's engine is in both steps: a replica adds its task's memory, not a dockerd.
        self.assertAlmostEqual(s["steps"][0]["engine_mib"], 80.0)
        self.assertAlmostEqual(s["per_replica"]["engine_mib"], 0.0)
        self.assertAlmostEqual(s["per_replica"]["tasks_mib"], 1.0)

    def test_the_idle_agent_figures_come_from_their_section(self):
        doc = ("## Idle agent with the bundled example\n\ntext\n\n"
               "| agent RSS | of it anonymous / file | agent PSS |\n|---|---|---|\n"
               "| 11.6 MiB | 2.4 / 9.2 MiB | 9.8 MiB |\n\n## Remote\n")
        self.assertEqual(bl.idle_agent_figures(doc),
                         {"rss_mib": 11.6, "anon_mib": 2.4, "file_mib": 9.2})
        self.assertIsNone(bl.idle_agent_figures("## Remote\n| 1 MiB | 1 / 2 MiB |\n"))
        self.assertIsNone(bl.idle_agent_figures(
            "## Idle agent with the bundled example\n\nnot run (--only)\n\n## Remote\n"
            "| 1.0 MiB | 1.0 / 2.0 MiB |\n"))
