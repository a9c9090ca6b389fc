//! Who may call the service: API keys (held as SHA-256 digests only), JWT
//! verification settings, the replay rate limit, and the start-up posture
//! that keeps a shared deployment from running open by accident. The
//! checking of requests is `http::auth`; this is only what is configured.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use order_core::app::Role;

use super::keys::{decode_hex, parse_rsa_public_key};
use super::layers::{Parser, Raw};
use super::{Config, ConfigError, DatabaseTarget};

impl Config {
    /// Whether this configuration may serve requests, and how: a profile
    /// with MySQL or Kafka (a shared deployment) never runs open by
    /// accident; the embedded profile (a laptop) does, loudly.
    pub fn auth_posture(&self) -> Result<AuthPosture, ConfigError> {
        let a = &self.auth;
        if a.disabled {
            return Ok(AuthPosture::Disabled);
        }
        if a.has_credentials() {
            return Ok(AuthPosture::Enforced);
        }
        if matches!(self.database, DatabaseTarget::MySql(_)) || self.kafka.is_some() {
            return Err(ConfigError::new(
                "no credentials configured: with MySQL or Kafka the service refuses to start \
                 without authentication; set ORDER_API_KEYS, ORDER_API_KEYS_FILE, \
                 ORDER_ADMIN_API_KEY, ORDER_JWT_HS256_SECRET, ORDER_JWT_RS256_PUBLIC_KEY or \
                 ORDER_JWT_JWKS_URL (or ORDER_AUTH_DISABLED=true to run it open on purpose)",
            ));
        }
        Ok(AuthPosture::OpenEmbedded)
    }
}

/// How requests are authenticated, decided at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthPosture {
    /// Credentials are configured: every protected route needs them.
    Enforced,
    /// `ORDER_AUTH_DISABLED=true`: everyone is `anonymous` (admin).
    Disabled,
    /// Embedded profile without credentials: open, with a warning.
    OpenEmbedded,
}

/// Shortest plain API key accepted (a guessable key is no key).
pub const MIN_API_KEY_LEN: usize = 16;

/// An API key as held in memory: its name, role and SHA-256 digest only.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub name: String,
    pub role: Role,
    pub sha256: [u8; 32],
}

impl ApiKey {
    /// A key from its plain text (hashed at once).
    pub fn new(name: impl Into<String>, role: Role, plain: &str) -> Self {
        Self {
            name: name.into(),
            role,
            sha256: sha256(plain.as_bytes()),
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({} {}, ***)", self.name, self.role.as_str())
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The key JWT signatures are checked with.
#[derive(Clone, PartialEq, Eq)]
pub enum JwtKey {
    /// HS256 shared secret.
    Hs256(Vec<u8>),
    /// RS256 public key, PKCS#1 `RSAPublicKey` DER.
    Rs256(Vec<u8>),
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtKey::Hs256(_) => f.write_str("Hs256(***)"),
            JwtKey::Rs256(der) => write!(f, "Rs256({} bytes)", der.len()),
        }
    }
}

/// Where signing keys are fetched from: a JSON Web Key Set (RFC 7517), as
/// identity providers (Keycloak, Auth0, …) publish them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksSettings {
    /// An `http://` or `https://` URL (validated at start-up).
    pub url: String,
    /// Fetched again this often, whatever happens.
    pub refresh: Duration,
    /// A token with a key id the set lacks fetches the set again, at most
    /// once per this interval (a storm of made-up ids costs one fetch).
    pub min_refresh: Duration,
    /// PEM file of the CA certificates an `https://` URL is checked
    /// against instead of the Mozilla roots (a provider with a private CA).
    pub ca_file: Option<PathBuf>,
}

impl JwksSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            refresh: Duration::from_secs(300),
            min_refresh: Duration::from_secs(10),
            ca_file: None,
        }
    }
}

/// JWT verification: a static key, a key set fetched from a URL, or both;
/// the claims checks are the same for either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtSettings {
    /// `ORDER_JWT_HS256_SECRET` or `ORDER_JWT_RS256_PUBLIC_KEY`.
    pub key: Option<JwtKey>,
    /// `ORDER_JWT_JWKS_URL`.
    pub jwks: Option<JwksSettings>,
    /// Claim holding the role (a name or an array of names); a dotted path
    /// walks nested objects (`realm_access.roles`).
    pub role_claim: String,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

impl JwtSettings {
    pub fn hs256(secret: &[u8]) -> Self {
        Self::with(Some(JwtKey::Hs256(secret.to_vec())), None)
    }

    /// Keys from a JWKS URL only (the refresh intervals at their defaults).
    pub fn jwks(url: impl Into<String>) -> Self {
        Self::with(None, Some(JwksSettings::new(url)))
    }

