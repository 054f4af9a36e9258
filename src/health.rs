//! HTTP health checks: one GET of the configured endpoint, 2xx meaning healthy.
//!
//! [`HealthChecker::check`] probes a host once and reports the outcome as data;
//! [`HealthChecker::wait_for_healthy`] retries `max_retries` times, `retry_interval` apart; and
//! [`HealthChecker::wait_until_healthy_loopback`] is the deploy gate: it probes a fresh server
//! every 5 ms for half a second, then backs off to `retry_interval` ([`ProbeSchedule`]) until it answers or an
//! overall timeout passes. Loopback probes go to `127.0.0.1` and, when nothing listens there, to
//! `[::1]`, never to `localhost` (whose resolution varies between machines).
//!
//! An answer counts only when it can come from the server: [`ListenerCheck`] tells whether the
//! sockets listening on a server's port belong to it or to another program
//! ([`Error::ForeignListener`]).
//!
//! # Caveats
//! - Requests are plain HTTP/1.1 without TLS, proxies or redirects: a health endpoint answers
//!   itself, and a 3xx counts as unhealthy.
//! - No connection is pooled, so a stopped server leaves no idle socket behind.
//! - Every wait is a plain `async fn` that spawns nothing: dropping its future (for example when
//!   a `tokio::select!` sees the server exit first) cancels it completely.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use reqwest::{Client, StatusCode, Url, header, redirect};
use tokio::time::Instant;

use crate::config::HealthCheckSettings;
use crate::error::{Error, Result};

/// Pause before a deploy's first probe; each following pause doubles, up to `retry_interval`.
pub const FIRST_PROBE_DELAY: Duration = Duration::from_millis(5);

/// The outcome of one health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// Whether the endpoint answered with a 2xx status.
    pub healthy: bool,
    /// Why the check failed, in the TypeScript package's words followed by ours
    /// (`Health check returned status 503 Service Unavailable`, `Health check failed: Connection
    /// refused: …`); `None` when healthy.
    pub message: Option<String>,
}

impl From<std::result::Result<(), Failure>> for HealthReport {
    fn from(outcome: std::result::Result<(), Failure>) -> Self {
        match outcome {
            Ok(()) => HealthReport {
                healthy: true,
                message: None,
            },
            Err(failure) => HealthReport {
                healthy: false,
                message: Some(failure.report()),
            },
        }
    }
}

/// How a probe failed, in plain words, and how far it got.
#[derive(Debug)]
struct Failure {
    stage: FailedAt,
    message: String,
}

/// Where a probe failed; the loopback check falls back to `[::1]` only after a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailedAt {
    /// The connection was refused: nothing listens there.
    Refused,
    /// The connection could not be made for another reason (for example no IPv6 on the machine).
    Connect,
    /// The server answered with a status other than 2xx.
    Status,
    /// After connecting, or before trying (a bad URL).
    Other,
}

impl Failure {
    fn other(message: String) -> Self {
        Failure {
            stage: FailedAt::Other,
            message,
        }
    }

    /// The message of a check's report: the TypeScript package's phrase, then ours.
    fn report(self) -> String {
        match self.stage {
            FailedAt::Status => {
                let status = self.message.strip_prefix("HTTP ").unwrap_or(&self.message);
                format!("Health check returned status {status}")
            }
            _ => format!("Health check failed: {}", self.message),
        }
    }
}

/// How long a deploy's health gate keeps probing every [`FIRST_PROBE_DELAY`] before it backs
/// off: most servers start listening within this window, and a refused connection on loopback
/// costs microseconds, so dense probing here finds them within a few ms of being ready.
pub const DENSE_PROBING: Duration = Duration::from_millis(500);

/// The pauses before each probe of a deploy's health gate: [`FIRST_PROBE_DELAY`] for the first
/// [`DENSE_PROBING`], then doubling up to the retry interval, then the retry interval forever.
#[derive(Debug, Clone)]
pub struct ProbeSchedule {
    elapsed: Duration,
    next: Duration,
    max: Duration,
}

impl Iterator for ProbeSchedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let pause = if self.elapsed < DENSE_PROBING {
            FIRST_PROBE_DELAY
        } else {
            let pause = self.next;
            self.next = self.next.saturating_mul(2);
            pause
        }
        .min(self.max);
        self.elapsed += pause;
        Some(pause)
    }
}

