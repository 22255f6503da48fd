//! The pages: each reads what it shows through API requests and renders HTML with `maud`
//! (which escapes every value). Readable without JavaScript; the script only refreshes the
//! main content live. Nothing here holds a secret: the API's answers are redacted.

use dockhand_api::{
    AlertsReport, BackupSummary, CanaryProgress, CertsReport, DashboardRole, Event, InstanceHealth,
    MetricsReport, MetricsRequest, ReleaseConfig, ReleaseInfo, ReleaseStatus, Request,
    StatusReport, TasksReport, VerifyState,
};
use maud::{html, Markup, DOCTYPE};

use crate::chart::{self, Window};
use crate::server::{App, Viewer};

fn shell(v: &Viewer, title: &str, current: &str, main: Markup) -> Markup {
    if v.partial {
        return main;
    }
    // A confirmation page is not refreshed under the person reading it.
    let live = !title.starts_with("Roll back") && !title.starts_with("Restore");
    let nav = [
        ("/", "Overview"),
        ("/deploys", "Deploys"),
        ("/backups", "Backups"),
        ("/alerts", "Alerts"),
        ("/tasks", "Tasks"),
        ("/certificates", "Certificates"),
        ("/config", "Configuration"),
        ("/events", "Events"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Dockhand" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "Dockhand" }
                    nav aria-label="Pages" {
                        ul {
                            @for (href, name) in nav {
                                li {
                                    @if href == current {
                                        a href=(href) aria-current="page" { (name) }
                                    } @else {
                                        a href=(href) { (name) }
                                    }
                                }
                            }
                        }
                    }
                    form.logout method="post" action="/logout" {
                        span.who { (v.session.who) " · " (v.session.role.as_str()) }
                        input type="hidden" name="csrf" value=(v.session.csrf);
                        button type="submit" { "Log out" }
                    }
                }
                main #main data-live=[live.then_some(current)] tabindex="-1" {
                    (main)
                }
                footer {
                    p #live-status role="status" aria-live="polite" { "Live updates start when the page has loaded." }
                }
            }
        }
    }
}

fn flash(v: &Viewer) -> Markup {
    html! {
        @if let Some(f) = &v.session.flash {
            p.flash.(if f.ok { "ok" } else { "bad" }) role="alert" { (f.text) }
        }
    }
}

fn error_note(what: &str, e: &dockhand_api::ApiError) -> Markup {
    html! { p.note { (what) ": " (e.message) } }
}

fn csrf(v: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(v.session.csrf); }
}

fn is_operator(v: &Viewer) -> bool {
    v.session.role == DashboardRole::Operator
}

/// A page for someone without a session, or a refused request.
pub fn logged_out() -> Markup {
    bare(
        "Log in",
        html! {
            h1 { "Log in" }
            p { "Open the dashboard with a login link: run " code { "dockhand dashboard" } " on the server (or with " code { "-d DESTINATION" } " from your machine) and open the link it prints. Each link works once, within ten minutes." }
        },
    )
}

/// A short message page (a refused action or login).
pub fn refused(text: &str) -> Markup {
    bare(
        "Dockhand",
        html! {
            h1 { "Dockhand" }
            p { (text) }
            p { a href="/" { "Back to the overview" } }
        },
    )
}

fn bare(title: &str, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Dockhand" }
                link rel="stylesheet" href="/assets/app.css";
            }
            body { main #main { (main) } }
        }
    }
}

fn health_badge(ready: usize, total: usize) -> Markup {
    let (class, word) = if total == 0 {
        ("bad", "down")
    } else if ready == total {
        ("ok", "healthy")
    } else if ready == 0 {
        ("bad", "down")
    } else {
        ("warn", "degraded")
    };
    html! { span.badge.(class) { (word) " " (ready) "/" (total) } }
}

fn release_badge(s: ReleaseStatus) -> Markup {
    let class = match s {
        ReleaseStatus::Current => "ok",
        ReleaseStatus::Failed => "bad",
        ReleaseStatus::Pending => "warn",
        ReleaseStatus::Retired | ReleaseStatus::Pruned => "plain",
    };
    html! { span.badge.(class) { (s.as_str()) } }
}

