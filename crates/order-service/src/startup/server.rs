//! Serving HTTP: binding the listener, running axum with graceful shutdown,
//! and stopping in order (stop accepting, let requests finish, then stop
//! the workers) on SIGTERM or Ctrl-C. Apart from [`super::build`] so tests
//! can drive the app without a socket.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::workers::{Workers, SHUTDOWN_GRACE};
use super::{build, AppState, StartupError};
use crate::config::Config;

/// A running service: HTTP server plus workers.
pub struct RunningApp {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    pub state: AppState,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    workers: Workers,
}

impl RunningApp {
    /// Stops accepting connections, lets in-flight requests finish, then
    /// stops the workers.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        match tokio::time::timeout(SHUTDOWN_GRACE, self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "HTTP server failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server task failed"),
            Err(_) => tracing::warn!("in-flight requests did not finish in time"),
        }
        self.workers.stop().await;
        tracing::info!("order-service stopped");
    }

    /// Serves until SIGTERM or Ctrl-C (or the server fails), then shuts down.
    pub async fn run_until_signal(mut self) {
        tokio::select! {
            _ = shutdown_signal() => tracing::info!("shutdown signal received"),
            r = &mut self.server => {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
                    Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
                }
                self.workers.stop().await;
                return;
            }
        }
        self.shutdown().await;
    }
}

/// Builds the app, binds `bind:port` (port 0 = any free port) and serves.
pub async fn spawn_app(config: Config) -> Result<RunningApp, StartupError> {
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|cause| StartupError::Bind {
            addr: addr.to_string(),
            cause,
        })?;
    let addr = listener.local_addr().map_err(|cause| StartupError::Bind {
        addr: addr.to_string(),
        cause,
    })?;
    let app = build(config).await?;
    let router = crate::http::router(app.state.clone());
    let (stop, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    tracing::info!(
        %addr,
        database = ?app.state.config.database,
        read_model = %read_model_label(&app.state.config),
        bus = %bus_label(&app.state.config),
        test_endpoints = app.state.config.test_endpoints,
        "order-service listening"
    );
    Ok(RunningApp {
        addr,
        state: app.state,
        stop,
        server,
        workers: app.workers,
    })
}

fn read_model_label(config: &Config) -> String {
    match &config.mongo {
        Some(m) => format!("{} ({}.{})", m.uri, m.database, m.collection),
        None => config.read_model_path.display().to_string(),
    }
}

fn bus_label(config: &Config) -> String {
    match &config.kafka {
        Some(k) => format!("kafka {}", k.brokers),
        None => config.bus_path.display().to_string(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
