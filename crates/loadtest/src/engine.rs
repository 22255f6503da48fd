//! Running a plan: threads, runtimes, connections, and what each request measured.
//!
//! One current-thread Tokio runtime per thread, connections spread over the threads
//! round-robin, each connection one task that sends a request, reads the whole answer and
//! records it in its thread's accumulator (no lock, no atomic on the request path but the
//! thread's own progress counter). Request `seq` of a run is sent by connection
//! `seq % connections`, so `-n` needs no shared counter, the endpoint picker sees every
//! sequence number exactly once, and in open-loop mode request `seq` is due at
//! `start + seq / rate` (sent then by the thread's [`Pacer`]) — its latency is measured from
//! that moment, not from when it could finally be sent (no coordinated omission).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{header, HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use serde::{Deserialize, Serialize};

use crate::conn::{tls_config, Connector, ReqBody};
use crate::pacer::Pacer;
use crate::picker::Schedule;
use crate::summary::{new_histogram, MAX_TRACKED_US};
use crate::wire::{Encoded, Wire, WireError};
use crate::{auth, LoadError, Login, Plan, Progress, Stop};

/// How failed requests failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No connection could be made (refused, unreachable, TLS handshake, connect timeout).
    Connect,
    /// No complete answer within the request timeout.
    Timeout,
    /// The connection was reset or closed before the answer was complete.
    Reset,
    /// Anything else (an answer that is not HTTP, …).
    Other,
}

impl ErrorKind {
    /// How reports name it (the keys of [`ErrorCounts`]).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Other => "other",
        }
    }
}

/// An error and its sources, `outer: inner: innermost`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Failed requests by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    pub connect: u64,
    pub timeout: u64,
    pub reset: u64,
    pub other: u64,
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.reset + self.other
    }

    fn add(&mut self, kind: ErrorKind) {
        match kind {
            ErrorKind::Connect => self.connect += 1,
            ErrorKind::Timeout => self.timeout += 1,
            ErrorKind::Reset => self.reset += 1,
            ErrorKind::Other => self.other += 1,
        }
    }

    fn merge(&mut self, o: &ErrorCounts) {
        self.connect += o.connect;
        self.timeout += o.timeout;
        self.reset += o.reset;
        self.other += o.other;
    }
}

/// What the requests of one endpoint (or of all) measured.
#[derive(Debug, Clone)]
pub struct EndpointMeasure {
    /// Attempts: answers plus failures.
    pub requests: u64,
    /// Latency of every answered request, in microseconds.
    pub latency: Histogram<u64>,
    /// Answers by status code.
    pub status: BTreeMap<u16, u64>,
    pub errors: ErrorCounts,
    /// The first error message seen of each kind (`connect`, `timeout`, …).
    pub error_samples: BTreeMap<String, String>,
    pub response_body_bytes: u64,
    pub request_body_bytes: u64,
}

impl EndpointMeasure {
    fn empty() -> EndpointMeasure {
        EndpointMeasure {
            requests: 0,
            latency: new_histogram(),
            status: BTreeMap::new(),
            errors: ErrorCounts::default(),
            error_samples: BTreeMap::new(),
            response_body_bytes: 0,
            request_body_bytes: 0,
        }
    }

