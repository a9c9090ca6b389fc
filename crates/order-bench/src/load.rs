//! The HTTP load: `POST /api/orders` over HTTP/1.1 keep-alive, one hyper
//! connection per task, every latency recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::{Context, Result};

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub request_timeout: Duration,
}

/// What the measured window saw (warm-up excluded).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadStats {
    /// Latencies of the 201 responses, microseconds, sorted ascending.
    pub latencies_us: Vec<u64>,
    /// 201 responses.
    pub created: u64,
    /// Responses with another status.
    pub non_201: u64,
    /// Count per non-201 status.
    pub statuses: BTreeMap<u16, u64>,
    /// Connect/send/receive failures and timeouts.
    pub transport_errors: u64,
    /// A few distinct error messages (any phase), for diagnosis.
    pub error_samples: Vec<String>,
    /// TCP connections opened (initial + reconnects), all phases.
    pub connects: u64,
    /// From the end of the warm-up until the last task finished.
    pub measured: Duration,
}

impl LoadStats {
    /// 201 responses per second of the measured window.
    pub fn throughput(&self) -> f64 {
        let secs = self.measured.as_secs_f64();
        if secs > 0.0 {
            self.created as f64 / secs
        } else {
            0.0
        }
    }

    /// Latency percentile in microseconds.
    pub fn latency_us(&self, q: f64) -> Option<u64> {
        percentile(&self.latencies_us, q)
    }

    fn merge(&mut self, other: LoadStats) {
        self.latencies_us.extend(other.latencies_us);
        self.created += other.created;
        self.non_201 += other.non_201;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        for e in other.error_samples {
            note_error(&mut self.error_samples, e);
        }
        self.connects += other.connects;
    }
}

const MAX_ERROR_SAMPLES: usize = 5;

pub(crate) fn note_error(samples: &mut Vec<String>, e: String) {
    if samples.len() < MAX_ERROR_SAMPLES && !samples.contains(&e) {
        samples.push(e);
    }
}

/// Nearest-rank percentile of an ascending slice (`q` in 0..=1): the smallest
/// value with at least `q` of the values at or below it. `None` when empty.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The request body for command `n`.
pub fn order_body(n: u64) -> String {
    format!(
        concat!(
            r#"{{"customerId":"cust-{}","restaurantId":"rest-{}","items":["#,
            r#"{{"menuItemId":"m1","name":"Margherita","price":"12.50","quantity":2}},"#,
            r#"{{"menuItemId":"m2","name":"Cola","price":"2.99","quantity":1}}]}}"#
        ),
        n % 1000,
        n % 50
    )
}

/// Runs the warm-up and the measured window, then merges every task's record.
pub async fn run(cfg: &LoadConfig) -> Result<LoadStats> {
    // The body depends on n % 1000 only (50 divides 1000): build them once.
    let bodies: Arc<Vec<Bytes>> = Arc::new((0..1000).map(|n| Bytes::from(order_body(n))).collect());
    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let end = measure_from + cfg.duration;
    let mut tasks = JoinSet::new();
    for i in 0..cfg.connections {
        tasks.spawn(worker(i, cfg.clone(), bodies.clone(), measure_from, end));
    }
    let mut total = LoadStats::default();
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("a load task failed")?);
    }
    total.measured = Instant::now().saturating_duration_since(measure_from);
    total.latencies_us.sort_unstable();
    Ok(total)
}

pub(crate) type Sender = SendRequest<Full<Bytes>>;

async fn connect(cfg: &LoadConfig) -> std::result::Result<Sender, String> {
    open(cfg.addr, cfg.request_timeout).await
}

/// One keep-alive HTTP/1.1 connection to `addr` (Nagle off).
pub(crate) async fn open(
    addr: SocketAddr,
    timeout: Duration,
) -> std::result::Result<Sender, String> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set TCP_NODELAY: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole response; returns its status.
async fn send(sender: &mut Sender, req: Request<Full<Bytes>>) -> std::result::Result<u16, String> {
    send_full(sender, req).await.map(|(status, _)| status)
}

/// Sends one request and reads the whole response; returns its status and body.
pub(crate) async fn send_full(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
) -> std::result::Result<(u16, Bytes), String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection not ready: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?;
    Ok((status, body.to_bytes()))
}