/// Probes servers' health endpoints with one HTTP client, built once.
#[derive(Debug, Clone)]
pub struct HealthChecker {
    settings: HealthCheckSettings,
    client: Client,
}

impl HealthChecker {
    /// A checker using `settings` (request timeout, retries, endpoint).
    pub fn new(settings: HealthCheckSettings) -> Result<Self> {
        let client = Client::builder()
            .timeout(settings.timeout)
            .pool_max_idle_per_host(0)
            .no_proxy()
            .redirect(redirect::Policy::none())
            .user_agent(concat!("mastra-runner-local/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::HttpClient {
                reason: error_chain(&e),
            })?;
        Ok(HealthChecker { settings, client })
    }

    /// The settings the checker works with.
    pub fn settings(&self) -> &HealthCheckSettings {
        &self.settings
    }

    /// The URL probed for `host` and `port`, IPv6 addresses bracketed. Fails when `host` is not
    /// a host name or IP address.
    pub fn endpoint_url(&self, host: &str, port: u16) -> Result<Url> {
        let authority = url_host(host)?;
        Url::parse(&format!(
            "http://{authority}:{port}{}",
            self.settings.endpoint
        ))
        .map_err(|e| {
            Error::invalid(
                "host",
                format!("'{host}' does not make a valid URL with port {port} ({e})"),
            )
        })
    }

    /// One GET of the endpoint on `host`; never fails, the report says what went wrong.
    pub async fn check(&self, host: &str, port: u16) -> HealthReport {
        match self.endpoint_url(host, port) {
            Ok(url) => self.probe(url).await.into(),
            Err(e) => Err(Failure::other(e.to_string())).into(),
        }
    }

    /// One check of a server on this machine: `127.0.0.1`, then `[::1]` when nothing listens
    /// on the IPv4 loopback (servers bound to IPv6 only pass too).
    pub async fn check_loopback(&self, port: u16) -> HealthReport {
        self.probe_loopback(port).await.into()
    }

    /// Checks `host` up to `max_retries` times, `retry_interval` apart, until one check passes.
    /// The error says how many attempts were made and how the last one failed.
    pub async fn wait_for_healthy(&self, host: &str, port: u16) -> Result<()> {
        let url = self.endpoint_url(host, port)?;
        let attempts = self.settings.max_retries;
        let mut last_failure = "no attempt was made (maxRetries is 0)".to_owned();
        for attempt in 1..=attempts {
            match self.probe(url.clone()).await {
                Ok(()) => return Ok(()),
                Err(failure) => last_failure = failure.report(),
            }
            if attempt < attempts {
                tokio::time::sleep(self.settings.retry_interval).await;
            }
        }
        Err(Error::Unhealthy {
            url: url.to_string(),
            attempts,
            last_failure,
        })
    }

    /// The pauses between a deploy's probes.
    pub fn probe_schedule(&self) -> ProbeSchedule {
        ProbeSchedule {
            elapsed: Duration::ZERO,
            next: FIRST_PROBE_DELAY * 2,
            max: self.settings.retry_interval,
        }
    }