    /// Answers with a 2xx or 3xx status.
    pub fn succeeded(&self) -> u64 {
        self.status
            .iter()
            .filter(|(s, _)| (200..400).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    /// Answers of any status.
    pub fn completed(&self) -> u64 {
        self.status.values().sum()
    }

    fn merge(&mut self, o: &EndpointMeasure) {
        self.requests += o.requests;
        self.latency
            .add(&o.latency)
            .expect("histograms share their bounds");
        for (s, n) in &o.status {
            *self.status.entry(*s).or_default() += n;
        }
        self.errors.merge(&o.errors);
        for (k, v) in &o.error_samples {
            self.error_samples
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        self.response_body_bytes += o.response_body_bytes;
        self.request_body_bytes += o.request_body_bytes;
    }
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Measurements {
    /// From the start of the load to its end (the deadline, or the last answer of `-n`).
    pub elapsed: Duration,
    pub threads: usize,
    /// One per endpoint of the plan, in its order.
    pub endpoints: Vec<EndpointMeasure>,
}

impl Measurements {
    /// All endpoints together.
    pub fn total(&self) -> EndpointMeasure {
        let mut all = EndpointMeasure::empty();
        for e in &self.endpoints {
            all.merge(e);
        }
        all
    }
}

/// Runs `plan` to its end (blocking), counting finished requests into `progress`.
pub fn run(plan: &Plan, progress: &Arc<Progress>) -> Result<Measurements, LoadError> {
    if plan.connections == 0 {
        return Err(LoadError::Invalid("connections must be 1 or more".into()));
    }
    if plan.addrs.is_empty() {
        return Err(LoadError::Invalid("no address to connect to".into()));
    }
    if let Some(r) = plan.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(LoadError::Invalid(format!(
                "--rate {r} must be a positive number of requests per second"
            )));
        }
    }
    match plan.stop {
        Stop::Requests(0) => return Err(LoadError::Invalid("-n must be 1 or more".into())),
        Stop::Duration(d) if d.is_zero() => {
            return Err(LoadError::Invalid("-d must be longer than 0s".into()))
        }
        _ => {}
    }
    let schedule = Schedule::new(&plan.endpoints.iter().map(|e| e.weight).collect::<Vec<_>>())?;
    let tls = if plan.origin.tls {
        let name =
            rustls::pki_types::ServerName::try_from(plan.origin.host.clone()).map_err(|_| {
                LoadError::Invalid(format!(
                    "{:?} is not a valid TLS server name",
                    plan.origin.host
                ))
            })?;
        Some((tls_config(plan.insecure)?, name))
    } else {
        None
    };
    let connector = Connector::new(plan.addrs.clone(), tls, plan.connect_timeout);

    let mut bearer = plan.bearer.clone();
    if let Some(login) = &plan.login {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(LoadError::Runtime)?;
        bearer = Some(rt.block_on(run_login(&connector, plan, login))?);
    }
    let templates: Arc<[Template]> = plan
        .endpoints
        .iter()
        .map(|e| {
            Template::new(
                plan,
                &e.method,
                &e.path,
                &e.headers,
                e.body.clone(),
                bearer.as_deref(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?
        .into();

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if plan.threads == 0 {
        cores
    } else {
        plan.threads
    }
    .min(plan.connections)
    .max(1);
    let shared = Arc::new(Shared {
        schedule,
        connector,
        templates,
        connections: plan.connections as u64,
        limit: match plan.stop {
            Stop::Requests(n) => Some(n),
            Stop::Duration(_) => None,
        },
        duration: match plan.stop {
            Stop::Duration(d) => Some(d),
            Stop::Requests(_) => None,
        },
        rate: plan.rate,
        timeout: plan.timeout,
        endpoints: plan.endpoints.len(),
        start: OnceLock::new(),
        barrier: Barrier::new(threads),
    });

    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("loadtest-{t}"))
                    .spawn_scoped(scope, move || thread_main(t, threads, &shared, progress))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    Err(LoadError::Runtime(std::io::Error::other(
                        "a load thread panicked",
                    )))
                }),
                Err(e) => Err(LoadError::Runtime(e)),
            })
            .collect::<Vec<_>>()
    });
    let mut endpoints: Vec<EndpointMeasure> = (0..plan.endpoints.len())
        .map(|_| EndpointMeasure::empty())
        .collect();
    let mut elapsed = Duration::ZERO;
    for r in results {
        let (accs, took) = r?;
        elapsed = elapsed.max(took);
        for (all, acc) in endpoints.iter_mut().zip(accs) {
            all.merge(&acc.into_measure());
        }
    }
    Ok(Measurements {
        elapsed,
        threads,
        endpoints,
    })
}

/// What every thread reads.
struct Shared {
    schedule: Schedule,
    connector: Connector,
    templates: Arc<[Template]>,
    connections: u64,
    limit: Option<u64>,
    duration: Option<Duration>,
    rate: Option<f64>,
    timeout: Duration,
    endpoints: usize,
    /// The common start of the load, set by the first thread past the barrier.
    start: OnceLock<Instant>,
    barrier: Barrier,
}

type ThreadResult = Result<(Vec<Acc>, Duration), LoadError>;

