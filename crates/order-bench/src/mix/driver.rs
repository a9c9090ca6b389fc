//! One phase over HTTP: a task per keep-alive connection, each with its
//! own [`OrderBook`] and [`Rng`], sending what [`choose`] picks until the
//! end of the phase (or until it has nothing left to act on).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::plan::{choose, Fallback, Kind, OrderBook, Pick, Rng, Weights};
use super::stats::PhaseStats;
use crate::load::{open, order_body, send_full, LoadConfig, Sender};
use crate::{Context, Result};

/// Customers of [`order_body`]: `cust-0` … `cust-999`.
const CUSTOMERS: u64 = 1000;

#[derive(Debug, Clone)]
pub struct PhaseConfig {
    /// Target, connections and windows, as for the create load.
    pub load: LoadConfig,
    pub weights: Weights,
    pub fallback: Fallback,
    /// Seeds the tasks' PRNGs (task i uses `seed + i`).
    pub seed: u64,
}

/// Runs one phase with `books` (one per connection; missing ones start
/// empty) and hands the books back for the next phase.
pub async fn run(cfg: &PhaseConfig, books: Vec<OrderBook>) -> Result<(PhaseStats, Vec<OrderBook>)> {
    let bodies: Arc<Vec<Bytes>> =
        Arc::new((0..CUSTOMERS).map(|n| Bytes::from(order_body(n))).collect());
    let start = Instant::now();
    let measure_from = start + cfg.load.warmup;
    let end = measure_from + cfg.load.duration;
    let mut books = books.into_iter();
    let mut tasks = JoinSet::new();
    for i in 0..cfg.load.connections {
        let book = books.next().unwrap_or_default();
        let task = Task {
            index: i,
            cfg: cfg.clone(),
            bodies: bodies.clone(),
            rng: Rng::new(cfg.seed.wrapping_add(i as u64)),
            book,
            measure_from,
            end,
        };
        tasks.spawn(async move { (i, task.run().await) });
    }
    let mut total = PhaseStats::default();
    let mut returned: Vec<(usize, OrderBook)> = Vec::with_capacity(cfg.load.connections);
    while let Some(joined) = tasks.join_next().await {
        let (i, (stats, book)) = joined.context("a mixed-load task failed")?;
        total.merge(&stats);
        returned.push((i, book));
    }
    total.finish(Instant::now().saturating_duration_since(measure_from));
    returned.sort_by_key(|(i, _)| *i);
    Ok((total, returned.into_iter().map(|(_, b)| b).collect()))
}

struct Task {
    index: usize,
    cfg: PhaseConfig,
    bodies: Arc<Vec<Bytes>>,
    rng: Rng,
    book: OrderBook,
    measure_from: Instant,
    end: Instant,
}