/// "3m", "2h", "4d": how long for a number of seconds.
pub fn span(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// "2026-12-06 10:31" from RFC 3339.
fn when(ts: &str) -> String {
    ts.get(..16).unwrap_or(ts).replace('T', " ")
}

async fn series(app: &App, names: Vec<String>, window: u64) -> Vec<(String, Vec<(u64, f64)>)> {
    let req = Request::Metrics(MetricsRequest {
        series: names,
        window_secs: window,
    });
    match app.call::<MetricsReport>(req).await {
        Ok(r) => r.series.into_iter().map(|s| (s.name, s.points)).collect(),
        Err(_) => Vec::new(),
    }
}

pub async fn overview(app: &App, v: &Viewer, window: Window) -> Markup {
    let status = app.call::<StatusReport>(Request::Status).await;
    let certs = app.call::<CertsReport>(Request::Certs).await;
    let backups = app
        .call::<Vec<BackupSummary>>(Request::Backup(dockhand_api::BackupRequest::List))
        .await;
    let events = app
        .call::<Vec<Event>>(Request::Events {
            limit: 8,
            follow: false,
        })
        .await;
    let now = crate::now();
    let main = match &status {
        Err(e) => error_note("The agent did not answer", e),
        Ok(st) => {
            let names: Vec<String> = st
                .services
                .iter()
                .map(|s| format!("service:{}:requests_per_second", s.name))
                .collect();
            let charts = series(app, names, window.secs()).await;
            html! {
                h1 { "Overview of " (st.app) }
                (flash(v))
                section aria-labelledby="h-services" {
                    h2 #h-services { "Services" }
                    div.scroll tabindex="0" { table {
                        thead { tr { th scope="col" { "Service" } th scope="col" { "Health" } th scope="col" { "Since" } th scope="col" { "Requests/s (5 min)" } th scope="col" { "p99" } th scope="col" { "5xx" } } }
                        tbody {
                            @for s in &st.services {
                                @let ready = s.instances.iter().filter(|i| i.is_ready()).count();
                                @let since = s.instances.iter().filter(|i| i.is_ready()).map(|i| i.uptime_secs).min();
                                tr {
                                    th scope="row" { a href={ "/services/" (s.name) } { (s.name) } }
                                    td { (health_badge(ready, s.instances.len())) }
                                    td { @if let Some(secs) = since { "for " (span(secs)) } @else { "–" } }
                                    @if let Some(t) = &s.traffic {
                                        td { (chart::figure(t.per_second)) }
                                        td { @if let Some(p) = t.p99_ms { (chart::figure(p)) " ms" } @else { "–" } }
                                        td { (format!("{:.1} %", t.error_ratio * 100.0)) }
                                    } @else {
                                        td { "–" } td { "–" } td { "–" }
                                    }
                                }
                            }
                        }
                    } }
                    (chart::window_picker(window))
                    div.charts {
                        @for (name, points) in &charts {
                            @let service = name.trim_start_matches("service:").trim_end_matches(":requests_per_second");
                            (chart::sparkline(&format!("{service} requests/s, {}", window.label()), "/s", points, now.saturating_sub(window.secs()), now))
                        }
                    }
                }
                div.grid {
                    section aria-labelledby="h-release" {
                        h2 #h-release { "Current release" }
                        @match &st.current_release {
                            Some(r) => {
                                p.big #current-release { "Release " (r.id) }
                                p { "Live since " (r.activated_at.as_deref().map(when).unwrap_or_default()) " · " (r.note) }
                                @if let Some(rev) = &r.revision { p.small { "Revision " code { (short_rev(rev)) } @if let Some(a) = &r.revision_author { " by " (a) } } }
                                @if let Ok(evs) = &events {
                                    @if let Some(by) = evs.iter().rev().find(|e| e.release == Some(r.id) && (e.kind == "deploy" || e.kind == "rollback") && e.message.contains("by ")) {
                                        p.small { (by.message) }
                                    }
                                }
                            }
                            None => p { "Nothing deployed yet." }
                        }
                        @if let Some(c) = &st.canary { (canary(c)) }
                        @if let Some(lock) = &st.deploying {
                            p.badge.warn { (lock.operation) " in progress, by " (lock.holder) }
                        }
                    }
                    section aria-labelledby="h-certs" {
                        h2 #h-certs { "Certificates" }
                        @match &certs {
                            Ok(c) if c.certificates.is_empty() => p { "None: the app is served over HTTP only." },
                            Ok(c) => ul.plain {
                                @for cert in &c.certificates {
                                    li { (cert.host) ": " @match cert.days_left { Some(d) if d < 14 => span.badge.warn { (d) " days left" }, Some(d) => span.badge.ok { (d) " days left" }, None => span.badge.plain { (cert.state.as_str()) } } }
                                }
                            },
                            Err(e) => (error_note("Certificates", e)),
                        }
                    }
                    section aria-labelledby="h-backups" {
                        h2 #h-backups { "Backups" }
                        @match &backups {
                            Ok(list) => {
                                @match list.first() {
                                    Some(b) => p { "Last backup " (when(&b.started_at)) ": " span.badge.(if b.state == dockhand_api::BackupState::Complete { "ok" } else { "bad" }) { (b.state.as_str()) } },
                                    None => p { "No backup yet." },
                                }
                                @match list.iter().find(|b| b.verify == VerifyState::Passed) {
                                    Some(b) => p { "Last verified restore: " (b.verified_at.as_deref().map(when).unwrap_or_default()) " (backup " (b.id) ")" },
                                    None => p { "No backup has been verified by a restore drill yet." },
                                }
                            }
                            Err(e) => (error_note("Backups", e)),
                        }
                    }
                    section aria-labelledby="h-alerts" {
                        h2 #h-alerts { "Active alerts" }
                        @if st.alerts.is_empty() {
                            p { span.badge.ok { "none" } " Nothing is firing." }
                        } @else {
                            ul.plain {
                                @for a in &st.alerts {
                                    li { span.badge.bad { (a.rule) } " " (a.summary) " · since " (when(&a.since)) @if a.silenced { " (silenced)" } }
                                }
                            }
                        }
                    }
                }
                section aria-labelledby="h-events" {
                    h2 #h-events { "Latest events" }
                    @match &events {
                        Ok(evs) => (event_list(evs.iter().rev())),
                        Err(e) => (error_note("Events", e)),
                    }
                }
            }
        }
    };
    shell(v, "Overview", "/", main)
}

/// Points with every value multiplied by `by` (a ratio shown in percent, bytes in MiB).
fn scaled(points: &[(u64, f64)], by: f64) -> Vec<(u64, f64)> {
    points.iter().map(|&(t, v)| (t, v * by)).collect()
}

fn short_rev(rev: &str) -> &str {
    rev.get(..16).unwrap_or(rev)
}

fn event_list<'a>(evs: impl Iterator<Item = &'a Event>) -> Markup {
    html! {
        ol.events #events {
            @for e in evs {
                li.(e.level.as_str()) { time datetime=(e.ts) { (when(&e.ts)) } " " span.kind { (e.kind) } " " (e.message) }
            }
        }
    }
}

