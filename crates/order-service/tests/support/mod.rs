//! Test support shared by the service's integration tests (each test file
//! is its own crate and includes this module with `mod support;`): one copy
//! of the helpers instead of one per file. Not every test uses every helper.
//!
//! This module: the real `order-service` binary on the embedded profile,
//! started on a fresh data directory and a free port ([`Service`]), talked
//! to over HTTP, and its embedded bus read as an independent consumer.
//!
//! * `process`: free ports, waiting for a spawned service, its log,
//!   `kill -9` (for this module's and `production`'s services).
//! * `metrics`: reading a figure off `/metrics`.
//! * `router`: the whole application in process, driven through the router
//!   without a socket.
//! * `production`: the real binary on MariaDB, Kafka (Tansu) and MongoDB.

#![allow(dead_code)]

pub mod metrics;
pub mod process;
pub mod production;
pub mod router;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use order_core::domain::EventEnvelope;
use order_core::ports::{Delivery, EventBus};
use order_store_sqlite::EmbeddedBus;
use serde_json::{json, Value};

use metrics::metric;
use process::{free_port, kill9, read_log, service_command, wait_until_ready};

pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub text: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    let payload = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(payload))
        .map_err(|e| format!("request: {e}"))?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = res.status().as_u16();
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let bytes = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Response {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// A running service process. Killed on drop.
pub struct Service {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl Service {
    /// Starts the binary on `dir` (created by the caller) with test-friendly
    /// settings plus `env`, and waits until it is ready.
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> Service {
        let mut s = Service {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: dir.to_owned(),
            child: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        s.restart().await;
        s
    }

    /// (Re)starts the process on the same data directory and a new port.
    pub async fn restart(&mut self) {
        let port = free_port();
        self.addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = service_command(port, &self.dir.join("service.log"));
        cmd.env(
            "ORDER_DATABASE_URL",
            format!("sqlite://{}", self.dir.join("orders.db").display()),
        )
        .env("ORDER_LOG", "warn")
        .env("ORDER_PUBLISH_MAX_ATTEMPTS", "3")
        .env("ORDER_PUBLISH_BACKOFF_MS", "20");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("service starts"));
        let addr = self.addr;
        let log_path = self.dir.join("service.log");
        wait_until_ready(
            &mut self.child,
            30,
            Duration::from_millis(50),
            move || async move {
                matches!(call(addr, "GET", "/health/ready", None, &[]).await, Ok(r) if r.status == 200)
            },
            || read_log(&log_path),
        )
        .await;
    }

    pub fn log(&self) -> String {
        read_log(&self.dir.join("service.log"))
    }

    /// `kill -9`: no shutdown hook runs.
    pub fn kill9(&mut self) {
        kill9(&mut self.child);
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        call(self.addr, method, path, body, &[])
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A gauge or counter of `/metrics` without labels.
    pub async fn metric(&self, name: &str) -> f64 {
        metric(&self.call("GET", "/metrics", None).await.text, name)
    }

    /// The service's embedded bus file, opened as an independent reader.
    pub fn bus(&self) -> Arc<EmbeddedBus> {
        Arc::new(EmbeddedBus::open(self.dir.join("bus.db")).expect("bus opens"))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn order_body(customer: &str, restaurant: &str) -> Value {
    json!({
        "customerId": customer,
        "restaurantId": restaurant,
        "items": [
            {"menuItemId": "m1", "name": "Margherita", "price": "12.50", "quantity": 2},
            {"menuItemId": "m2", "name": "Cola", "price": 2.99, "quantity": 1}
        ]
    })
}

/// An `OrderCreated` from an old producer: no `data.totalAmount`, which
/// the projector cannot decode (it dead-letters it, consumer-side).
pub fn poison_order_created(order: &str, event_id: &str, customer: &str) -> Value {
    json!({
        "eventId": event_id, "eventType": "OrderCreated", "aggregateId": order,
        "aggregateType": "Order", "version": 1, "schemaVersion": 2,
        "occurredOn": "2026-12-01T10:00:00Z", "correlationId": null, "causationId": null,
        "data": {
            "orderId": order, "customerId": customer, "restaurantId": "restaurant-1",
            "items": [{ "menuItemId": "m1", "name": "Pizza", "price": "12.50", "quantity": 2 }]
        }
    })
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads every message of `topic` with a fresh consumer group: what an
/// independent downstream consumer sees.
pub async fn read_deliveries(bus: &EmbeddedBus, topic: &str) -> Vec<Delivery> {
    let group = format!("e2e-checker-{}", uuid::Uuid::now_v7());
    let mut sub = bus.subscribe(&group, topic).await.expect("subscribes");
    let mut out = Vec::new();
    loop {
        let batch = sub
            .poll(1000, Duration::from_millis(300))
            .await
            .expect("polls");
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

/// The event envelopes of `topic` (messages that are not envelopes skipped).
pub async fn read_topic(bus: &EmbeddedBus, topic: &str) -> Vec<EventEnvelope> {
    read_deliveries(bus, topic)
        .await
        .iter()
        .filter_map(|d| serde_json::from_slice(&d.payload).ok())
        .collect()
}

/// Asserts the consumer's view: no event id twice, and per aggregate the
/// versions arrive as 1, 2, 3, … without gaps. Returns versions per aggregate.
pub fn assert_ordered_once(events: &[EventEnvelope]) -> HashMap<String, Vec<u64>> {
    let mut seen = std::collections::HashSet::new();
    let mut per: HashMap<String, Vec<u64>> = HashMap::new();
    for e in events {
        assert!(
            seen.insert(e.event_id),
            "event {} delivered twice",
            e.event_id
        );
        per.entry(e.aggregate_id.clone())
            .or_default()
            .push(e.version);
    }
    for (agg, versions) in &per {
        let expected: Vec<u64> = (1..=versions.len() as u64).collect();
        assert_eq!(versions, &expected, "order {agg} events out of order");
    }
    per
}