    /// The deploy gate: [`check_loopback`](Self::check_loopback) on the
    /// [`probe_schedule`](Self::probe_schedule) until a check passes or `overall_timeout` runs
    /// out. It gives up as soon as the next probe would start after the deadline, and abandons a
    /// probe still waiting for an answer at the deadline. The error says how many probes were
    /// made and how the last one failed. Cancel-safe: drop the future to stop waiting.
    pub async fn wait_until_healthy_loopback(
        &self,
        port: u16,
        overall_timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + overall_timeout;
        let mut attempts = 0;
        let mut last_failure = format!(
            "the timeout ended before the first probe (due after {} ms)",
            FIRST_PROBE_DELAY.as_millis()
        );
        // The last answer the server gave (an HTTP status) says more than a refusal or a probe
        // cut short by the deadline: it is kept, with how many answers were like it.
        let mut answered: Option<(String, u32)> = None;
        for pause in self.probe_schedule() {
            let start = Instant::now() + pause;
            if start >= deadline {
                break;
            }
            tokio::time::sleep_until(start).await;
            attempts += 1;
            match tokio::time::timeout_at(deadline, self.probe_loopback(port)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(failure)) => {
                    if failure.stage == FailedAt::Status {
                        answered = match answered.take() {
                            Some((message, n)) if message == failure.message => {
                                Some((message, n + 1))
                            }
                            _ => Some((failure.message.clone(), 1)),
                        };
                    }
                    last_failure = failure.message;
                }
                Err(_) => {
                    last_failure = "no answer before the overall timeout".to_owned();
                    break;
                }
            }
        }
        if let Some((message, n)) = answered
            && message != last_failure
        {
            last_failure = format!(
                "{message} ({n} such answer{}; the last probe: {last_failure})",
                if n == 1 { "" } else { "s" }
            );
        }
        Err(Error::HealthTimeout {
            port,
            endpoint: self.settings.endpoint.clone(),
            timeout: overall_timeout,
            attempts,
            last_failure,
        })
    }

    async fn probe_loopback(&self, port: u16) -> std::result::Result<(), Failure> {
        let v4 = self.loopback_url(Ipv4Addr::LOCALHOST.into(), port)?;
        match self.probe(v4).await {
            Err(failure) if failure.stage == FailedAt::Refused => {}
            answered => return answered,
        }
        // Nothing on the IPv4 loopback; a connect error on [::1] means nothing there either.
        let v6 = self.loopback_url(Ipv6Addr::LOCALHOST.into(), port)?;
        match self.probe(v6).await {
            Err(failure) if matches!(failure.stage, FailedAt::Refused | FailedAt::Connect) => {
                Err(Failure {
                    stage: FailedAt::Refused,
                    message: format!(
                        "Connection refused: nothing is listening on 127.0.0.1:{port} or [::1]:{port}"
                    ),
                })
            }
            answered => answered,
        }
    }

    fn loopback_url(&self, ip: IpAddr, port: u16) -> std::result::Result<Url, Failure> {
        self.endpoint_url(&ip.to_string(), port)
            .map_err(|e| Failure::other(e.to_string()))
    }

    /// One GET of `url`: `Ok` for a 2xx answer, otherwise what went wrong in plain words.
    async fn probe(&self, url: Url) -> std::result::Result<(), Failure> {
        let target = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            _ => url.to_string(),
        };
        let response = match self.client.get(url.clone()).send().await {
            Ok(response) => response,
            Err(e) => return Err(self.describe_request_error(&e, &url, &target)),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut message = describe_status(status);
        if status.is_redirection() {
            match response.headers().get(header::LOCATION).map(|l| l.to_str()) {
                Some(Ok(location)) => {
                    message.push_str(&format!(" (redirect to {location} not followed)"));
                }
                _ => message.push_str(" (redirects are not followed)"),
            }
        }
        Err(Failure {
            stage: FailedAt::Status,
            message,
        })
    }

    fn describe_request_error(&self, error: &reqwest::Error, url: &Url, target: &str) -> Failure {
        if error.is_timeout() {
            return Failure::other(format!(
                "No answer from {url} within {} ms",
                self.settings.timeout.as_millis()
            ));
        }
        let io_error = sources(error).find_map(|e| e.downcast_ref::<io::Error>());
        if let Some(io_error) = io_error.filter(|_| error.is_connect()) {
            if io_error.kind() == io::ErrorKind::ConnectionRefused {
                return Failure {
                    stage: FailedAt::Refused,
                    message: format!("Connection refused: nothing is listening on {target}"),
                };
            }
            return Failure {
                stage: FailedAt::Connect,
                message: format!("Cannot connect to {target}: {io_error}"),
            };
        }
        let cause = sources(error)
            .skip(1)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        Failure::other(format!("GET {url} failed: {cause}"))
    }
}

/// Who listens on a server's port, as far as [`ListenerCheck`] could see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// A process of the server holds a socket listening on the port.
    Server,
    /// No socket listening on the port could be read.
    Unseen,
}

/// The check that the sockets listening on a server's port belong to the server: its tree
/// from `leader`, or a process carrying `token`.
#[derive(Debug, Clone)]
pub struct ListenerCheck {
    /// The server's port.
    pub port: u16,
    /// The server's process (the root of its tree).
    pub leader: i32,
    /// The token every process of the server carries.
    pub token: String,
}