/// A canary deploy in progress: its share of the traffic and its step.
fn canary(c: &CanaryProgress) -> Markup {
    let percent = f64::from(c.share) / 100.0;
    html! {
        section.canary aria-labelledby="h-canary" {
            h2 #h-canary { "Canary in progress" }
            p {
                "Release " (c.release) " takes " (chart::figure(percent)) " % of the requests to "
                (c.services.join(", ")) ", compared with release " (c.serving) ": step " (c.step) " of " (c.steps) "."
            }
            progress max=(c.steps) value=(c.step) aria-label={ "Canary step " (c.step) " of " (c.steps) } { (c.step) "/" (c.steps) }
        }
    }
}

pub async fn deploys(app: &App, v: &Viewer) -> Markup {
    let releases = app.call::<Vec<ReleaseInfo>>(Request::Releases).await;
    let in_progress = app
        .call::<StatusReport>(Request::Status)
        .await
        .ok()
        .and_then(|s| s.canary);
    let events = app
        .call::<Vec<Event>>(Request::Events {
            limit: 200,
            follow: false,
        })
        .await
        .unwrap_or_default();
    let current = releases.as_ref().ok().and_then(|rs| {
        rs.iter()
            .find(|r| r.status == ReleaseStatus::Current)
            .map(|r| r.id)
    });
    let main = html! {
        h1 { "Deploys" }
        (flash(v))
        @if let Some(c) = &in_progress { (canary(c)) }
        @if is_operator(v) {
            form.inline method="post" action="/deploys/deploy" {
                (csrf(v))
                button #deploy-now type="submit" { "Deploy the configuration now" }
            }
        }
        @match &releases {
            Err(e) => (error_note("Releases", e)),
            Ok(rs) => div.scroll tabindex="0" { table #releases {
                caption { "Releases, newest first. A retired release can be rolled back to." }
                thead { tr { th scope="col" { "Release" } th scope="col" { "Status" } th scope="col" { "Created" } th scope="col" { "Live since" } th scope="col" { "Revision" } th scope="col" { "By" } th scope="col" { "Action" } } }
                tbody {
                    @for r in rs {
                        tr {
                            th scope="row" { (r.id) }
                            td { (release_badge(r.status)) }
                            td { (when(&r.created_at)) }
                            td { (r.activated_at.as_deref().map(when).unwrap_or_default()) }
                            td { @if let Some(rev) = &r.revision { code { (short_rev(rev)) } } @if let Some(m) = &r.revision_message { " " (m) } }
                            td { @if let Some(e) = events.iter().find(|e| e.release == Some(r.id) && e.message.contains("by ")) { (e.message) } @else { (r.note) } }
                            td {
                                @if let Some(prev) = rs.iter().map(|p| p.id).filter(|&p| p < r.id).max() {
                                    a href={ "/deploys/diff?from=" (prev) "&to=" (r.id) } aria-label={ "Changes of release " (r.id) " from release " (prev) } { "Changes" }
                                    " "
                                }
                                @if r.status == ReleaseStatus::Retired && Some(r.id) != current {
                                    @if is_operator(v) {
                                        a.button href={ "/deploys/rollback?release=" (r.id) } { "Roll back to " (r.id) }
                                    } @else {
                                        span.small { "operators can roll back" }
                                    }
                                }
                            }
                        }
                    }
                }
            } },
        }
    };
    shell(v, "Deploys", "/deploys", main)
}