fn thread_main(
    t: usize,
    threads: usize,
    shared: &Arc<Shared>,
    progress: &Arc<Progress>,
) -> ThreadResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    // Every thread reaches the barrier, even one whose runtime failed, so none waits forever.
    shared.barrier.wait();
    let rt = rt.map_err(LoadError::Runtime)?;
    let start = *shared.start.get_or_init(Instant::now);
    let deadline = shared.duration.map(|d| start + d);
    let accs: Rc<RefCell<Vec<Acc>>> = Rc::new(RefCell::new(
        (0..shared.endpoints).map(|_| Acc::new()).collect(),
    ));
    // This thread's own copy of the requests: cloning a header value or a path bumps a
    // reference count, which must not be a cache line shared with the other threads.
    let templates: Rc<[Template]> = shared.templates.iter().map(Template::copy).collect();
    let local = tokio::task::LocalSet::new();
    let mine = (t..shared.connections as usize).step_by(threads);
    local.block_on(&rt, async {
        let pacer = match shared.rate {
            Some(_) => {
                let p = Rc::new(Pacer::new(mine.len()).map_err(LoadError::Runtime)?);
                let driver = Rc::clone(&p);
                tokio::task::spawn_local(async move { driver.drive().await });
                Some(p)
            }
            None => None,
        };
        let handles: Vec<_> = mine
            .enumerate()
            .map(|(slot, idx)| {
                let ctx = Ctx {
                    shared: Arc::clone(shared),
                    accs: Rc::clone(&accs),
                    templates: Rc::clone(&templates),
                    progress: Arc::clone(progress),
                    pacer: pacer.clone().map(|p| (p, slot)),
                    thread: t,
                    start,
                    deadline,
                };
                tokio::task::spawn_local(connection(idx as u64, ctx))
            })
            .collect();
        let all = async {
            for h in handles {
                let _ = h.await;
            }
        };
        match deadline {
            Some(d) => {
                tokio::select! {
                    _ = all => {}
                    _ = tokio::time::sleep_until(d.into()) => {}
                }
            }
            None => all.await,
        }
        Ok::<(), LoadError>(())
    })?;
    drop(local);
    let end = match deadline {
        Some(d) => Instant::now().min(d),
        None => Instant::now(),
    };
    let accs = Rc::try_unwrap(accs)
        .map(RefCell::into_inner)
        .unwrap_or_else(|rc| rc.borrow().clone());
    Ok((accs, end.saturating_duration_since(start)))
}

/// What one connection task holds.
struct Ctx {
    shared: Arc<Shared>,
    accs: Rc<RefCell<Vec<Acc>>>,
    templates: Rc<[Template]>,
    progress: Arc<Progress>,
    /// Open loop: the thread's pacer and this connection's slot in it.
    pacer: Option<(Rc<Pacer>, usize)>,
    thread: usize,
    start: Instant,
    deadline: Option<Instant>,
}

impl Ctx {
    fn record(&self, ep: usize, status: u16, body_in: u64, latency: Duration) {
        let mut accs = self.accs.borrow_mut();
        let acc = &mut accs[ep];
        acc.requests += 1;
        acc.status[usize::from(status.min(999))] += 1;
        acc.body_in += body_in;
        acc.body_out += self.templates[ep].body.len() as u64;
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        acc.latency.saturating_record(us.clamp(1, MAX_TRACKED_US));
        drop(accs);
        self.progress.add(self.thread, 1);
    }

    fn record_error(
        &self,
        ep: usize,
        kind: ErrorKind,
        sent_body: bool,
        why: impl FnOnce() -> String,
    ) {
        let mut accs = self.accs.borrow_mut();
        let acc = &mut accs[ep];
        acc.requests += 1;
        acc.errors.add(kind);
        acc.samples.entry(kind.name()).or_insert_with(why);
        if sent_body {
            acc.body_out += self.templates[ep].body.len() as u64;
        }
        drop(accs);
        self.progress.add(self.thread, 1);
    }
}