impl ListenerCheck {
    /// Runs the check on the blocking pool (it reads `/proc`). Fails with
    /// [`Error::ForeignListener`] when the sockets listening on the port are held by none of the
    /// server's processes.
    pub async fn run(&self) -> Result<Listener> {
        let check = self.clone();
        tokio::task::spawn_blocking(move || check.run_blocking())
            .await
            .map_err(|e| Error::internal("checking who listens on the port", e))?
    }

    fn run_blocking(&self) -> Result<Listener> {
        use crate::process::{ownership, procfs};
        let inodes = ownership::listening_inodes(self.port);
        if inodes.is_empty() {
            return Ok(Listener::Unseen);
        }
        let tree: Vec<i32> = procfs::live_tree(self.leader)
            .iter()
            .map(|p| p.pid)
            .collect();
        // The tree is cheap to read; every process's environment (for the token) only if needed.
        if ownership::holds_any(&tree, &inodes)
            || ownership::holds_any(&ownership::processes_with_token(&self.token), &inodes)
        {
            return Ok(Listener::Server);
        }
        Err(Error::ForeignListener {
            port: self.port,
            holder: ownership::holder_of(&inodes),
        })
    }
}

/// `error` followed by its sources, outermost first.
fn sources<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |&e| e.source())
}

/// `error` and its sources joined by `: `.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    sources(error)
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// `HTTP 503 Service Unavailable`.
fn describe_status(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// `host` as it goes into a URL: IPv6 addresses bracketed, names and IPv4 addresses as they are.
fn url_host(host: &str) -> Result<String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.parse::<Ipv6Addr>().is_ok() {
        return Ok(format!("[{bare}]"));
    }
    if host.is_empty() {
        return Err(Error::invalid("host", "must not be empty"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if !host.chars().all(allowed) {
        return Err(Error::invalid(
            "host",
            format!("must be a host name or an IP address (got '{host}')"),
        ));
    }
    Ok(host.to_owned())
}

/// A health endpoint for unit tests, here and in the supervisor's.
#[cfg(test)]
pub(crate) mod test_endpoint {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    /// A tiny HTTP/1.1 server: answers request number `n` (from 0) with status line
    /// `answer(n)`, or never answers when it returns `None`. Stops when dropped.
    pub(crate) struct TestServer {
        /// The loopback port it listens on.
        pub(crate) port: u16,
        requests: Arc<AtomicUsize>,
        /// The first line of each request, in order.
        pub(crate) request_lines: Arc<Mutex<Vec<String>>>,
        task: JoinHandle<()>,
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl TestServer {
        /// How many requests it received.
        pub(crate) fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    /// Starts a [`TestServer`] on `address` (`127.0.0.1:0` for any free port).
    pub(crate) async fn serve(
        address: &str,
        answer: impl Fn(usize) -> Option<&'static str> + Send + Sync + 'static,
    ) -> std::io::Result<TestServer> {
        let listener = TcpListener::bind(address).await?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(AtomicUsize::new(0));
        let request_lines = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let (count, lines) = (requests.clone(), request_lines.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (count, lines, answer) = (count.clone(), lines.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let first = text.lines().next().unwrap_or_default().to_owned();
                    lines.lock().unwrap().push(first);
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    match answer(n) {
                        Some(status) => {
                            let response = format!(
                                "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                            );
                            let _ = stream.write_all(response.as_bytes()).await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        Ok(TestServer {
            port,
            requests,
            request_lines,
            task,
        })
    }

    /// A loopback port nothing listens on (it was just free; nothing in these tests takes it).
    pub(crate) fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }
}

#[cfg(test)]
mod tests {
    use super::test_endpoint::{closed_port, serve};
    use super::*;

    fn checker(settings: HealthCheckSettings) -> HealthChecker {
        HealthChecker::new(settings).unwrap()
    }

    fn quick() -> HealthCheckSettings {
        HealthCheckSettings {
            timeout: Duration::from_secs(5),
            retry_interval: Duration::from_millis(10),
            max_retries: 3,
            endpoint: "/health".to_owned(),
        }
    }

    #[tokio::test]
    async fn a_2xx_answer_is_healthy_and_the_request_is_plain_http_1_1() {
        let server = serve("127.0.0.1:0", |_| Some("200 OK")).await.unwrap();
        let settings = HealthCheckSettings {
            endpoint: "/api/ready?probe=1".to_owned(),
            ..quick()
        };
        let report = checker(settings).check("127.0.0.1", server.port).await;
        assert_eq!(
            report,
            HealthReport {
                healthy: true,
                message: None
            }
        );
        let lines = server.request_lines.lock().unwrap().clone();
        assert_eq!(lines, vec!["GET /api/ready?probe=1 HTTP/1.1".to_owned()]);
    }

    #[tokio::test]
    async fn other_statuses_are_unhealthy_and_named() {
        let server = serve("127.0.0.1:0", |n| match n {
            0 => Some("503 Service Unavailable"),
            1 => Some("500 Internal Server Error"),
            _ => Some("302 Found\r\nLocation: /elsewhere"),
        })
        .await
        .unwrap();
        let checker = checker(quick());
        let messages = [
            "Health check returned status 503 Service Unavailable",
            "Health check returned status 500 Internal Server Error",
            "Health check returned status 302 Found (redirect to /elsewhere not followed)",
        ];
        for message in messages {
            let report = checker.check("127.0.0.1", server.port).await;
            assert!(!report.healthy);
            assert_eq!(report.message.as_deref(), Some(message));
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_unhealthy_in_plain_words() {
        let port = closed_port();
        let report = checker(quick()).check("127.0.0.1", port).await;
        assert!(!report.healthy);
        assert_eq!(
            report.message,
            Some(format!(
                "Health check failed: Connection refused: nothing is listening on 127.0.0.1:{port}"
            ))
        );
        let report = checker(quick()).check_loopback(port).await;
        assert_eq!(
            report.message,
            Some(format!(
                "Health check failed: Connection refused: nothing is listening on \
                 127.0.0.1:{port} or [::1]:{port}"
            ))
        );
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_times_out() {
        let server = serve("127.0.0.1:0", |_| None).await.unwrap();
        let settings = HealthCheckSettings {
            timeout: Duration::from_millis(50),
            ..quick()
        };
        let report = checker(settings).check("127.0.0.1", server.port).await;
        assert_eq!(
            report.message,
            Some(format!(
                "Health check failed: No answer from http://127.0.0.1:{}/health within 50 ms",
                server.port
            ))
        );
    }

    #[tokio::test]
    async fn a_server_bound_to_ipv6_loopback_only_passes_the_loopback_check() {
        let Ok(server) = serve("[::1]:0", |_| Some("204 No Content")).await else {
            eprintln!("skipped: this machine has no IPv6 loopback");
            return;
        };
        let checker = checker(quick());
        assert!(checker.check_loopback(server.port).await.healthy);
        assert!(checker.check("::1", server.port).await.healthy);
        assert!(checker.check("[::1]", server.port).await.healthy);
        assert!(!checker.check("127.0.0.1", server.port).await.healthy);
    }

    #[tokio::test]
    async fn hosts_become_valid_urls_or_errors() {
        let checker = checker(quick());
        let url = |host: &str| checker.endpoint_url(host, 4111).map(|u| u.to_string());
        assert_eq!(url("127.0.0.1").unwrap(), "http://127.0.0.1:4111/health");
        assert_eq!(url("::1").unwrap(), "http://[::1]:4111/health");
        assert_eq!(url("[::1]").unwrap(), "http://[::1]:4111/health");
        assert_eq!(
            url("my-host.internal").unwrap(),
            "http://my-host.internal:4111/health"
        );
        assert_eq!(
            url("").unwrap_err().to_string(),
            "Invalid host: must not be empty"
        );
        assert_eq!(
            url("a/b").unwrap_err().to_string(),
            "Invalid host: must be a host name or an IP address (got 'a/b')"
        );
        let report = checker.check("user@host", 4111).await;
        assert_eq!(
            report.message.as_deref(),
            Some(
                "Health check failed: Invalid host: must be a host name or an IP address \
                 (got 'user@host')"
            )
        );
    }

    #[tokio::test]
    async fn the_deploy_gate_keeps_the_last_status_the_server_answered() {
        // Three redirects, then the server stops answering: the status says more than the cut.
        let server = serve("127.0.0.1:0", |n| {
            (n < 3).then_some("301 Moved Permanently")
        })
        .await
        .unwrap();
        let error = checker(quick())
            .wait_until_healthy_loopback(server.port, Duration::from_millis(300))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(
                "last failure: HTTP 301 Moved Permanently (redirects are not followed) (3 such \
                 answers; the last probe: no answer before the overall timeout)"
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn wait_for_healthy_makes_max_retries_attempts_and_reports_the_last_failure() {
        let server = serve("127.0.0.1:0", |_| Some("503 Service Unavailable"))
            .await
            .unwrap();
        let error = checker(quick())
            .wait_for_healthy("127.0.0.1", server.port)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "Server failed to become healthy after 3 attempts. Last error: Health check returned status 503 Service Unavailable (GET http://127.0.0.1:{}/health)",
                server.port
            )
        );
        assert_eq!(server.requests(), 3);
    }

    #[tokio::test]
    async fn wait_for_healthy_returns_once_a_check_passes() {
        let server = serve("127.0.0.1:0", |n| {
            Some(if n < 2 {
                "503 Service Unavailable"
            } else {
                "200 OK"
            })
        })
        .await
        .unwrap();
        let settings = HealthCheckSettings {
            max_retries: 5,
            ..quick()
        };
        checker(settings)
            .wait_for_healthy("127.0.0.1", server.port)
            .await
            .unwrap();
        assert_eq!(server.requests(), 3);
    }

    #[tokio::test]
    async fn a_deploy_gate_shorter_than_the_first_pause_makes_no_probe() {
        let error = checker(quick())
            .wait_until_healthy_loopback(closed_port(), Duration::from_millis(1))
            .await
            .unwrap_err();
        assert!(
            error.to_string().ends_with(
                "(0 attempts); last failure: the timeout ended before the first probe (due after 5 ms)"
            ),
            "{error}"
        );
    }

    #[test]
    fn the_probe_schedule_is_dense_at_first_then_doubles_up_to_the_retry_interval() {
        let settings = HealthCheckSettings {
            retry_interval: Duration::from_millis(3),
            ..quick()
        };
        let capped: Vec<u128> = checker(settings)
            .probe_schedule()
            .take(3)
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(capped, vec![3, 3, 3]);
        let defaults: Vec<u128> = checker(HealthCheckSettings::default())
            .probe_schedule()
            .take(108)
            .map(|d| d.as_millis())
            .collect();
        assert!(defaults[..100].iter().all(|&p| p == 5), "{defaults:?}");
        assert_eq!(defaults[100..], [10, 20, 40, 80, 160, 320, 640, 1000]);
    }

    #[tokio::test]
    async fn the_deploy_gate_waits_until_the_server_answers_2xx() {
        let server = serve("127.0.0.1:0", |n| {
            Some(if n < 3 {
                "503 Service Unavailable"
            } else {
                "200 OK"
            })
        })
        .await
        .unwrap();
        checker(quick())
            .wait_until_healthy_loopback(server.port, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(server.requests(), 4);
    }

    #[tokio::test]
    async fn the_deploy_gate_gives_up_after_the_overall_timeout_with_the_attempt_count() {
        let port = closed_port();
        let settings = HealthCheckSettings {
            retry_interval: Duration::from_millis(50),
            ..quick()
        };
        let error = checker(settings)
            .wait_until_healthy_loopback(port, Duration::from_millis(300))
            .await
            .unwrap_err();
        let Error::HealthTimeout {
            attempts,
            ref last_failure,
            ..
        } = error
        else {
            panic!("expected a health timeout, got {error:?}");
        };
        assert!(attempts >= 1);
        // On a loaded machine the last probe may still be connecting at the deadline.
        let refused =
            format!("Connection refused: nothing is listening on 127.0.0.1:{port} or [::1]:{port}");
        assert!(
            [refused.as_str(), "no answer before the overall timeout"]
                .contains(&last_failure.as_str()),
            "{last_failure}"
        );
        let message = error.to_string();
        let expected_start = format!(
            "Server on port {port} did not answer /health with a 2xx status within 300 ms ({attempts} attempt"
        );
        assert!(message.starts_with(&expected_start), "{message}");
    }
}