    fn with(key: Option<JwtKey>, jwks: Option<JwksSettings>) -> Self {
        Self {
            key,
            jwks,
            role_claim: "role".into(),
            issuer: None,
            audience: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    pub api_keys: Vec<ApiKey>,
    pub jwt: Option<JwtSettings>,
    /// `ORDER_AUTH_DISABLED`: run open even with MySQL/Kafka.
    pub disabled: bool,
    /// `/metrics` needs a viewer.
    pub metrics_auth: bool,
    /// Replay endpoints: tokens per second and bucket size, per principal.
    pub replay_rate_per_sec: u32,
    pub replay_burst: u32,
}

impl AuthSettings {
    pub fn has_credentials(&self) -> bool {
        !self.api_keys.is_empty() || self.jwt.is_some()
    }
}

fn parse_key_line(name: &str, role: &str, key: &str, source: &str) -> Result<ApiKey, ConfigError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(|c| c.is_control()) {
        return Err(ConfigError::new(format!(
            "{source}: an API key needs a name (1 to 100 printable characters)"
        )));
    }
    let role = Role::parse(role).ok_or_else(|| {
        ConfigError::new(format!(
            "{source}: key {name:?} has an unknown role {:?}: expected viewer, operator or admin",
            role.trim()
        ))
    })?;
    let key = key.trim();
    if let Some(hex) = key.strip_prefix("sha256:") {
        let bytes = decode_hex(hex).filter(|b| b.len() == 32).ok_or_else(|| {
            ConfigError::new(format!(
                "{source}: key {name:?}: sha256: must be followed by 64 hex digits"
            ))
        })?;
        let mut sha = [0u8; 32];
        sha.copy_from_slice(&bytes);
        return Ok(ApiKey {
            name: name.to_owned(),
            role,
            sha256: sha,
        });
    }
    if key.len() < MIN_API_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(format!(
            "{source}: key {name:?} must be at least {MIN_API_KEY_LEN} visible ASCII characters"
        )));
    }
    Ok(ApiKey::new(name, role, key))
}

pub(super) fn parse_auth(p: &Parser<'_>) -> Result<AuthSettings, ConfigError> {
    let mut keys = Vec::new();
    if let Some(raw) = p.get("api_keys") {
        // name:role:key[,name:role:key…]; the key itself may contain ':'.
        for entry in raw.value.split(',').filter(|e| !e.trim().is_empty()) {
            let mut parts = entry.trim().splitn(3, ':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(n), Some(r), Some(k)) => keys.push(parse_key_line(n, r, k, &raw.source)?),
                _ => {
                    return Err(ConfigError::new(format!(
                        "{}: expected name:role:key[,name:role:key…]",
                        raw.source
                    )))
                }
            }
        }
    }
    if let Some(raw) = p.get("api_keys_file") {
        let path = raw.value.trim();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(format!("{}: cannot read {path:?}: {e}", raw.source)))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let source = format!("{} ({path}, line {})", raw.source, i + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [n, r, k] = fields[..] else {
                return Err(ConfigError::new(format!(
                    "{source}: expected `name role key` (key plain or sha256:HEX)"
                )));
            };
            keys.push(parse_key_line(n, r, k, &source)?);
        }
    }
    if let Some(raw) = p.get("admin_api_key") {
        keys.push(parse_key_line("admin", "admin", &raw.value, &raw.source)?);
    }
    for (i, a) in keys.iter().enumerate() {
        if keys[i + 1..].iter().any(|b| b.sha256 == a.sha256) {
            return Err(ConfigError::new(format!(
                "API key {:?} is configured twice (the same key under two entries)",
                a.name
            )));
        }
    }

    let hs = p.get("jwt_hs256_secret");
    let rs = p.get("jwt_rs256_public_key");
    let key = match (hs, rs) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "ORDER_JWT_HS256_SECRET and ORDER_JWT_RS256_PUBLIC_KEY: set one, not both",
            ))
        }
        (Some(raw), None) => {
            if raw.value.len() < 32 {
                return Err(ConfigError::new(format!(
                    "{}: an HS256 secret needs at least 32 bytes",
                    raw.source
                )));
            }
            Some(JwtKey::Hs256(raw.value.as_bytes().to_vec()))
        }
        (None, Some(raw)) => Some(JwtKey::Rs256(parse_rsa_public_key(raw)?)),
        (None, None) => None,
    };
    let jwks = match p.get("jwt_jwks_url") {
        None => None,
        Some(raw) => Some(JwksSettings {
            url: parse_jwks_url(raw)?,
            refresh: Duration::from_secs(p.int("jwt_jwks_refresh_secs", 1, 86_400)?),
            min_refresh: Duration::from_secs(p.int("jwt_jwks_min_refresh_secs", 1, 3_600)?),
            ca_file: p.get("jwt_jwks_ca_file").map(parse_ca_file).transpose()?,
        }),
    };
    let jwt = match (key, jwks) {
        (None, None) => None,
        (key, jwks) => Some(JwtSettings {
            key,
            jwks,
            role_claim: p.required("jwt_role_claim")?.value.trim().to_owned(),
            issuer: p.get("jwt_issuer").map(|r| r.value.trim().to_owned()),
            audience: p.get("jwt_audience").map(|r| r.value.trim().to_owned()),
        }),
    };
    Ok(AuthSettings {
        api_keys: keys,
        jwt,
        disabled: p.bool("auth_disabled")?.unwrap_or(false),
        metrics_auth: p.bool("metrics_auth")?.unwrap_or(false),
        replay_rate_per_sec: p.int("replay_rate_per_sec", 1, 100_000)? as u32,
        replay_burst: p.int("replay_burst", 1, 100_000)? as u32,
    })
}

