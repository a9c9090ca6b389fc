//! One GET of the key set over HTTP/1.1, with TLS for `https://` URLs.
//!
//! A connection per fetch (a fetch every few minutes needs no pool), built
//! from what the service already compiles: hyper's client connection and
//! rustls (ring, the Mozilla roots of `webpki-roots` or the CAs of
//! `ORDER_JWT_JWKS_CA_FILE`) through tokio-rustls,
//! rather than a client crate with its own dependency tree. Redirects are
//! not followed: an identity provider publishes its JWKS at a fixed URL.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, HOST, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Longest a whole fetch (connect, TLS, request, body) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest key set read (real ones are a few KiB).
const MAX_BODY: usize = 1024 * 1024;

/// Fetches one URL's body.
pub(super) struct Fetcher {
    uri: Uri,
    /// Host and port to connect to (IPv6 without brackets).
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Fetcher {
    /// A fetcher of `url`; an `https://` one trusts the certificates of
    /// `ca_file` if given, else the Mozilla roots.
    pub(super) fn new(url: &str, ca_file: Option<&Path>) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|_| format!("not a URL: {url:?}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("not an http(s) URL: {url:?}")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("no host in {url:?}"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let name = ServerName::try_from(host.clone())
                .map_err(|_| format!("not a valid TLS server name: {host:?}"))?;
            Some((TlsConnector::from(Arc::new(tls_config(ca_file)?)), name))
        } else {
            None
        };
        Ok(Self {
            uri,
            host,
            port,
            tls,
        })
    }

    /// The body of a `200 OK` answer, or what went wrong.
    pub(super) async fn get(&self) -> Result<Bytes, String> {
        tokio::time::timeout(FETCH_TIMEOUT, self.exchange())
            .await
            .map_err(|_| format!("no answer within {} s", FETCH_TIMEOUT.as_secs()))?
    }

    async fn exchange(&self) -> Result<Bytes, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match &self.tls {
            None => self.request(tcp).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                self.request(tls).await
            }
        }
    }

    async fn request<S>(&self, io: S) -> Result<Bytes, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        // Aborted when this fetch ends or times out, so no connection
        // outlives it.
        let _conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let host = self.uri.authority().map_or("", |a| a.as_str());
        let req = Request::get(path)
            .header(HOST, host)
            .header(ACCEPT, "application/json, application/jwk-set+json")
            .header(
                USER_AGENT,
                concat!("order-service/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        if resp.status() != StatusCode::OK {
            return Err(format!("HTTP status {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("body (at most {MAX_BODY} bytes): {e}"))?;
        Ok(body.to_bytes())
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// TLS 1.2/1.3 with ring, trusting the certificates of `ca_file`, else
/// the Mozilla root certificates.
fn tls_config(ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let roots = match ca_file {
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| format!("CA file {}: {e}", path.display());
            let pem = std::fs::read(path).map_err(|e| bad(&e))?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            roots
        }
    };
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