/// One connection's loop: request `idx`, `idx + connections`, … until the run ends.
async fn connection(idx: u64, ctx: Ctx) {
    let s = Arc::clone(&ctx.shared);
    let mut conn: Option<Wire> = None;
    let mut backoff = Duration::ZERO;
    // One timer per connection, re-armed for each request.
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    for k in 0u64.. {
        let seq = idx + k * s.connections;
        if s.limit.is_some_and(|n| seq >= n) {
            break;
        }
        let due = s
            .rate
            .map(|r| ctx.start + Duration::from_secs_f64(seq as f64 / r));
        if let Some(due) = due {
            if ctx.deadline.is_some_and(|d| due >= d) {
                break;
            }
            if let Some((pacer, slot)) = &ctx.pacer {
                pacer.until(*slot, due).await;
            }
        }
        let ep = s.schedule.pick(seq);
        // A kept-alive connection the server closed just before this request was sent is
        // not a failure of the request: it goes once more on a fresh connection.
        let mut retried = false;
        loop {
            let reused = conn.as_ref().is_some_and(Wire::reusable);
            if !reused {
                conn = None;
                match s.connector.connect_wire().await {
                    Ok(c) => {
                        conn = Some(c);
                        backoff = Duration::ZERO;
                    }
                    Err(e) => {
                        ctx.record_error(ep, ErrorKind::Connect, false, || chain(&e));
                        // Do not spin against a closed port; catch up later in open loop.
                        backoff = (backoff * 2)
                            .clamp(Duration::from_millis(1), Duration::from_millis(100));
                        tokio::time::sleep(backoff).await;
                        break;
                    }
                }
            }
            let live = conn.as_mut().expect("connected above");
            let req = &ctx.templates[ep].wire;
            let now = Instant::now();
            let sent = due.unwrap_or(now);
            let deadline = now + s.timeout;
            // The timer is re-armed only when it has run out, not per request: when it
            // fires early (armed for an earlier request) it is moved to this one's deadline.
            if timer.deadline().into_std() <= now {
                timer.as_mut().reset(deadline.into());
            }
            let result = {
                let fut = live.exchange(req);
                tokio::pin!(fut);
                loop {
                    tokio::select! {
                        biased;
                        r = &mut fut => break Some(r),
                        _ = &mut timer => {
                            if Instant::now() >= deadline {
                                break None;
                            }
                            timer.as_mut().reset(deadline.into());
                        }
                    }
                }
            };
            let end = Instant::now();
            match result {
                Some(Ok((status, body_in))) => {
                    ctx.record(ep, status, body_in, end.saturating_duration_since(sent));
                }
                Some(Err(WireError::Closed(_))) if reused && !retried => {
                    retried = true;
                    conn = None;
                    continue;
                }
                Some(Err(e)) => {
                    let kind = classify_wire(&e);
                    ctx.record_error(ep, kind, true, || e.to_string());
                    conn = None;
                }
                None => {
                    ctx.record_error(ep, ErrorKind::Timeout, true, || {
                        format!(
                            "no complete answer within {}",
                            humantime::format_duration(s.timeout)
                        )
                    });
                    conn = None;
                }
            }
            break;
        }
    }
}

/// Which kind of failure a failed exchange is.
fn classify_wire(e: &WireError) -> ErrorKind {
    use std::io::ErrorKind as Io;
    match e.io().map(std::io::Error::kind) {
        Some(Io::TimedOut) => ErrorKind::Timeout,
        Some(_) => ErrorKind::Reset,
        None => ErrorKind::Other,
    }
}

/// A thread's counts for one endpoint, in the shape cheapest to update.
#[derive(Clone)]
struct Acc {
    requests: u64,
    latency: Histogram<u64>,
    /// Indexed by status code (0–999).
    status: Vec<u64>,
    errors: ErrorCounts,
    samples: BTreeMap<&'static str, String>,
    body_in: u64,
    body_out: u64,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            requests: 0,
            latency: new_histogram(),
            status: vec![0; 1000],
            errors: ErrorCounts::default(),
            samples: BTreeMap::new(),
            body_in: 0,
            body_out: 0,
        }
    }

    fn into_measure(self) -> EndpointMeasure {
        EndpointMeasure {
            requests: self.requests,
            latency: self.latency,
            status: self
                .status
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(s, n)| (s as u16, *n))
                .collect(),
            errors: self.errors,
            error_samples: self
                .samples
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            response_body_bytes: self.body_in,
            request_body_bytes: self.body_out,
        }
    }
}