/// An absolute `http://` or `https://` URL with a host and no user info
/// (the URL is logged; credentials do not belong in it).
fn parse_jwks_url(raw: &Raw) -> Result<String, ConfigError> {
    let value = raw.value.trim();
    let bad = |why: &str| ConfigError::new(format!("{}: {why}: {value:?}", raw.source));
    let uri: hyper::Uri = value.parse().map_err(|_| bad("not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("expected an https:// (or http://) URL"));
    }
    let authority = uri.authority().ok_or_else(|| bad("the URL has no host"))?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return Err(bad("expected a host without user info"));
    }
    Ok(value.to_owned())
}

/// A readable PEM file of certificates, at least one.
fn parse_ca_file(raw: &Raw) -> Result<PathBuf, ConfigError> {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    let path = raw.value.trim();
    let bad = |why: String| ConfigError::new(format!("{}: {path:?} {why}", raw.source));
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => Ok(PathBuf::from(path)),
        Ok(_) => Err(bad("holds no PEM certificate".into())),
        Err(e) => Err(bad(format!("is not a PEM file: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::env;
    use super::super::Config;
    use super::*;

    #[test]
    fn mysql_or_kafka_without_credentials_is_refused_unless_auth_is_disabled() {
        let open = Config::defaults().unwrap();
        assert_eq!(open.auth_posture(), Ok(AuthPosture::OpenEmbedded));
        for prod in [
            ("ORDER_DATABASE_URL", "mysql://root@db/orders"),
            ("ORDER_KAFKA_BROKERS", "k:9092"),
        ] {
            let c = Config::from_env(&env(&[prod])).unwrap();
            let e = c.auth_posture().unwrap_err().to_string();
            assert!(e.contains("no credentials configured"), "{e}");
            let c = Config::from_env(&env(&[prod, ("ORDER_AUTH_DISABLED", "true")])).unwrap();
            assert_eq!(c.auth_posture(), Ok(AuthPosture::Disabled));
            let secret = "an-hs256-secret-of-at-least-32-bytes";
            let c = Config::from_env(&env(&[prod, ("ORDER_JWT_HS256_SECRET", secret)])).unwrap();
            assert_eq!(c.auth_posture(), Ok(AuthPosture::Enforced));
            assert!(!format!("{c:?}").contains(secret));
        }
        let c = Config::defaults().unwrap();
        assert_eq!(c.auth.jwt, None);
        assert_eq!((c.auth.replay_rate_per_sec, c.auth.replay_burst), (10, 20));
        assert!(!c.auth.metrics_auth && !c.auth.disabled);
    }

    #[test]
    fn a_jwks_url_counts_as_credentials_alone_or_beside_a_static_key() {
        let url = ("ORDER_JWT_JWKS_URL", "https://idp.example/realms/r/certs");
        let c = Config::from_env(&env(&[("ORDER_KAFKA_BROKERS", "k:9092"), url])).unwrap();
        assert_eq!(c.auth_posture(), Ok(AuthPosture::Enforced));
        let jwt = c.auth.jwt.unwrap();
        assert_eq!(jwt.key, None);
        assert_eq!(
            jwt.jwks,
            Some(JwksSettings {
                url: url.1.into(),
                refresh: Duration::from_secs(300),
                min_refresh: Duration::from_secs(10),
                ca_file: None,
            })
        );
        let secret = (
            "ORDER_JWT_HS256_SECRET",
            "an-hs256-secret-of-at-least-32-bytes",
        );
        let c = Config::from_env(&env(&[
            url,
            secret,
            ("ORDER_JWT_JWKS_REFRESH_SECS", "60"),
            ("ORDER_JWT_JWKS_MIN_REFRESH_SECS", "2"),
        ]))
        .unwrap();
        let jwt = c.auth.jwt.unwrap();
        assert!(matches!(jwt.key, Some(JwtKey::Hs256(_))));
        let jwks = jwt.jwks.unwrap();
        assert_eq!(
            (jwks.refresh, jwks.min_refresh),
            (Duration::from_secs(60), Duration::from_secs(2))
        );
        for bad in [
            "idp.example/certs",
            "ftp://idp.example/certs",
            "https://user:pw@idp.example/certs",
            "/certs",
        ] {
            let e = Config::from_env(&env(&[("ORDER_JWT_JWKS_URL", bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("ORDER_JWT_JWKS_URL"), "{bad}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "no certificate here").unwrap();
        for (file, expect) in [
            (not_pem.to_str().unwrap(), "holds no PEM certificate"),
            ("/nonexistent/ca.pem", "cannot be read"),
        ] {
            let e = Config::from_env(&env(&[url, ("ORDER_JWT_JWKS_CA_FILE", file)]))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("ORDER_JWT_JWKS_CA_FILE") && e.contains(expect),
                "{e}"
            );
        }
    }
}
