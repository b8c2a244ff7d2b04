//! Endpoints, lazily connected channels, failover and the retry loop.
//!
//! Every endpoint gets one lazily connected tonic [`Channel`]; nothing touches the network
//! until the first call. Calls go to the current endpoint; an endpoint-level failure
//! (`Unavailable`, `Timeout`) moves the current endpoint to the next one. Only calls that
//! are safe to repeat are retried, at most `retries_max` times with a growing backoff;
//! the optional retry hook ([`RetryEvent`]) is told of each retry before its pause.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, OUTCOME_METADATA};
use crate::pipeline::Pipeline;
use crate::routes::{Route, Routes, ServedBy};

/// Default budget for one attempt of a call (sent to the server as the gRPC deadline).
pub const TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// Default budget for opening a TCP connection to one endpoint.
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 1_000;
/// Default number of retries after the first attempt of a safe call.
pub const RETRIES_DEFAULT: u32 = 4;
/// Most retries a client may be configured with; keeps a call's total time bounded.
pub const RETRIES_MAX: u32 = 16;
/// Most endpoints a client accepts.
pub const ENDPOINTS_MAX: usize = 64;
/// Backoff before the first retry; doubles per retry up to `BACKOFF_MS_MAX`.
pub const BACKOFF_MS_BASE: u64 = 20;
/// Longest backoff between two attempts.
pub const BACKOFF_MS_MAX: u64 = 1_000;
/// Interval of HTTP/2 keep-alive pings, which find dead connections between calls.
const KEEP_ALIVE_INTERVAL_MS: u64 = 10_000;
/// How long a keep-alive ping may stay unanswered before the connection is dropped.
const KEEP_ALIVE_TIMEOUT_MS: u64 = 5_000;

/// Settings of a [`Client`](crate::Client); see [`ClientBuilder`](crate::ClientBuilder).
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) retries: u32,
    /// Told of every retry; see [`ClientBuilder::on_retry`](crate::ClientBuilder::on_retry).
    pub(crate) on_retry: Option<OnRetry>,
    /// Single-key calls go in pipelines; see
    /// [`ClientBuilder::pipeline`](crate::ClientBuilder::pipeline).
    pub(crate) pipeline: bool,
}

/// One retry of a call, as told to the hook set with
/// [`ClientBuilder::on_retry`](crate::ClientBuilder::on_retry): attempt `attempt - 1`
/// failed at `failed_endpoint` with `error`, and attempt `attempt` goes to
/// `next_endpoint` after `backoff`.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct RetryEvent<'a> {
    /// The call's gRPC method, e.g. `Get` or `Commit`.
    pub method: &'static str,
    /// Number of the attempt about to be made, from 2 (the first retry).
    pub attempt: u32,
    /// Most attempts the call may make: the configured retries plus one.
    pub attempts_max: u32,
    /// URI of the endpoint whose attempt failed, e.g. `http://127.0.0.1:2070`.
    pub failed_endpoint: &'a str,
    /// Why the attempt failed: mostly `Unavailable` or `Timeout` (the endpoint is down or
    /// too slow), else an error the server said had no effect (`Locked`, for a script).
    pub error: &'a Error,
    /// URI of the endpoint the next attempt goes to: `failed_endpoint` again when the
    /// client has one endpoint, when the call is `pinned`, and when the error was not the
    /// endpoint's fault. (Another call of the same client failing over during the pause
    /// may still move the next attempt on.)
    pub next_endpoint: &'a str,
    /// The pause before the next attempt.
    pub backoff: Duration,
    /// Whether the call is bound to `failed_endpoint`: a call of a
    /// [`Transaction`](crate::Transaction), which lives on the node that began it and
    /// never fails over.
    pub pinned: bool,
}

/// The retry hook of a client: cheap to clone, printed as `OnRetry(..)`.
#[derive(Clone)]
pub(crate) struct OnRetry(pub(crate) Arc<dyn Fn(&RetryEvent<'_>) + Send + Sync>);

impl fmt::Debug for OnRetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnRetry(..)")
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            timeout: Duration::from_millis(TIMEOUT_MS_DEFAULT),
            connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS_DEFAULT),
            retries: RETRIES_DEFAULT,
            on_retry: None,
            pipeline: false,
        }
    }
}