/// An endpoint's request, built once and cloned per request.
struct Template {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    /// The request as sent by the request loop (`wire.rs`).
    wire: Encoded,
}

impl Template {
    fn new(
        plan: &Plan,
        method: &Method,
        path: &http::uri::PathAndQuery,
        extra: &[(http::HeaderName, HeaderValue)],
        body: Bytes,
        bearer: Option<&str>,
    ) -> Result<Template, LoadError> {
        let mut headers = HeaderMap::new();
        let host = HeaderValue::from_str(&plan.origin.host_header()).map_err(|_| {
            LoadError::Invalid(format!("{:?} is not a valid host", plan.origin.host))
        })?;
        headers.insert(header::HOST, host);
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("dockhand-loadtest/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(token) = bearer {
            let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                LoadError::Invalid(
                    "the bearer token contains characters a header cannot carry".into(),
                )
            })?;
            v.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, v);
        }
        // Given headers replace the defaults (`-H 'Host: app.test'`), and repeat among themselves.
        let mut replaced = std::collections::HashSet::new();
        for (name, value) in extra {
            if replaced.insert(name.clone()) {
                headers.remove(name);
            }
            headers.append(name.clone(), value.clone());
        }
        let uri = Uri::builder()
            .path_and_query(path.clone())
            .build()
            .map_err(|e| LoadError::Invalid(format!("invalid path {path}: {e}")))?;
        let wire = Encoded::new(method, &uri, &headers, &body);
        Ok(Template {
            method: method.clone(),
            uri,
            headers,
            body,
            wire,
        })
    }

    /// A copy that shares no allocation (and so no reference count) with `self`.
    fn copy(&self) -> Template {
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let mut v = HeaderValue::from_bytes(value.as_bytes())
                .expect("a valid header value stays valid");
            v.set_sensitive(value.is_sensitive());
            headers.append(name.clone(), v);
        }
        let uri = Uri::from_maybe_shared(Bytes::copy_from_slice(self.uri.to_string().as_bytes()))
            .expect("a valid path stays valid");
        let body = Bytes::copy_from_slice(&self.body);
        let wire = Encoded::new(&self.method, &uri, &headers, &body);
        Template {
            method: self.method.clone(),
            uri,
            headers,
            body,
            wire,
        }
    }

    fn request(&self) -> Request<ReqBody> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Largest login answer read (the token is in the first bytes of any sane one).
const LOGIN_BODY_LIMIT: usize = 1 << 20;

/// Sends the login request once and returns the token from its answer.
async fn run_login(connector: &Connector, plan: &Plan, login: &Login) -> Result<String, LoadError> {
    let fail = |why: String| LoadError::Login {
        method: login.method.to_string(),
        path: login.path.to_string(),
        why,
    };
    let template = Template::new(
        plan,
        &login.method,
        &login.path,
        &login.headers,
        login.body.clone(),
        plan.bearer.as_deref(),
    )?;
    let mut conn = connector.connect().await.map_err(|e| fail(e.to_string()))?;
    let req = template.request();
    let answer = tokio::time::timeout(
        plan.timeout,
        conn.driver.drive(async {
            let sender = &mut conn.sender;
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let (parts, mut body) = resp.into_parts();
            let mut bytes = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Some(data) = frame?.data_ref() {
                    if bytes.len() + data.len() > LOGIN_BODY_LIMIT {
                        return Ok((parts, None));
                    }
                    bytes.extend_from_slice(data);
                }
            }
            Ok::<_, hyper::Error>((parts, Some(bytes)))
        }),
    )
    .await
    .map_err(|_| {
        fail(format!(
            "no answer within {}",
            humantime::format_duration(plan.timeout)
        ))
    })?
    .map_err(|e| fail(e.to_string()))?;
    let (parts, body) = answer;
    if !parts.status.is_success() {
        return Err(fail(format!(
            "the server answered {}; check the login path, body and credentials",
            parts.status
        )));
    }
    let body = body.ok_or_else(|| {
        fail(format!(
            "the answer is larger than {LOGIN_BODY_LIMIT} bytes"
        ))
    })?;
    auth::extract_token(&login.token, &parts.headers, &body).map_err(fail)
}