async fn worker(
    index: usize,
    cfg: LoadConfig,
    bodies: Arc<Vec<Bytes>>,
    measure_from: Instant,
    end: Instant,
) -> LoadStats {
    let mut st = LoadStats {
        latencies_us: Vec::with_capacity(16 * 1024),
        ..LoadStats::default()
    };
    let step = cfg.connections as u64;
    let mut n = index as u64;
    let mut sender: Option<Sender> = None;
    while Instant::now() < end {
        if sender.as_ref().is_none_or(SendRequest::is_closed) {
            sender = None;
            match connect(&cfg).await {
                Ok(s) => {
                    st.connects += 1;
                    sender = Some(s);
                }
                Err(e) => {
                    if Instant::now() >= measure_from {
                        st.transport_errors += 1;
                    }
                    note_error(&mut st.error_samples, e);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let body = bodies[(n % bodies.len() as u64) as usize].clone();
        n += step;
        let req = match Request::post("/api/orders")
            .header(HOST, cfg.host.as_str())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
        {
            Ok(r) => r,
            Err(e) => {
                note_error(&mut st.error_samples, format!("building the request: {e}"));
                break;
            }
        };
        let t0 = Instant::now();
        let outcome = tokio::time::timeout(cfg.request_timeout, send(s, req)).await;
        let elapsed = t0.elapsed();
        let measured = t0 >= measure_from;
        match outcome {
            Ok(Ok(201)) => {
                if measured {
                    st.created += 1;
                    st.latencies_us.push(elapsed.as_micros() as u64);
                }
            }
            Ok(Ok(status)) => {
                if measured {
                    st.non_201 += 1;
                    *st.statuses.entry(status).or_default() += 1;
                }
            }
            Ok(Err(e)) => {
                if measured {
                    st.transport_errors += 1;
                }
                note_error(&mut st.error_samples, e);
                sender = None;
            }
            Err(_) => {
                if measured {
                    st.transport_errors += 1;
                }
                note_error(
                    &mut st.error_samples,
                    format!("request timed out after {:?}", cfg.request_timeout),
                );
                sender = None;
            }
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_of_an_empty_set_is_none() {
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn the_percentile_is_the_nearest_rank_value() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.9), Some(90));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 0.999), Some(100));
        assert_eq!(percentile(&v, 1.0), Some(100));
    }

    #[test]
    fn the_zero_percentile_is_the_minimum_and_one_is_the_maximum() {
        let v = [3, 7, 9];
        assert_eq!(percentile(&v, 0.0), Some(3));
        assert_eq!(percentile(&v, 1.0), Some(9));
    }

    #[test]
    fn a_single_value_is_every_percentile() {
        for q in [0.0, 0.5, 0.99, 1.0] {
            assert_eq!(percentile(&[42], q), Some(42));
        }
    }

    #[test]
    fn a_high_percentile_of_few_values_rounds_up_to_the_next_rank() {
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&v, 0.91), Some(10));
        assert_eq!(percentile(&v, 0.9), Some(9));
    }

    #[test]
    fn merging_task_records_adds_counts_and_keeps_distinct_error_samples() {
        let mut a = LoadStats {
            latencies_us: vec![5],
            created: 1,
            statuses: BTreeMap::from([(500, 2)]),
            non_201: 2,
            error_samples: vec!["x".into()],
            ..LoadStats::default()
        };
        a.merge(LoadStats {
            latencies_us: vec![1],
            created: 1,
            statuses: BTreeMap::from([(500, 1), (409, 1)]),
            non_201: 2,
            transport_errors: 3,
            error_samples: vec!["x".into(), "y".into()],
            connects: 2,
            ..LoadStats::default()
        });
        assert_eq!(a.created, 2);
        assert_eq!(a.non_201, 4);
        assert_eq!(a.statuses, BTreeMap::from([(409, 1), (500, 3)]));
        assert_eq!(a.transport_errors, 3);
        assert_eq!(a.error_samples, ["x", "y"]);
        assert_eq!(a.latencies_us.len(), 2);
    }

    #[test]
    fn the_order_body_cycles_customers_and_restaurants() {
        let b = order_body(1051);
        assert!(b.starts_with(
            r#"{"customerId":"cust-51","restaurantId":"rest-1","items":[{"menuItemId":"m1""#
        ));
        let v: serde_json::Value = serde_json::from_str(&b).unwrap_or_default();
        assert_eq!(v["items"][1]["price"], "2.99");
        assert_eq!(v["items"][0]["quantity"], 2);
    }

    #[test]
    fn throughput_is_created_responses_per_measured_second() {
        let s = LoadStats {
            created: 500,
            measured: Duration::from_secs(2),
            ..LoadStats::default()
        };
        assert_eq!(s.throughput(), 250.0);
        assert_eq!(LoadStats::default().throughput(), 0.0);
    }
}