/// Returns `endpoint` as a URI tonic accepts: trimmed, `http://` added when there is no
/// scheme. Rejects empty input, schemes other than http, and URIs that do not parse.
pub fn normalize_endpoint(endpoint: &str) -> Result<String, Error> {
    let endpoint = endpoint.trim();
    let (scheme, authority) = endpoint.split_once("://").unwrap_or(("http", endpoint));
    let authority = authority.trim_end_matches('/');
    match scheme {
        "http" => {}
        "https" => {
            return Err(Error::InvalidInput(format!("endpoint {endpoint:?}: TLS is not supported yet; use host:port")));
        }
        _ => {
            return Err(Error::InvalidInput(format!("endpoint {endpoint:?}: expected host:port or http://host:port")));
        }
    }
    if authority.is_empty() || authority.ends_with(':') {
        return Err(Error::InvalidInput(format!("endpoint {endpoint:?}: expected host:port")));
    }
    let uri = format!("http://{authority}");
    let parsed: tonic::codegen::http::Uri =
        uri.parse().map_err(|e| Error::InvalidInput(format!("endpoint {endpoint:?}: {e}")))?;
    let port = authority.rsplit_once(':').map(|(_, port)| port).filter(|p| !p.ends_with(']'));
    if port.is_some_and(|port| port.parse::<u16>().is_err()) {
        return Err(Error::InvalidInput(format!("endpoint {endpoint:?}: the port is not a number from 0 to 65535")));
    }
    if parsed.host().is_none_or(str::is_empty) {
        return Err(Error::InvalidInput(format!("endpoint {endpoint:?}: no host")));
    }
    if parsed.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(Error::InvalidInput(format!("endpoint {endpoint:?}: a path is not allowed")));
    }
    Ok(uri)
}

/// One endpoint and its lazily connected channel.
#[derive(Debug)]
struct Node {
    /// The normalised URI, e.g. `http://127.0.0.1:2070`.
    uri: String,
    /// Its channel and, when the client pipelines single-key calls, its pipeline.
    link: Link,
}

/// What one attempt of a call gets to reach its endpoint.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    pub(crate) channel: Channel,
    /// The endpoint's pipeline, for single-key KeyValue calls
    /// ([`Link::key_value`](crate::pipeline)); `None` when the client sends them unary.
    pub(crate) pipeline: Option<Arc<Pipeline>>,
}

/// The endpoints of a client and which one is current.
#[derive(Debug)]
pub(crate) struct Pool {
    /// Invariant: not empty, at most `ENDPOINTS_MAX`, no duplicates.
    nodes: Vec<Node>,
    /// Index into `nodes` of the endpoint calls go to first.
    current: AtomicUsize,
    config: Config,
    /// Partition leaders, for calls that name a key, bucket or name.
    routes: Routes,
}

/// Where an attempt goes.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// The current endpoint (moving on after an endpoint failure).
    Current,
    /// The current endpoint as read before the call started the background read of the
    /// cluster's status, which may fail over too: the first attempt goes to this index,
    /// so that an endpoint failure there is the call's own (and told as its retry); then
    /// as `Current`.
    CurrentWas(usize),
    /// Always this endpoint (a transaction's node).
    Pinned(usize),
    /// This endpoint, which leads `partition`; after an endpoint failure there, the
    /// partition's leader is forgotten and later attempts go to the current endpoint.
    Routed { index: usize, partition: u32 },
}

