//! A small HTTP/1.1 client for the service's own API, used by the operator
//! commands (`order-service dlq …`). It goes through the running service, so
//! authentication, authorisation and the audit log apply to the CLI exactly
//! as to any other caller. Plain `http://` only: put a TLS-terminating proxy
//! or an SSH tunnel in front of a remote service.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How long to wait for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request got no answer from the service.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid service URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    #[error("cannot reach the service at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// The service's answer: its status and body, whatever they are.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// Where the service is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    /// `host:port`, for the TCP connection.
    authority: String,
    /// The `Host` header: the authority as the user wrote it.
    host: String,
    /// A path prefix (a service behind a reverse proxy), without trailing `/`.
    prefix: String,
    /// For messages.
    url: String,
    api_key: Option<String>,
    timeout: Duration,
}

impl ServiceClient {
    /// Parses `http://host[:port][/prefix]`.
    pub fn new(
        url: &str,
        api_key: Option<String>,
        timeout: Duration,
    ) -> Result<ServiceClient, ClientError> {
        let invalid = |reason| ClientError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let trimmed = url.trim();
        let rest = match trimmed.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => return Err(invalid(
                "https is not supported; use http:// (through a TLS-terminating proxy or a tunnel)",
            )),
            Some(_) => return Err(invalid("the scheme must be http://")),
            None => return Err(invalid("expected http://host[:port]")),
        };
        let (host, prefix) = match rest.find(['/', '?', '#']) {
            Some(i) if rest[i..].starts_with('/') && !rest[i..].contains(['?', '#']) => {
                (&rest[..i], rest[i..].trim_end_matches('/'))
            }
            Some(_) => return Err(invalid("a query or fragment is not allowed")),
            None => (rest, ""),
        };
        if host.is_empty() || host.contains(['@', ' ']) {
            return Err(invalid("expected http://host[:port]"));
        }
        // `[::1]` or `host` without a port: the HTTP default.
        let has_port = match host.rfind(']') {
            Some(i) => host[i..].contains(':'),
            None => host.contains(':'),
        };
        let authority = if has_port {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        Ok(ServiceClient {
            authority,
            host: host.to_owned(),
            prefix: prefix.to_owned(),
            url: trimmed.trim_end_matches('/').to_owned(),
            api_key: api_key.filter(|k| !k.trim().is_empty()),
            timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One request on a fresh connection. `path` starts with `/` and is
    /// already percent-encoded.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ClientError> {
        let body = body.map(|b| ("application/json", Bytes::from(b.to_string())));
        self.send(method, path, body).await
    }

    /// [`request`](Self::request) with a body of any media type:
    /// `(content type, bytes)`.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<Answer, ClientError> {
        let unreachable = |reason: String| ClientError::Unreachable {
            url: self.url.clone(),
            reason,
        };
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(&self.authority),
        )
        .await
        .map_err(|_| unreachable(format!("no connection within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
        let exchange = async {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let connection = tokio::spawn(conn);
            let mut req = Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.prefix))
                .header("host", &self.host)
                .header("accept", "application/json, application/problem+json")
                .header(
                    "user-agent",
                    concat!("order-service-cli/", env!("CARGO_PKG_VERSION")),
                );
            if let Some(key) = &self.api_key {
                req = req.header("authorization", format!("Bearer {}", key.trim()));
            }
            let payload = match body {
                Some((content_type, bytes)) => {
                    req = req.header("content-type", content_type);
                    bytes
                }
                None => Bytes::new(),
            };
            let req = req
                .body(Full::new(payload))
                .map_err(|e| unreachable(format!("invalid request: {e}")))?;
            let res = sender
                .send_request(req)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = res.status().as_u16();
            let bytes = res
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(format!("the answer broke off: {e}")))?
                .to_bytes();
            connection.abort();
            Ok(Answer {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?
    }
}

/// Percent-encodes one path segment or query value (RFC 3986 unreserved
/// characters stay as they are).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> Result<ServiceClient, ClientError> {
        ServiceClient::new(url, None, Duration::from_secs(1))
    }

    #[test]
    fn a_url_without_a_port_uses_80_and_keeps_its_path_prefix() {
        let c = client("http://orders.internal/ops/").unwrap();
        assert_eq!(c.authority, "orders.internal:80");
        assert_eq!(c.host, "orders.internal");
        assert_eq!(c.prefix, "/ops");
        let c = client("http://[::1]:8084").unwrap();
        assert_eq!(c.authority, "[::1]:8084");
        assert_eq!(c.prefix, "");
        assert_eq!(client("http://[::1]").unwrap().authority, "[::1]:80");
    }

    #[test]
    fn https_and_other_schemes_are_refused_with_a_reason() {
        let e = client("https://orders").unwrap_err().to_string();
        assert!(e.contains("https is not supported"), "{e}");
        assert!(client("ftp://orders").is_err());
        assert!(client("orders:8084").is_err());
        assert!(client("http://").is_err());
        assert!(client("http://user@orders").is_err());
        assert!(client("http://orders/?x=1").is_err());
    }

    #[test]
    fn an_empty_api_key_counts_as_none() {
        let c = ServiceClient::new("http://h", Some("  ".into()), Duration::from_secs(1)).unwrap();
        assert!(c.api_key.is_none());
    }

    #[test]
    fn encoding_keeps_unreserved_characters_only() {
        assert_eq!(encode("a-b_c.d~9"), "a-b_c.d~9");
        assert_eq!(encode("a b/c?d%"), "a%20b%2Fc%3Fd%25");
        assert_eq!(encode("é"), "%C3%A9");
    }
}
