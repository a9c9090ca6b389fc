//! The HTTP echo ceiling: a minimal hyper HTTP/1.1 server in this process
//! that parses the create-order JSON and sends it back with 201, driven by
//! the same load code as the service. What the service reaches beside it is
//! the share of the machine's HTTP + JSON ceiling that the order pipeline
//! leaves standing.
//!
//! The server runs on an OS thread of its own with its own two-worker tokio
//! runtime, so it does not share the load generator's workers; it does
//! share the machine's cores with the load generator, as the service does.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::load::{LoadConfig, LoadStats};
use crate::{Context, Error, Result};

/// Worker threads of the echo server's runtime.
pub const ECHO_WORKERS: usize = 2;

/// A running echo server; dropping it stops the server and joins its thread.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Binds 127.0.0.1:0 and starts serving on a thread of its own.
    pub fn start() -> Result<EchoServer> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding the echo server")?;
        let addr = listener
            .local_addr()
            .context("reading the echo server's port")?;
        listener
            .set_nonblocking(true)
            .context("making the echo listener non-blocking")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(ECHO_WORKERS)
            .thread_name("echo-worker")
            .enable_all()
            .build()
            .context("building the echo server's runtime")?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("echo-server".to_owned())
            .spawn(move || {
                runtime.block_on(serve(listener, stopped));
                // Open connections are tasks of this runtime: gone with it.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .context("starting the echo server thread")?;
        Ok(EchoServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, drops the open connections and joins the thread.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| Error::msg("the echo server thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

async fn serve(listener: std::net::TcpListener, mut stopped: oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            crate::progress(format!("echo server: {e}"));
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors and the like: let the moment pass.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(echo))
                .await;
        });
    }
}

/// What the echo server sustained under the load code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EchoRun {
    /// 201 responses are the echoes (same shape as the service's run).
    pub stats: LoadStats,
    /// CPU seconds of this process (load generator and echo server
    /// together) over the measured window.
    pub process_cpu_secs: Option<f64>,
}

impl EchoRun {
    /// CPU µs of this process (client and server) per echoed request.
    pub fn process_us_per_request(&self) -> Option<f64> {
        crate::cpu::us_per(self.process_cpu_secs, self.stats.created)
    }
}

/// Unmeasured start of the echo run: connections opened, caches warm.
const ECHO_WARMUP: Duration = Duration::from_millis(500);

/// Starts the echo server, drives it with `connections` keep-alive
/// connections of the create-order load for `duration`, and stops it.
pub async fn measure(
    connections: usize,
    duration: Duration,
    request_timeout: Duration,
) -> Result<EchoRun> {
    let server = EchoServer::start()?;
    let ticks = crate::cpu::ticks_per_sec();
    let cfg = LoadConfig {
        addr: server.addr(),
        host: server.addr().to_string(),
        connections,
        warmup: ECHO_WARMUP,
        duration,
        request_timeout,
    };
    let (stats, start) = tokio::join!(crate::load::run(&cfg), async {
        tokio::time::sleep(ECHO_WARMUP).await;
        crate::cpu::self_cpu_secs(ticks)
    });
    let end = crate::cpu::self_cpu_secs(ticks);
    server.stop()?;
    Ok(EchoRun {
        stats: stats?,
        process_cpu_secs: match (start, end) {
            (Some(a), Some(b)) => Some((b - a).max(0.0)),
            _ => None,
        },
    })
}

/// 201 with the parsed body re-serialised; 400 when it is not JSON.
async fn echo(req: Request<Incoming>) -> std::result::Result<Response<Full<Bytes>>, Infallible> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, Bytes::new())),
    };
    Ok(match echo_body(&body) {
        Some(out) => reply(StatusCode::CREATED, out),
        None => reply(StatusCode::BAD_REQUEST, Bytes::new()),
    })
}

/// The JSON document of `body`, parsed and written back (None: not JSON).
pub fn echo_body(body: &[u8]) -> Option<Bytes> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_order_body_comes_back_as_the_same_json() {
        let body = crate::load::order_body(7);
        let out = echo_body(body.as_bytes()).unwrap_or_default();
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        let sent: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(back, sent);
        assert_eq!(echo_body(b"{not json"), None);
    }

    #[tokio::test]
    async fn the_echo_server_answers_201_and_stops() {
        let server = EchoServer::start();
        let Ok(server) = server else {
            panic!("echo server did not start: {server:?}");
        };
        let target = crate::service::Target {
            addr: server.addr(),
        };
        let got = crate::service::request(
            &target,
            "POST",
            "/api/orders",
            Some(r#"{"a":[1,2]}"#),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(got, Ok((201, r#"{"a":[1,2]}"#.to_owned())));
        let bad =
            crate::service::request(&target, "POST", "/", Some("x"), Duration::from_secs(5)).await;
        assert_eq!(bad.map(|(s, _)| s), Ok(400));
        assert_eq!(server.stop(), Ok(()));
    }
}
