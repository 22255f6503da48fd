//! `dockhand status`: the app, its agent, the current release, each service's instances with
//! their state and health, and the databases. Exit 1 when something is not ready.

use std::process::ExitCode;

use console::style;
use dockhand_api::{DatabaseState, InstanceHealth, Request, StatusReport, SubsystemState};

use super::client::client;
use crate::output::{self, paint_state, print_json, short_duration};
use crate::Global;

pub fn run(g: &Global) -> anyhow::Result<ExitCode> {
    let client = client(g)?;
    let report: StatusReport = client
        .call_typed(&Request::Status, |_| {})
        .map_err(|e| output::from_client(e, g.json))?;
    if g.json {
        print_json(&report);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} {}  agent pid {} up {}  proxy {}",
        style("app").dim(),
        style(&report.app).bold(),
        report.agent.pid,
        short_duration(report.agent.uptime_secs),
        report.agent.proxy_listen
    );
    for sub in &report.agent.subsystems {
        if sub.state != SubsystemState::Ready {
            println!(
                "{} {} {}{}",
                style("subsystem").dim(),
                sub.name,
                paint_state(&sub.state),
                sub.message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(https) = &report.agent.https_listen {
        println!("{} {https}", style("https").dim());
        for cert in &report.agent.certificates {
            println!(
                "{} {}  expires {}  ({})",
                style("certificate").dim(),
                cert.names.join(", "),
                cert.not_after,
                cert.source.as_str()
            );
        }
        if report.agent.certificates.is_empty() {
            println!(
                "{} none yet: automatic certificates are being requested (`dockhand certs` shows progress)",
                style("certificate").yellow()
            );
        } else if let Some(soonest) = report
            .agent
            .certificates
            .iter()
            .min_by(|a, b| a.not_after.cmp(&b.not_after))
        {
            println!(
                "{} {} ({})",
                style("soonest expiry").dim(),
                soonest.not_after,
                soonest.names.join(", ")
            );
        }
    }
    match &report.current_release {
        Some(r) => println!(
            "{} {} (since {})",
            style("release").dim(),
            style(r.id).bold(),
            r.activated_at.as_deref().unwrap_or(&r.created_at)
        ),
        None => println!("{} none deployed yet", style("release").dim()),
    }
    if let Some(lock) = &report.deploying {
        println!(
            "{} {} by {} since {}",
            style("in progress").yellow(),
            lock.operation,
            lock.holder,
            lock.since
        );
    }
    if let Some(c) = &report.canary {
        println!(
            "{} release {} takes {} of the requests of {} (step {}/{}) beside release {}",
            style("canary").yellow(),
            c.release,
            dockhand_config::share_text(c.share),
            c.services.join(", "),
            c.step,
            c.steps,
            c.serving
        );
    }
    for url in &report.urls {
        println!("{} {}", style("url").dim(), style(url).underlined());
    }
    let mut all_healthy = true;
    for svc in &report.services {
        let ready = svc.instances.iter().filter(|i| i.is_ready()).count();
        all_healthy &= ready == svc.instances.len();
        println!(
            "\n{} {}/{} ready{}",
            style(&svc.name).bold(),
            ready,
            svc.replicas,
            match (svc.routes.len(), &svc.route) {
                (0 | 1, Some(r)) => format!("  route {r}"),
                (0, None) => String::new(),
                _ => format!("  routes {}", svc.routes.join(", ")),
            }
        );
        if let Some(t) = &svc.traffic {
            println!(
                "  {:.1} req/s  5xx {:.1} %  p99 {}  (last {} min)",
                t.per_second,
                t.error_ratio * 100.0,
                t.p99_ms
                    .map(|p| format!("≤{p} ms"))
                    .unwrap_or_else(|| "-".into()),
                t.window_secs / 60
            );
        }
        for i in &svc.instances {
            println!(
                "  {:<22} {:<10} {:<10} pid {:<7} port {:<6} up {:<6} restarts {}",
                i.id,
                paint_state(&i.state),
                paint_state(&i.health),
                i.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                i.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                short_duration(i.uptime_secs),
                i.restarts
            );
            if i.health == InstanceHealth::Unhealthy {
                if let Some(p) = &i.last_probe {
                    println!("    {}", style(p).red());
                }
            }
        }
    }
    if let Some(h) = &report.host {
        let disks: Vec<String> = h
            .disks
            .iter()
            .map(|d| format!("{} {:.0} %", d.mount, d.used_ratio * 100.0))
            .collect();
        println!(
            "\n{} cpu {}  memory {:.0} %  load {:.2}  disk {}",
            style("host").bold(),
            h.cpu_ratio
                .map(|c| format!("{:.0} %", c * 100.0))
                .unwrap_or_else(|| "-".into()),
            h.memory_used_ratio * 100.0,
            h.load1,
            disks.join(", ")
        );
    }
    for c in &report.certificate_days {
        let days = format!("{} days left", c.days_left);
        println!(
            "{} {}  {}",
            style("certificate").dim(),
            c.host,
            if c.days_left < 14 {
                style(days).red().to_string()
            } else {
                days
            }
        );
    }
    for b in &report.backups {
        println!(
            "{} {}  last backup {}  last verified restore {}{}",
            style("backup").dim(),
            b.source,
            b.last_backup.as_deref().unwrap_or("never"),
            b.last_verified.as_deref().unwrap_or("never"),
            if b.drill_failed {
                style("  (the last drill failed)").red().to_string()
            } else {
                String::new()
            }
        );
    }
    for c in &report.checks {
        let state = match c.state {
            dockhand_api::CheckState::Passing => style("passing").green(),
            dockhand_api::CheckState::Failing => style("failing").red(),
            dockhand_api::CheckState::Unknown => style("unknown").yellow(),
        };
        println!(
            "{} {} {}  {}{}{}",
            style("check").dim(),
            c.name,
            state,
            c.target,
            c.since_secs
                .map(|s| format!(" for {}", short_duration(s)))
                .unwrap_or_default(),
            if c.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", c.detail)
            }
        );
    }
    for a in &report.alerts {
        println!(
            "{} {} ({}) since {}: {}",
            style("ALERT").red().bold(),
            a.rule,
            a.subject,
            a.since,
            a.summary
        );
    }
    for db in &report.databases {
        all_healthy &= db.state == DatabaseState::Running;
        println!(
            "\n{} {} {}  {}{}",
            style(&db.name).bold(),
            style(&db.engine).dim(),
            paint_state(&db.state),
            db.image,
            db.publish
                .as_ref()
                .map(|p| format!("  published {p}"))
                .unwrap_or_default()
        );
        if let Some(problem) = &db.problem {
            println!("    {}", style(problem).red());
        }
    }
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(output::FAILED)
    })
}