/// The serving release's configuration, read-only: secrets are `${secret.NAME}` references.
pub async fn config(app: &App, v: &Viewer) -> Markup {
    let found = app
        .call::<ReleaseConfig>(Request::ReleaseConfig { release: None })
        .await;
    let main = html! {
        h1 { "Configuration" }
        @match &found {
            Err(e) => (error_note("The configuration", e)),
            Ok(c) => {
                p { "The configuration release " (c.release) " runs with, read-only, as resolved from " code { "dockhand.toml" } ". Secrets appear as " code { "${secret.NAME}" } " references: their values are never shown." }
                pre.config #config tabindex="0" aria-label={ "Configuration of release " (c.release) } { (pretty(&c.config)) }
            }
        }
    };
    shell(v, "Configuration", "/config", main)
}

/// What changed in the configuration from release `from` to release `to`, a unified diff.
pub async fn diff(app: &App, v: &Viewer, from: i64, to: i64) -> Markup {
    let old = app
        .call::<ReleaseConfig>(Request::ReleaseConfig {
            release: Some(from),
        })
        .await;
    let new = app
        .call::<ReleaseConfig>(Request::ReleaseConfig { release: Some(to) })
        .await;
    let main = html! {
        h1 { "Release " (to) " against release " (from) }
        @match (&old, &new) {
            (Err(e), _) | (_, Err(e)) => (error_note("The configuration", e)),
            (Ok(a), Ok(b)) => {
                p { "What changed in the configuration. Secrets appear as " code { "${secret.NAME}" } " references: their values are never shown." }
                (config_diff(&pretty(&a.config), &pretty(&b.config)))
            }
        }
        p { a href="/deploys" { "Back to the deploys" } }
    };
    shell(v, "Changes", "/deploys", main)
}

/// A configuration as indented JSON, keys in order.
fn pretty(config: &serde_json::Value) -> String {
    serde_json::to_string_pretty(config).unwrap_or_default()
}

