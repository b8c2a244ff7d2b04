//! The retry hook seen through the public API: a client whose endpoints refuse every
//! connection tells each retry, naming the endpoint that failed and the one tried next.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kahuna_client::{Client, Error, GetOptions, RetryEvent};

/// Binds then releases a loopback port, so that connecting to it is refused.
fn refused_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let address = listener.local_addr().expect("local address");
    drop(listener);
    address.to_string()
}

#[tokio::test]
async fn each_retry_is_told_with_the_endpoints() {
    let (a, b) = (refused_endpoint(), refused_endpoint());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let client = Client::builder([a.clone(), b.clone()])
        .retries(3)
        .timeout(Duration::from_secs(5))
        .on_retry(move |event: &RetryEvent<'_>| {
            assert!(matches!(event.error, Error::Unavailable(_) | Error::Timeout(_)), "{event:?}");
            assert!(!event.pinned);
            log.lock().expect("not poisoned").push(format!(
                "{} {}/{} {} -> {}",
                event.method, event.attempt, event.attempts_max, event.failed_endpoint, event.next_endpoint
            ));
        })
        .build()
        .expect("client");
    // `status` addresses no partition, so no background read of the cluster's status
    // (which fails over too) races with it for the current endpoint.
    let result = client.status().await;
    assert!(matches!(&result, Err(Error::Unavailable(m)) if m.contains("after 4 attempts")), "{result:?}");
    let (a, b) = (format!("http://{a}"), format!("http://{b}"));
    assert_eq!(
        *seen.lock().expect("not poisoned"),
        [format!("Status 2/4 {a} -> {b}"), format!("Status 3/4 {b} -> {a}"), format!("Status 4/4 {a} -> {b}")]
    );
}

#[tokio::test]
async fn one_endpoint_is_retried_and_without_a_hook_nothing_changes() {
    let endpoint = refused_endpoint();
    let seen: Arc<Mutex<Vec<(u32, bool)>>> = Arc::default();
    let (log, uri) = (seen.clone(), format!("http://{endpoint}"));
    let client = Client::builder([endpoint.clone()])
        .retries(2)
        .on_retry(move |event: &RetryEvent<'_>| {
            assert_eq!(event.failed_endpoint, event.next_endpoint, "one endpoint: {event:?}");
            assert_eq!(event.method, "Get");
            log.lock().expect("not poisoned").push((event.attempt, event.failed_endpoint == uri));
        })
        .build()
        .expect("client");
    let result = client.get("k", GetOptions::new()).await;
    assert!(matches!(&result, Err(Error::Unavailable(m)) if m.contains("after 3 attempts")), "{result:?}");
    assert_eq!(*seen.lock().expect("not poisoned"), [(2, true), (3, true)]);

    let client = Client::builder([endpoint]).retries(2).build().expect("client");
    let result = client.get("k", GetOptions::new()).await;
    assert!(matches!(&result, Err(Error::Unavailable(m)) if m.contains("after 3 attempts")), "{result:?}");
}