impl Pool {
    /// Normalises the endpoints and creates their channels without connecting.
    ///
    /// Must run inside a tokio runtime: each lazy channel spawns its worker task.
    pub(crate) fn new(endpoints: Vec<String>, config: Config) -> Result<Pool, Error> {
        let mut uris: Vec<String> = Vec::with_capacity(endpoints.len());
        for endpoint in &endpoints {
            let uri = normalize_endpoint(endpoint)?;
            if !uris.contains(&uri) {
                uris.push(uri);
            }
        }
        if uris.is_empty() {
            return Err(Error::InvalidInput("no endpoints given".into()));
        }
        if uris.len() > ENDPOINTS_MAX {
            return Err(Error::InvalidInput(format!(
                "{} endpoints given, at most {ENDPOINTS_MAX} allowed",
                uris.len()
            )));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::InvalidInput("the client must be created inside a tokio runtime".into()));
        }
        let mut nodes = Vec::with_capacity(uris.len());
        for uri in uris {
            let endpoint = Endpoint::from_shared(uri.clone())
                .map_err(|e| Error::InvalidInput(format!("endpoint {uri:?}: {e}")))?
                .connect_timeout(config.connect_timeout)
                .http2_keep_alive_interval(Duration::from_millis(KEEP_ALIVE_INTERVAL_MS))
                .keep_alive_timeout(Duration::from_millis(KEEP_ALIVE_TIMEOUT_MS))
                .tcp_nodelay(true);
            let channel = endpoint.connect_lazy();
            let pipeline = config.pipeline.then(|| Arc::new(Pipeline::new(channel.clone())));
            nodes.push(Node { uri, link: Link { channel, pipeline } });
        }
        Ok(Pool { nodes, current: AtomicUsize::new(0), config, routes: Routes::default() })
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Returns the endpoint URIs in failover order.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.uri.clone()).collect()
    }

    /// Returns the index of the current endpoint.
    fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.nodes.len()
    }

    /// Returns the URI of the current endpoint.
    pub(crate) fn current_endpoint(&self) -> &str {
        &self.nodes[self.current()].uri
    }

    /// Moves the current endpoint past `failed`, unless a concurrent call already did.
    fn fail_over(&self, failed: usize) {
        let next = (failed + 1) % self.nodes.len();
        // A failed exchange means another call moved on already; keep its choice.
        let _ = self.current.compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Runs `attempt` against the current endpoint until it succeeds, fails with an error
    /// that is not an endpoint failure, or the retry budget is spent. `retry_safe` says
    /// whether the call may be repeated at all (reads; writes carrying an operation id).
    ///
    /// Each attempt gets the configured timeout, on the client side and as the gRPC
    /// deadline sent to the server.
    pub(crate) async fn call<T, F, Fut>(
        self: &Arc<Self>,
        method: &'static str,
        retry_safe: bool,
        attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Link, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_within(method, retry_safe, self.config.timeout, attempt).await
    }

    /// As [`Pool::call`], with `timeout` per attempt instead of the configured one (for
    /// calls that may wait on the server, such as a try-lock with a wait).
    pub(crate) async fn call_within<T, F, Fut>(
        self: &Arc<Self>,
        method: &'static str,
        retry_safe: bool,
        timeout: Duration,
        attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Link, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let retry = if retry_safe { Retry::Safe } else { Retry::Never };
        self.call_on(None, method, retry, timeout, attempt).await.map(|(response, _)| response)
    }

    /// As [`Pool::call`] for a call that addresses one partition (`route`): it goes to the
    /// partition's leader when the client knows it (see `routes`), and the answer's
    /// `served_by` teaches the client who leads.
    pub(crate) async fn call_routed<T, F, Fut>(
        self: &Arc<Self>,
        route: Route<'_>,
        method: &'static str,
        retry_safe: bool,
        attempt: F,
    ) -> Result<T, Error>
    where
        T: ServedBy,
        F: FnMut(Link, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_routed_within(route, method, retry_safe, self.config.timeout, attempt).await
    }

    /// As [`Pool::call_routed`], with `timeout` per attempt.
    pub(crate) async fn call_routed_within<T, F, Fut>(
        self: &Arc<Self>,
        route: Route<'_>,
        method: &'static str,
        retry_safe: bool,
        timeout: Duration,
        attempt: F,
    ) -> Result<T, Error>
    where
        T: ServedBy,
        F: FnMut(Link, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let (partition, target) = self.route_target(route);
        let retry = if retry_safe { Retry::Safe } else { Retry::Never };
        let (response, _) = self.call_at(target, method, retry, timeout, true, attempt).await?;
        if let Some(p) = partition {
            self.routes.learn(p, response.served_by());
        }
        Ok(response)
    }

    /// As [`Pool::call_on`] (unpinned), sent first to the leader of `route`'s partition
    /// when the route table knows it. For calls that run on the node receiving them but
    /// do their work at a partition's leader (a script whose keys live there): nothing
    /// is learnt from the answer, since the node that served it need not lead anything.
    pub(crate) async fn call_near<T, F, Fut>(
        self: &Arc<Self>,
        route: Route<'_>,
        method: &'static str,
        retry: Retry,
        timeout: Duration,
        attempt: F,
    ) -> Result<(T, usize), Error>
    where
        F: FnMut(Link, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let (_, target) = self.route_target(route);
        self.call_at(target, method, retry, timeout, true, attempt).await
    }

    /// `route`'s partition and where to send a call for it: its leader when known, else
    /// the current endpoint. Starts loading the route table when it needs it.
    fn route_target(self: &Arc<Self>, route: Route<'_>) -> (Option<u32>, Target) {
        let partition = self.routes.partition(route);
        let target = match partition.and_then(|p| self.routes.leader(p).map(|index| (p, index))) {
            Some((partition, index)) if index < self.nodes.len() => Target::Routed { index, partition },
            _ => Target::CurrentWas(self.current()),
        };
        self.fetch_routes();
        (partition, target)
    }

    /// Starts reading the cluster's status in the background when the route table needs
    /// it (only with several endpoints: one endpoint has nothing to choose).
    fn fetch_routes(self: &Arc<Self>) {
        if self.nodes.len() < 2 || !self.routes.fetch_due() {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            // The client's own call, which no caller made: its retries are not reported.
            let status = pool
                .call_at(
                    Target::Current,
                    "Status",
                    Retry::Safe,
                    pool.config.timeout,
                    false,
                    |link, timeout| async move {
                        kahuna_proto::v1::cluster_client::ClusterClient::new(link.channel)
                            .status(request(kahuna_proto::v1::StatusRequest {}, timeout))
                            .await
                    },
                )
                .await;
            match status {
                Ok((status, _)) => pool.routes.learn_status(&status, |address| {
                    let uri = normalize_endpoint(address).ok()?;
                    pool.nodes.iter().position(|node| node.uri == uri)
                }),
                Err(e) => tracing::debug!("cluster status for routing not read: {e}"),
            }
        });
    }

    /// Runs `attempt` until it succeeds, fails with an error `retry` does not allow to
    /// repeat, or the retry budget is spent; returns the response and the index of the
    /// endpoint that gave it. With `pinned`, every attempt goes to that endpoint (calls
    /// of a transaction, which lives on one node); otherwise to the current endpoint,
    /// which moves on after an endpoint failure.
    ///
    /// Each attempt gets `timeout`, on the client side and as the gRPC deadline sent to
    /// the server.
    pub(crate) async fn call_on<T, F, Fut>(
        self: &Arc<Self>,
        pinned: Option<usize>,
        method: &'static str,
        retry: Retry,
        timeout: Duration,
        attempt: F,
    ) -> Result<(T, usize), Error>
    where
        F: FnMut(Link, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let target = pinned.filter(|i| *i < self.nodes.len()).map_or(Target::Current, Target::Pinned);
        self.call_at(target, method, retry, timeout, true, attempt).await
    }

    /// The retry loop of every call: see [`Pool::call_on`]. With `report`, each retry is
    /// told to the retry hook, if one is set.
    async fn call_at<T, F, Fut>(
        self: &Arc<Self>,
        mut target: Target,
        method: &'static str,
        retry: Retry,
        timeout: Duration,
        report: bool,
        mut attempt: F,
    ) -> Result<(T, usize), Error>
    where
        F: FnMut(Link, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut retries = 0;
        loop {
            let index = match target {
                Target::Current => self.current(),
                Target::CurrentWas(index) | Target::Pinned(index) | Target::Routed { index, .. } => index,
            };
            let link = self.nodes[index].link.clone();
            let (error, not_committed) = match tokio::time::timeout(timeout, attempt(link, timeout)).await {
                Ok(Ok(response)) => return Ok((response.into_inner(), index)),
                Ok(Err(status)) => {
                    let outcome = status.metadata().get(OUTCOME_METADATA).and_then(|v| v.to_str().ok());
                    (Error::from_status(&status), outcome == Some("not-committed"))
                }
                Err(_elapsed) => (
                    Error::Timeout(format!(
                        "{method} got no answer from {} within {} ms",
                        self.nodes[index].uri,
                        timeout.as_millis()
                    )),
                    false,
                ),
            };
            if let Target::CurrentWas(_) = target {
                // Only the first attempt goes there.
                target = Target::Current;
            }
            if error.is_failover() {
                match target {
                    Target::Routed { partition, .. } => {
                        // The leader we knew of failed: ask the current endpoint next.
                        self.routes.forget(partition);
                        target = Target::Current;
                    }
                    Target::Current | Target::CurrentWas(_) | Target::Pinned(_) => self.fail_over(index),
                }
            }
            let repeatable = match retry {
                Retry::Never => false,
                Retry::Safe => error.is_failover(),
                // A conflict is left to the caller: the server already re-ran the call.
                Retry::NotSent => {
                    error.is_not_sent()
                        || (not_committed && error.is_retryable() && !matches!(error, Error::Conflict(_)))
                }
            };
            if !(repeatable && retries < self.config.retries) {
                return Err(with_context(error, &self.nodes[index].uri, retries + 1));
            }
            retries += 1;
            tracing::debug!(
                method,
                endpoint = %self.nodes[index].uri,
                retries,
                ?target,
                %error,
                "retrying"
            );
            let pause = backoff(retries);
            if report && let Some(OnRetry(hook)) = &self.config.on_retry {
                let next = match target {
                    Target::Current => self.current(),
                    Target::CurrentWas(index) | Target::Pinned(index) | Target::Routed { index, .. } => index,
                };
                hook(&RetryEvent {
                    method,
                    attempt: retries + 1,
                    attempts_max: self.config.retries + 1,
                    failed_endpoint: &self.nodes[index].uri,
                    error: &error,
                    next_endpoint: &self.nodes[next].uri,
                    backoff: pause,
                    pinned: matches!(target, Target::Pinned(_)),
                });
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Returns the URI of endpoint `index` (as returned by [`Pool::call_on`]).
    pub(crate) fn endpoint(&self, index: usize) -> &str {
        self.nodes.get(index).map_or("", |node| node.uri.as_str())
    }
}

/// Which failed attempts of a call [`Pool::call_on`] repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// None: the call must not run twice and its outcome is unknown after a failure.
    Never,
    /// Endpoint failures (`Unavailable`, `Timeout`): for calls that are safe to repeat
    /// (reads; writes with an operation id; a transaction's commit, whose outcome the
    /// server keeps).
    Safe,
    /// Only failures that prove the request had no effect: it never left the client (the
    /// channel could not connect), or the server says so (`kahuna-outcome: not-committed`
    /// on a transient error). For calls that are not idempotent, such as scripts.
    NotSent,
}

/// Adds the endpoint and the number of attempts to an endpoint failure, which otherwise
/// reads like "tcp connect error" with no hint of where.
fn with_context(error: Error, uri: &str, attempts: u32) -> Error {
    let context = |message: String| {
        if message.contains(uri) {
            message
        } else {
            let noun = if attempts == 1 { "attempt" } else { "attempts" };
            format!("{message} (at {uri}, after {attempts} {noun})")
        }
    };
    match error {
        Error::Unavailable(message) => Error::Unavailable(context(message)),
        Error::Timeout(message) => Error::Timeout(context(message)),
        other => other,
    }
}

/// Returns the pause before retry number `retries` (from 1): exponential from
/// `BACKOFF_MS_BASE`, capped at `BACKOFF_MS_MAX`, with up to 50% random jitter so that
/// clients failing together do not retry together.
fn backoff(retries: u32) -> Duration {
    let exponent = retries.saturating_sub(1).min(16);
    let base_ms = BACKOFF_MS_BASE.saturating_mul(1 << exponent).min(BACKOFF_MS_MAX);
    let jitter_ms = rand::random_range(0..=base_ms / 2);
    Duration::from_millis(base_ms - jitter_ms)
}

/// Returns a request carrying `message` and the gRPC deadline `timeout`.
pub(crate) fn request<M>(message: M, timeout: Duration) -> tonic::Request<M> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme() {
        assert_eq!(normalize_endpoint("127.0.0.1:2070").ok().as_deref(), Some("http://127.0.0.1:2070"));
        assert_eq!(normalize_endpoint("  node-1:2070/ ").ok().as_deref(), Some("http://node-1:2070"));
        assert_eq!(normalize_endpoint("http://[::1]:2070").ok().as_deref(), Some("http://[::1]:2070"));
        assert_eq!(normalize_endpoint("localhost").ok().as_deref(), Some("http://localhost"));
    }

    #[test]
    fn bad_endpoints_are_invalid_input() {
        for bad in ["", "   ", "https://a:1", "ftp://a:1", "http://", "http:///", "a:", "a:1/path", "a b:1", "a:port"] {
            match normalize_endpoint(bad) {
                Err(Error::InvalidInput(_)) => {}
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn pool_deduplicates_and_rejects_empty() {
        let pool = Pool::new(vec!["a:1".into(), "http://a:1".into(), "b:2".into()], Config::default());
        let pool = pool.expect("valid endpoints");
        assert_eq!(pool.endpoints(), ["http://a:1", "http://b:2"]);
        assert!(matches!(Pool::new(vec![], Config::default()), Err(Error::InvalidInput(_))));
    }

    #[tokio::test]
    async fn fail_over_moves_once_per_failure() {
        let pool =
            Pool::new(vec!["a:1".into(), "b:2".into(), "c:3".into()], Config::default()).expect("valid endpoints");
        assert_eq!(pool.current_endpoint(), "http://a:1");
        pool.fail_over(0);
        pool.fail_over(0); // a concurrent call saw the same failure: no second move
        assert_eq!(pool.current_endpoint(), "http://b:2");
        pool.fail_over(1);
        pool.fail_over(2);
        assert_eq!(pool.current_endpoint(), "http://a:1");
    }

    #[test]
    fn pool_outside_a_runtime_is_an_error_not_a_panic() {
        let pool = Pool::new(vec!["a:1".into()], Config::default());
        assert!(matches!(pool, Err(Error::InvalidInput(_))));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for retries in 1..40 {
            let pause = backoff(retries);
            assert!(pause <= Duration::from_millis(BACKOFF_MS_MAX), "{retries}: {pause:?}");
            assert!(pause >= Duration::from_millis(BACKOFF_MS_BASE / 2), "{retries}: {pause:?}");
        }
    }

    #[tokio::test]
    async fn unreachable_endpoints_fail_over_then_give_up() {
        // The attempts fail without touching the channels, so no server is needed.
        let config = Config { retries: 2, ..Config::default() };
        let pool =
            Arc::new(Pool::new(vec!["127.0.0.1:9".into(), "127.0.0.2:9".into()], config).expect("valid endpoints"));
        let mut attempts = 0;
        let result: Result<(), Error> = pool
            .call("test", true, |_link, _timeout| {
                attempts += 1;
                async { Err(tonic::Status::unavailable("down")) }
            })
            .await;
        match result {
            Err(Error::Unavailable(message)) => {
                assert!(message.starts_with("down (at http://127.0.0."), "{message}");
                assert!(message.ends_with("after 3 attempts)"), "{message}");
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
        assert_eq!(attempts, 3);
        let mut attempts = 0;
        let result: Result<(), Error> = pool
            .call("test", false, |_link, _timeout| {
                attempts += 1;
                async { Err(tonic::Status::unavailable("down")) }
            })
            .await;
        assert!(matches!(result, Err(Error::Unavailable(_))));
        assert_eq!(attempts, 1, "unsafe calls are never retried");
        let mut attempts = 0;
        let result: Result<(), Error> = pool
            .call("test", true, |_link, _timeout| {
                attempts += 1;
                async { Err(tonic::Status::invalid_argument("bad")) }
            })
            .await;
        assert!(matches!(result, Err(Error::InvalidInput(_))));
        assert_eq!(attempts, 1, "bad input is never retried");
    }

    /// What the test hook records of a retry: attempt, attempts_max, failed endpoint,
    /// next endpoint, pinned, error code.
    type Seen = (u32, u32, String, String, bool, String);

    /// A hook that records every retry, and what it recorded.
    fn recording() -> (OnRetry, Arc<std::sync::Mutex<Vec<Seen>>>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let hook = OnRetry(Arc::new(move |event: &RetryEvent<'_>| {
            assert!(event.backoff <= Duration::from_millis(BACKOFF_MS_MAX), "{event:?}");
            log.lock().expect("not poisoned").push((
                event.attempt,
                event.attempts_max,
                event.failed_endpoint.to_owned(),
                event.next_endpoint.to_owned(),
                event.pinned,
                event.error.code().to_owned(),
            ));
        }));
        (hook, seen)
    }

    #[tokio::test]
    async fn the_retry_hook_is_told_each_retry_with_its_endpoints() {
        let (hook, seen) = recording();
        let config = Config { retries: 3, on_retry: Some(hook), ..Config::default() };
        let endpoints = vec!["a:1".into(), "b:2".into(), "c:3".into()];
        let pool = Arc::new(Pool::new(endpoints, config).expect("valid endpoints"));
        let take = || std::mem::take(&mut *seen.lock().expect("not poisoned"));
        let event = |attempt: u32, failed: &str, next: &str, pinned: bool| {
            (attempt, 4, format!("http://{failed}"), format!("http://{next}"), pinned, "Unavailable".to_owned())
        };

        // Failing over: each retry names the endpoint that failed and the next one.
        let result: Result<(), Error> =
            pool.call("Get", true, |_link, _timeout| async { Err(tonic::Status::unavailable("down")) }).await;
        assert!(result.is_err());
        assert_eq!(
            take(),
            [event(2, "a:1", "b:2", false), event(3, "b:2", "c:3", false), event(4, "c:3", "a:1", false)]
        );

        // A pinned call (a transaction's) stays on its endpoint, and says so.
        let result: Result<((), usize), Error> = pool
            .call_on(Some(1), "Commit", Retry::Safe, Duration::from_secs(1), |_link, _timeout| async {
                Err(tonic::Status::unavailable("down"))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(take(), [event(2, "b:2", "b:2", true), event(3, "b:2", "b:2", true), event(4, "b:2", "b:2", true)]);

        // No retry, no call: a success, an error that is not retried, an unsafe call, and
        // a success after one retry tells exactly one.
        let ok: Result<(), Error> = pool.call("Get", true, |_c, _t| async { Ok(tonic::Response::new(())) }).await;
        assert!(ok.is_ok());
        let bad: Result<(), Error> =
            pool.call("Get", true, |_c, _t| async { Err(tonic::Status::invalid_argument("bad")) }).await;
        assert!(bad.is_err());
        let unsafe_call: Result<(), Error> =
            pool.call("Eval", false, |_c, _t| async { Err(tonic::Status::unavailable("down")) }).await;
        assert!(unsafe_call.is_err());
        assert_eq!(take(), [], "nothing was retried");
        let current = pool.current_endpoint().trim_start_matches("http://").to_owned();
        let mut attempts = 0;
        let once: Result<(), Error> = pool
            .call("Get", true, |_c, _t| {
                attempts += 1;
                let first = attempts == 1;
                async move { if first { Err(tonic::Status::unavailable("down")) } else { Ok(tonic::Response::new(())) } }
            })
            .await;
        assert!(once.is_ok());
        let next = pool.current_endpoint().trim_start_matches("http://").to_owned();
        assert_eq!(take(), [event(2, &current, &next, false)]);

        // The client's own background calls are not told.
        let quiet: Result<((), usize), Error> = pool
            .call_at(Target::Current, "Status", Retry::Safe, Duration::from_secs(1), false, |_c, _t| async {
                Err(tonic::Status::unavailable("down"))
            })
            .await;
        assert!(quiet.is_err());
        assert_eq!(take(), []);
    }

    #[tokio::test]
    async fn pinned_calls_stay_and_not_sent_retries_only_unsent() {
        let config = Config { retries: 2, ..Config::default() };
        let pool = Arc::new(Pool::new(vec!["127.0.0.1:9".into(), "127.0.0.2:9".into()], config).expect("endpoints"));
        let mut seen = Vec::new();
        let result: Result<((), usize), Error> = pool
            .call_on(Some(1), "test", Retry::Safe, Duration::from_secs(1), |_link, _timeout| {
                seen.push(());
                async { Err(tonic::Status::unavailable("down")) }
            })
            .await;
        assert!(matches!(&result, Err(Error::Unavailable(m)) if m.contains("127.0.0.2")), "pinned: {result:?}");
        assert_eq!(seen.len(), 3);
        let mut attempts = 0;
        let result: Result<((), usize), Error> = pool
            .call_on(None, "test", Retry::NotSent, Duration::from_secs(1), |_link, _timeout| {
                attempts += 1;
                async { Err(tonic::Status::unavailable("no leader")) }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(attempts, 1, "an answer from a server may hide a run: no retry");
        let mut attempts = 0;
        let result: Result<((), usize), Error> = pool
            .call_on(None, "test", Retry::NotSent, Duration::from_secs(1), |_link, _timeout| {
                attempts += 1;
                async { Err(tonic::Status::unknown("Service was not ready: transport error")) }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(attempts, 3, "a request that never left may be sent again");
        let mut attempts = 0;
        let result: Result<((), usize), Error> = pool
            .call_on(None, "test", Retry::NotSent, Duration::from_secs(1), |_link, _timeout| {
                attempts += 1;
                let mut status = tonic::Status::unavailable("script:3: no quorum");
                status
                    .metadata_mut()
                    .insert(OUTCOME_METADATA, tonic::metadata::MetadataValue::from_static("not-committed"));
                async move { Err(status) }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(attempts, 3, "the server said the failed run had no effect");
    }
}