/// The lines that differ between `old` and `new`, with three lines of context around each
/// change; removed lines in `del`, added ones in `ins`.
pub fn config_diff(old: &str, new: &str) -> Markup {
    let diff = similar::TextDiff::from_lines(old, new);
    let groups = diff.grouped_ops(3);
    html! {
        @if groups.is_empty() {
            p #diff { "No change: both releases run the same configuration." }
        } @else {
            pre.diff #diff tabindex="0" aria-label="Configuration changes" {
                @for (i, group) in groups.iter().enumerate() {
                    @if i > 0 { span.gap { "…\n" } }
                    @for op in group {
                        @for change in diff.iter_changes(op) {
                            @match change.tag() {
                                similar::ChangeTag::Delete => del { "- " (change.value()) },
                                similar::ChangeTag::Insert => ins { "+ " (change.value()) },
                                similar::ChangeTag::Equal => span { "  " (change.value()) },
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn rollback_confirm(app: &App, v: &Viewer, release: i64) -> Markup {
    let current = app
        .call::<StatusReport>(Request::Status)
        .await
        .ok()
        .and_then(|s| s.current_release.map(|r| r.id));
    let main = html! {
        h1 { "Roll back to release " (release) "?" }
        p { "Release " (release) " will start beside the serving one" @if let Some(c) = current { " (" (c) ")" } ", pass its health checks, and take the traffic; the serving release then drains and stops. If release " (release) " does not get healthy, nothing changes." }
        @if is_operator(v) {
            form method="post" action="/deploys/rollback" {
                (csrf(v))
                input type="hidden" name="release" value=(release);
                button.danger #confirm-rollback type="submit" { "Roll back to release " (release) }
                " "
                a href="/deploys" { "Cancel" }
            }
        } @else {
            p.note { "Your session is a viewer's: it cannot roll back." }
        }
    };
    shell(v, "Roll back", "/deploys", main)
}

pub async fn backups(app: &App, v: &Viewer) -> Markup {
    let list = app
        .call::<Vec<BackupSummary>>(Request::Backup(dockhand_api::BackupRequest::List))
        .await;
    let main = html! {
        h1 { "Backups" }
        (flash(v))
        @if is_operator(v) {
            form.inline method="post" action="/backups/run" {
                (csrf(v))
                button #backup-now type="submit" { "Back up now" }
            }
        }
        @match &list {
            Err(e) => (error_note("Backups", e)),
            Ok(list) if list.is_empty() => p { "No backup yet." },
            Ok(list) => div.scroll tabindex="0" { table #backups {
                caption { "Backups, newest first" }
                thead { tr { th scope="col" { "Backup" } th scope="col" { "State" } th scope="col" { "Sources" } th scope="col" { "Size" } th scope="col" { "Verified" } th scope="col" { "Actions" } } }
                tbody {
                    @for b in list {
                        tr {
                            th scope="row" { (b.id) }
                            td { span.badge.(if b.state == dockhand_api::BackupState::Complete { "ok" } else { "bad" }) { (b.state.as_str()) } " " span.small { (b.trigger) } }
                            td { (b.sources.join(", ")) }
                            td { (bytes(b.stored_bytes)) }
                            td { span.badge.(match b.verify { VerifyState::Passed => "ok", VerifyState::Failed => "bad", VerifyState::Never => "plain" }) { (b.verify.as_str()) } }
                            td {
                                @if is_operator(v) && b.state == dockhand_api::BackupState::Complete {
                                    form.inline method="post" action="/backups/verify" {
                                        (csrf(v))
                                        input type="hidden" name="id" value=(b.id);
                                        button type="submit" aria-label={ "Verify backup " (b.id) } { "Verify" }
                                    }
                                    " "
                                    a.button href={ "/backups/restore?id=" (b.id) } aria-label={ "Restore backup " (b.id) } { "Restore" }
                                }
                            }
                        }
                    }
                }
            } },
        }
    };
    shell(v, "Backups", "/backups", main)
}

fn bytes(n: u64) -> String {
    match n {
        0..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.1} GiB", n as f64 / 1_073_741_824.0),
    }
}

pub async fn restore_confirm(app: &App, v: &Viewer, id: &str, problem: Option<&str>) -> Markup {
    let app_name = app
        .call::<StatusReport>(Request::Status)
        .await
        .map(|s| s.app)
        .unwrap_or_default();
    let main = html! {
        h1 { "Restore backup " (id) "?" }
        @if let Some(p) = problem { p.flash.bad role="alert" { (p) } }
        p { "The data of every source in backup " (id) " replaces what the app holds now; what it holds now is lost unless a newer backup has it." }
        @if is_operator(v) {
            form method="post" action="/backups/restore" {
                (csrf(v))
                input type="hidden" name="id" value=(id);
                label for="confirm" { "Type the app's name, " strong { (app_name) } ", to confirm" }
                input #confirm type="text" name="confirm" autocomplete="off" required spellcheck="false";
                button.danger #confirm-restore type="submit" { "Restore backup " (id) }
                " "
                a href="/backups" { "Cancel" }
            }
        } @else {
            p.note { "Your session is a viewer's: it cannot restore." }
        }
    };
    shell(v, "Restore", "/backups", main)
}

pub async fn service(app: &App, v: &Viewer, name: &str, window: Window) -> Markup {
    let status = app.call::<StatusReport>(Request::Status).await;
    // The monitor's latest figures of the service, for the line above its charts.
    let top = app
        .call::<dockhand_api::TopReport>(Request::Top)
        .await
        .ok()
        .and_then(|t| t.services.into_iter().find(|s| s.name == name));
    let now = crate::now();
    let names: Vec<String> = [
        "requests_per_second",
        "p50_ms",
        "p99_ms",
        "error_ratio",
        "cpu_ratio",
        "memory_bytes",
    ]
    .iter()
    .map(|m| format!("service:{name}:{m}"))
    .collect();
    let charts = series(app, names, window.secs()).await;
    // The host's figures, shared by every service: CPU, memory and each disk's use.
    let mut host_names = vec![
        "host:cpu_ratio".to_string(),
        "host:memory_used_ratio".to_string(),
    ];
    host_names.extend(
        series(app, Vec::new(), 0)
            .await
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with("host:disk:")),
    );
    let host = series(app, host_names, window.secs()).await;
    // The service's health history: its health and restart events, newest first.
    let history: Vec<Event> = app
        .call::<Vec<Event>>(Request::Events {
            limit: 500,
            follow: false,
        })
        .await
        .unwrap_or_default()
        .into_iter()
        .rev()
        .filter(|e| {
            e.service.as_deref() == Some(name) && matches!(e.kind.as_str(), "health" | "restart")
        })
        .take(20)
        .collect();
    let since = now.saturating_sub(window.secs());
    let logs = {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (_h, hangup) = tokio::sync::watch::channel(false);
        let req = Request::Logs(dockhand_api::LogsRequest {
            service: Some(name.to_string()),
            tail: Some(50),
            ..Default::default()
        });
        let _ = app.backend.call(req, tx, hangup).await;
        let mut lines = Vec::new();
        while let Ok(dockhand_api::Frame::Log(l)) = rx.try_recv() {
            lines.push(l);
        }
        lines
    };
    let main = match status {
        Err(e) => error_note("The agent did not answer", &e),
        Ok(st) => match st.services.iter().find(|s| s.name == name) {
            None => {
                html! { h1 { "No service " (name) } p { a href="/" { "Back to the overview" } } }
            }
            Some(s) => html! {
                h1 { "Service " (s.name) }
                p { (s.replicas) " replica(s)" @if let Some(r) = &s.route { " · route " code { (r) } } }
                @if let Some(t) = &top {
                    p #now {
                        "Now: CPU "
                        @if let Some(c) = t.cpu_cores { (format!("{:.0} %", c * 100.0)) " of a core" } @else { "–" }
                        " · memory " (format!("{:.1} MiB", t.memory_bytes as f64 / 1_048_576.0))
                        " · " (format!("{:.1}", t.requests_per_second)) " requests/s"
                    }
                }
                h2 { "Instances" }
                div.scroll tabindex="0" { table {
                    thead { tr { th scope="col" { "Instance" } th scope="col" { "Release" } th scope="col" { "State" } th scope="col" { "Health" } th scope="col" { "Restarts" } th scope="col" { "Up for" } th scope="col" { "Last probe" } } }
                    tbody {
                        @for i in &s.instances {
                            tr {
                                th scope="row" { code { (i.id) } }
                                td { (i.release) }
                                td { (i.state.as_str()) }
                                td { span.badge.(match i.health { InstanceHealth::Healthy => "ok", InstanceHealth::Unhealthy => "bad", _ => "plain" }) { (i.health.as_str()) } }
                                td { (i.restarts) }
                                td { (span(i.uptime_secs)) }
                                td.small { (i.last_probe.as_deref().unwrap_or("–")) }
                            }
                        }
                    }
                } }
                h2 #h-charts { "Figures, " (window.label()) }
                (chart::window_picker(window))
                div.charts {
                    @for (series, points) in &charts {
                        @let (label, unit, scale) = match series.rsplit(':').next().unwrap_or_default() {
                            "requests_per_second" => ("Requests/s", "/s", 1.0),
                            "p50_ms" => ("p50 latency", " ms", 1.0),
                            "p99_ms" => ("p99 latency", " ms", 1.0),
                            "error_ratio" => ("5xx responses", " %", 100.0),
                            "cpu_ratio" => ("CPU (% of a core)", " %", 100.0),
                            _ => ("Memory", " MiB", 1.0 / 1_048_576.0),
                        };
                        (chart::sparkline(label, unit, &scaled(points, scale), since, now))
                    }
                }
                h2 #h-host { "The host, " (window.label()) }
                div.charts {
                    @for (series, points) in &host {
                        @let label = match series.as_str() {
                            "host:cpu_ratio" => "CPU".to_string(),
                            "host:memory_used_ratio" => "Memory used".to_string(),
                            disk => format!("Disk {} used", disk.trim_start_matches("host:disk:").trim_end_matches(":used_ratio")),
                        };
                        (chart::sparkline(&label, " %", &scaled(points, 100.0), since, now))
                    }
                }
                h2 #h-health { "Health history" }
                @if history.is_empty() {
                    p { "No health change or restart recorded yet." }
                } @else {
                    (event_list(history.iter()))
                }
                h2 #h-logs { "Logs" }
                div.logtools {
                    label for="log-level" { "Level" }
                    select #log-level {
                        option value="" { "all" }
                        option value="info" { "info and above" }
                        option value="warn" { "warnings and errors" }
                        option value="error" { "errors" }
                    }
                    label for="log-search" { "Search" }
                    input #log-search type="search";
                }
                ol.logs #logs tabindex="0" data-stream={ "/services/" (s.name) "/logs" } aria-labelledby="h-logs" {
                    @for l in &logs {
                        li data-level=(l.level.map(|l| l.as_str()).unwrap_or("")) { time { (when(&l.ts)) } " " (l.text) }
                    }
                }
            },
        },
    };
    shell(v, &format!("Service {name}"), "", main)
}

pub async fn alerts(app: &App, v: &Viewer) -> Markup {
    let report = app
        .call::<AlertsReport>(Request::Alerts(dockhand_api::AlertsRequest::List))
        .await;
    let history = app
        .call::<Vec<Event>>(Request::Events {
            limit: 500,
            follow: false,
        })
        .await
        .unwrap_or_default();
    let main = html! {
        h1 { "Alerts" }
        (flash(v))
        @match &report {
            Err(e) => (error_note("Alerts", e)),
            Ok(r) => {
                h2 { "Firing" }
                @if r.firing.is_empty() { p { "Nothing is firing." } } @else {
                    ul.plain { @for a in &r.firing { li { span.badge.bad { (a.rule) } " " (a.subject) ": " (a.summary) " · since " (when(&a.since)) @if a.silenced { " (silenced)" } } } }
                }
                p { "Channels: " @if r.channels.is_empty() { "none (alerts are recorded as events only)" } @else { (r.channels.join(", ")) } @if r.undelivered > 0 { " · " (r.undelivered) " message(s) waiting for delivery" } }
                @if is_operator(v) {
                    form.inline method="post" action="/alerts/test" { (csrf(v)) button type="submit" { "Send a test notice" } }
                    form method="post" action="/alerts/silence" {
                        (csrf(v))
                        label for="rule" { "Silence rule" }
                        select #rule name="rule" { @for rule in &r.rules { option { (rule) } } }
                        label for="minutes" { "for minutes (0 lifts it)" }
                        input #minutes type="number" name="minutes" min="0" max="10080" value="60";
                        button type="submit" { "Silence" }
                    }
                }
                @if !r.silences.is_empty() {
                    h2 { "Silences" }
                    ul.plain { @for s in &r.silences { li { (s.rule) " until " (when(&s.until)) } } }
                }
            }
        }
        h2 { "History" }
        (event_list(history.iter().rev().filter(|e| e.kind == "alert").take(50)))
    };
    shell(v, "Alerts", "/alerts", main)
}

pub async fn tasks(app: &App, v: &Viewer) -> Markup {
    let report = app
        .call::<TasksReport>(Request::Tasks(dockhand_api::TaskRequest::List))
        .await;
    let main = html! {
        h1 { "Tasks" }
        (flash(v))
        @match &report {
            Err(e) => (error_note("Tasks", e)),
            Ok(r) if r.tasks.is_empty() => p { "No task is configured." },
            Ok(r) => div.scroll tabindex="0" { table {
                thead { tr { th scope="col" { "Task" } th scope="col" { "When" } th scope="col" { "Next run" } th scope="col" { "Last run" } th scope="col" { "Action" } } }
                tbody {
                    @for t in &r.tasks {
                        tr {
                            th scope="row" { (t.name) " " span.small { "on " (t.service) } }
                            td { (t.when.as_str()) @if let Some(s) = &t.schedule { " " code { (s) } } }
                            td { (t.next_run.as_deref().map(when).unwrap_or_default()) }
                            td { @if let Some(run) = &t.last_run { (when(&run.started_at)) " " span.badge.plain { (run.state.as_str()) } } @else { "never" } }
                            td { @if is_operator(v) { form.inline method="post" action="/tasks/run" { (csrf(v)) input type="hidden" name="task" value=(t.name); button type="submit" aria-label={ "Run now: " (t.name) } { "Run now" } } } }
                        }
                    }
                }
            } },
        }
    };
    shell(v, "Tasks", "/tasks", main)
}

pub async fn certificates(app: &App, v: &Viewer) -> Markup {
    let report = app.call::<CertsReport>(Request::Certs).await;
    let main = html! {
        h1 { "Certificates" }
        @match &report {
            Err(e) => (error_note("Certificates", e)),
            Ok(r) if r.certificates.is_empty() => p { "None: the app is served over HTTP only." },
            Ok(r) => div.scroll tabindex="0" { table {
                thead { tr { th scope="col" { "Host" } th scope="col" { "Source" } th scope="col" { "State" } th scope="col" { "Ends" } th scope="col" { "Days left" } th scope="col" { "Next renewal" } th scope="col" { "Last error" } } }
                tbody {
                    @for c in &r.certificates {
                        tr {
                            th scope="row" { (c.host) }
                            td { (c.source.as_str()) }
                            td { (c.state.as_str()) }
                            td { (c.not_after.as_deref().map(when).unwrap_or_default()) }
                            td { (c.days_left.map(|d| d.to_string()).unwrap_or_default()) }
                            td { (c.next_renewal.as_deref().map(when).unwrap_or_default()) }
                            td.small { (c.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            } },
        }
    };
    shell(v, "Certificates", "/certificates", main)
}

pub async fn events(app: &App, v: &Viewer) -> Markup {
    let list = app
        .call::<Vec<Event>>(Request::Events {
            limit: 200,
            follow: false,
        })
        .await;
    let main = html! {
        h1 { "Events" }
        @match &list {
            Err(e) => (error_note("Events", e)),
            Ok(evs) => (event_list(evs.iter().rev())),
        }
    };
    shell(v, "Events", "/events", main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_the_largest_unit() {
        assert_eq!(span(5), "5s");
        assert_eq!(span(125), "2m");
        assert_eq!(span(7200), "2h");
        assert_eq!(span(3 * 86_400), "3d");
    }

    #[test]
    fn a_config_diff_shows_the_changed_lines_with_their_context_only() {
        let old = (1..=20).map(|i| format!("line {i}\n")).collect::<String>();
        let new = old.replace("line 10\n", "line ten\n");
        let html = config_diff(&old, &new).into_string();
        assert!(
            html.contains("<del>- line 10\n</del><ins>+ line ten\n</ins>"),
            "{html}"
        );
        assert!(
            html.contains("  line 7\n") && html.contains("  line 13\n"),
            "{html}"
        );
        assert!(
            !html.contains("line 6\n") && !html.contains("line 14\n"),
            "{html}"
        );
        let same = config_diff(&old, &old).into_string();
        assert!(same.contains("No change"), "{same}");
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(2048), "2.0 KiB");
        assert_eq!(bytes(5 * 1_048_576), "5.0 MiB");
    }
}