/// The request line and body of a pick.
pub fn request_for(pick: &Pick, n: u64, bodies: &[Bytes]) -> (Method, String, Option<Bytes>) {
    let id = pick.order.unwrap_or_default();
    match pick.kind {
        Kind::Create => (
            Method::POST,
            "/api/orders".to_owned(),
            bodies
                .get((n % bodies.len().max(1) as u64) as usize)
                .cloned(),
        ),
        Kind::Confirm => (
            Method::PUT,
            format!("/api/orders/{id}/confirm"),
            Some(Bytes::from(format!(r#"{{"paymentId":"pay-{n}"}}"#))),
        ),
        Kind::Cancel => (
            Method::PUT,
            format!("/api/orders/{id}/cancel"),
            Some(Bytes::from_static(
                br#"{"reason":"customer changed their mind"}"#,
            )),
        ),
        Kind::Prepare | Kind::Ready | Kind::Deliver => (
            Method::PUT,
            format!(
                "/api/orders/{id}/{}",
                pick.kind.action().unwrap_or_default()
            ),
            None,
        ),
        Kind::Get => (Method::GET, format!("/api/orders/{id}"), None),
        // Both forms of the customer list, alternately.
        Kind::List if n.is_multiple_of(2) => (
            Method::GET,
            format!("/api/orders/customer/cust-{}", (n / 2) % CUSTOMERS),
            None,
        ),
        Kind::List => (
            Method::GET,
            format!("/api/orders?customerId=cust-{}", (n / 2) % CUSTOMERS),
            None,
        ),
    }
}

/// The order id of a 201 answer to a create.
pub fn created_id(body: &[u8]) -> Option<Uuid> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("id")?.as_str()?.parse().ok()
}

impl Task {
    async fn run(mut self) -> (PhaseStats, OrderBook) {
        let mut st = PhaseStats::default();
        let mut sender: Option<Sender> = None;
        let mut n = self.index as u64;
        let step = self.cfg.load.connections.max(1) as u64;
        while Instant::now() < self.end {
            if sender.as_ref().is_none_or(SendRequest::is_closed) {
                sender = None;
                match open(self.cfg.load.addr, self.cfg.load.request_timeout).await {
                    Ok(s) => {
                        st.connects += 1;
                        sender = Some(s);
                    }
                    Err(e) => {
                        st.note_error(e);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
            }
            let Some(s) = sender.as_mut() else { continue };
            let Some(pick) = choose(
                &self.cfg.weights,
                &mut self.rng,
                &mut self.book,
                self.cfg.fallback,
            ) else {
                st.exhausted_tasks += 1;
                break;
            };
            n += step;
            let (method, path, body) = request_for(&pick, n, &self.bodies);
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header(HOST, self.cfg.load.host.as_str());
            if body.is_some() {
                req = req.header(CONTENT_TYPE, "application/json");
            }
            let req = match req.body(Full::new(body.unwrap_or_default())) {
                Ok(r) => r,
                Err(e) => {
                    st.note_error(format!("building the request: {e}"));
                    break;
                }
            };
            let t0 = Instant::now();
            let outcome =
                tokio::time::timeout(self.cfg.load.request_timeout, send_full(s, req)).await;
            let elapsed = t0.elapsed();
            let measured = t0 >= self.measure_from;
            let k = st.kind_mut(pick.kind);
            match outcome {
                Ok(Ok((status, resp))) if status == pick.kind.ok_status() => {
                    if measured {
                        k.ok += 1;
                        k.latencies_us.push(elapsed.as_micros() as u64);
                    }
                    match (pick.kind, pick.order) {
                        (Kind::Create, _) => match created_id(&resp) {
                            Some(id) => self.book.created(id),
                            None => st.note_error("a 201 to a create without an order id".into()),
                        },
                        (kind, Some(id)) => self.book.succeeded(kind, id),
                        (_, None) => {}
                    }
                }
                Ok(Ok((404, _))) if pick.kind == Kind::Get => {
                    if measured {
                        k.not_found += 1;
                    }
                }
                Ok(Ok((status, resp))) => {
                    if measured {
                        *k.statuses.entry(status).or_default() += 1;
                    }
                    st.note_error(format!(
                        "{} answered {status}: {}",
                        pick.kind.name(),
                        String::from_utf8_lossy(&resp[..resp.len().min(200)])
                    ));
                }
                Ok(Err(e)) => {
                    if measured {
                        k.transport_errors += 1;
                    }
                    st.note_error(e);
                    sender = None;
                }
                Err(_) => {
                    if measured {
                        k.transport_errors += 1;
                    }
                    st.note_error(format!(
                        "request timed out after {:?}",
                        self.cfg.load.request_timeout
                    ));
                    sender = None;
                }
            }
        }
        (st, self.book)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(kind: Kind) -> Pick {
        Pick {
            kind,
            order: Some(Uuid::from_u128(1)),
        }
    }

    #[test]
    fn each_kind_goes_to_its_endpoint() {
        let bodies = vec![Bytes::from("a"), Bytes::from("b")];
        let id = "00000000-0000-0000-0000-000000000001";
        let (m, p, b) = request_for(
            &Pick {
                kind: Kind::Create,
                order: None,
            },
            3,
            &bodies,
        );
        assert_eq!(
            (m, p.as_str(), b),
            (Method::POST, "/api/orders", Some(Bytes::from("b")))
        );
        let (m, p, b) = request_for(&pick(Kind::Confirm), 7, &bodies);
        assert_eq!(m, Method::PUT);
        assert_eq!(p, format!("/api/orders/{id}/confirm"));
        assert_eq!(b, Some(Bytes::from(r#"{"paymentId":"pay-7"}"#)));
        let (_, p, b) = request_for(&pick(Kind::Deliver), 7, &bodies);
        assert_eq!((p, b), (format!("/api/orders/{id}/deliver"), None));
        let (_, p, b) = request_for(&pick(Kind::Cancel), 7, &bodies);
        assert_eq!(p, format!("/api/orders/{id}/cancel"));
        assert!(b.is_some());
        let (m, p, _) = request_for(&pick(Kind::Get), 7, &bodies);
        assert_eq!((m, p), (Method::GET, format!("/api/orders/{id}")));
        let list = |n| {
            request_for(
                &Pick {
                    kind: Kind::List,
                    order: None,
                },
                n,
                &bodies,
            )
            .1
        };
        assert_eq!(list(2042), "/api/orders/customer/cust-21");
        assert_eq!(list(2043), "/api/orders?customerId=cust-21");
    }

    #[test]
    fn the_order_id_is_read_from_the_created_order() {
        let body =
            br#"{"id":"0190f3a4-7b1c-7d2e-8f00-0123456789ab","status":"PENDING","version":1}"#;
        assert_eq!(
            created_id(body).map(|u| u.to_string()),
            Some("0190f3a4-7b1c-7d2e-8f00-0123456789ab".to_owned())
        );
        assert_eq!(created_id(br#"{"id":"nope"}"#), None);
        assert_eq!(created_id(br#"{"status":"PENDING"}"#), None);
        assert_eq!(created_id(b"not json"), None);
    }
}
