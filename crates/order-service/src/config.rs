//! Layered configuration: the compiled-in `config/default.toml` → the file
//! named by `ORDER_CONFIG_FILE` → `ORDER_*` environment variables. Every
//! value is validated here, at start-up; an error names the variable (or the
//! file key) so `main` can print one line and exit with code 2.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use order_core::app::Role;

/// The defaults, documented key by key.
pub const DEFAULTS_TOML: &str = include_str!("../../../config/default.toml");

/// Environment variable naming an optional TOML file with overrides.
pub const CONFIG_FILE_VAR: &str = "ORDER_CONFIG_FILE";

/// Every key a file may set; the environment variable is `ORDER_` + upper case.
const KEYS: &[&str] = &[
    "port",
    "bind",
    "database_url",
    "read_model_path",
    "bus_path",
    "kafka_brokers",
    "kafka_partitions",
    "kafka_max_poll_interval_ms",
    "publish_timeout_ms",
    "mongodb_uri",
    "mongodb_database",
    "mongodb_collection",
    "mysql_pool_size",
    "publish_max_attempts",
    "publish_backoff_ms",
    "test_endpoints",
    "topic_events",
    "topic_dlq",
    "projector_group",
    "dlq_recorder_group",
    "commit_batch_max",
    "commit_concurrency",
    "relay_batch_size",
    "relay_linger_ms",
    "projector_linger_ms",
    "command_timeout_ms",
    "max_body_bytes",
    "log",
    "log_format",
    "api_keys",
    "api_keys_file",
    "admin_api_key",
    "jwt_hs256_secret",
    "jwt_rs256_public_key",
    "jwt_role_claim",
    "jwt_issuer",
    "jwt_audience",
    "auth_disabled",
    "metrics_auth",
    "replay_rate_per_sec",
    "replay_burst",
    "dlq_auto_redrive",
    "dlq_auto_redrive_rate",
    "dlq_auto_redrive_interval_ms",
    "dlq_job_rate",
    "dlq_job_max_failure_ratio",
    "dlq_job_lease_ms",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// A connection URL that may carry a password: `Debug` and `Display` show
/// it with the password masked; [`SecretUrl::expose`] gives the real one.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// `scheme://user:***@host/…`, or the URL unchanged when it has no password.
    pub fn masked(&self) -> String {
        let url = &self.0;
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.clone();
        };
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
                None => url.clone(),
            },
            None => url.clone(),
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Where the event store, outbox and DLQ live.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    Sqlite(PathBuf),
    MySql(SecretUrl),
}

impl fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseTarget::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            DatabaseTarget::MySql(url) => write!(f, "{url}"),
        }
    }
}

/// Kafka settings; present when `ORDER_KAFKA_BROKERS` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSettings {
    pub brokers: String,
    /// Partitions of the events topic when the service creates it.
    pub partitions: i32,
    /// How long one publish attempt may take before it counts as failed.
    pub publish_timeout: Duration,
    /// librdkafka `max.poll.interval.ms` of the consumers.
    pub max_poll_interval: Duration,
}

/// MongoDB read model settings; present when `ORDER_MONGODB_URI` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MongoSettings {
    pub uri: SecretUrl,
    pub database: String,
    pub collection: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub bind: IpAddr,
    pub port: u16,
    pub database: DatabaseTarget,
    /// SQLite read model file (used when `mongo` is `None`).
    pub read_model_path: PathBuf,
    /// Embedded bus file (used when `kafka` is `None`).
    pub bus_path: PathBuf,
    pub kafka: Option<KafkaSettings>,
    pub mongo: Option<MongoSettings>,
    pub mysql_pool_size: u32,
    pub publish_max_attempts: u32,
    pub publish_backoff: Duration,
    pub test_endpoints: bool,
    pub topic_events: String,
    pub topic_dlq: String,
    pub projector_group: String,
    pub dlq_recorder_group: String,
    pub commit_batch_max: usize,
    /// Group-commit transactions in flight (SQLite: always 1).
    pub commit_concurrency: usize,
    pub relay_batch_size: usize,
    pub relay_linger: Duration,
    pub projector_linger: Duration,
    /// Replay parked retryable publish failures by itself once the bus is
    /// back (see `order_core::app::redrive`).
    pub dlq_auto_redrive: bool,
    /// Most sequence heads the automatic redrive replays per second.
    pub dlq_auto_redrive_rate: u32,
    /// Pause between the automatic redrive's scans.
    pub dlq_auto_redrive_interval: Duration,
    /// Sequence heads a bulk replay job replays per second.
    pub dlq_job_rate: f64,
    /// A job stops once more than this share of its replays failed.
    pub dlq_job_max_failure_ratio: f64,
    /// A running job's lease; a dead instance's jobs resume after it.
    pub dlq_job_lease: Duration,
    pub command_timeout: Duration,
    pub max_body_bytes: usize,
    pub log: String,
    pub log_format: LogFormat,
    /// Who may call what (see `http::auth`).
    pub auth: AuthSettings,
}

/// One raw value and where it came from (for error messages).
#[derive(Clone, Debug)]
struct Raw {
    value: String,
    source: String,
}

type Layer = BTreeMap<&'static str, Raw>;

fn env_name(key: &str) -> String {
    format!("ORDER_{}", key.to_ascii_uppercase())
}

/// Reads a TOML document into a layer of raw strings; unknown keys and
/// non-scalar values are errors.
fn toml_layer(text: &str, origin: &str) -> Result<Layer, ConfigError> {
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| ConfigError::new(format!("{origin}: not valid TOML: {}", e.message())))?;
    let mut layer = Layer::new();
    for (k, v) in table {
        let Some(key) = KEYS.iter().copied().find(|known| *known == k) else {
            return Err(ConfigError::new(format!(
                "{origin}: unknown key `{k}` (known keys: {})",
                KEYS.join(", ")
            )));
        };
        let value = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            _ => {
                return Err(ConfigError::new(format!(
                    "{origin}: key `{k}` must be a string, integer or boolean"
                )))
            }
        };
        layer.insert(
            key,
            Raw {
                value,
                source: format!("`{k}` in {origin}"),
            },
        );
    }
    Ok(layer)
}

fn env_layer(env: &HashMap<String, String>) -> Layer {
    let mut layer = Layer::new();
    for key in KEYS {
        let name = env_name(key);
        if let Some(v) = env.get(&name) {
            // An empty variable counts as unset (a common compose-file idiom).
            if !v.trim().is_empty() {
                layer.insert(
                    key,
                    Raw {
                        value: v.trim().to_owned(),
                        source: name,
                    },
                );
            }
        }
    }
    layer
}

impl Config {
    /// Loads from the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("ORDER_"))
            .collect();
        Self::from_env(&env)
    }

    /// Loads with `env` standing in for the environment (tests).
    pub fn from_env(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut merged = toml_layer(DEFAULTS_TOML, "the built-in defaults")?;
        if let Some(path) = env.get(CONFIG_FILE_VAR).filter(|p| !p.trim().is_empty()) {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(format!("{CONFIG_FILE_VAR}: cannot read {path:?}: {e}"))
            })?;
            merged.extend(toml_layer(&text, path)?);
        }
        merged.extend(env_layer(env));
        Self::from_layer(&merged)
    }

    /// The built-in defaults only.
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::from_env(&HashMap::new())
    }

    /// A configuration for tests: everything in `dir`, any free port on
    /// loopback, short publish backoff.
    pub fn for_tests(dir: &Path) -> Result<Self, ConfigError> {
        let mut c = Self::defaults()?;
        c.bind = IpAddr::from([127, 0, 0, 1]);
        c.port = 0;
        c.database = DatabaseTarget::Sqlite(dir.join("orders.db"));
        c.read_model_path = dir.join("read-model.db");
        c.bus_path = dir.join("bus.db");
        c.publish_max_attempts = 2;
        c.publish_backoff = Duration::from_millis(5);
        c.test_endpoints = true;
        Ok(c)
    }

    fn from_layer(l: &Layer) -> Result<Self, ConfigError> {
        let p = Parser(l);
        let db_raw = p.required("database_url")?;
        let database = parse_database_url(db_raw)?;
        // SQLite files of the embedded profile sit beside the database file
        // (or under ./data with a MySQL database).
        let data_dir = match &database {
            DatabaseTarget::Sqlite(db) => db
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map(Path::to_path_buf),
            DatabaseTarget::MySql(_) => Some(PathBuf::from("data")),
        };
        let beside = |name: &str| -> PathBuf {
            match &data_dir {
                Some(dir) => dir.join(name),
                None => PathBuf::from(name),
            }
        };
        let read_model_path = p
            .path("read_model_path")?
            .unwrap_or_else(|| beside("read-model.db"));
        let bus_path = p.path("bus_path")?.unwrap_or_else(|| beside("bus.db"));
        let mut files = vec![
            ("ORDER_READ_MODEL_PATH", read_model_path.as_path()),
            ("ORDER_BUS_PATH", bus_path.as_path()),
        ];
        if let DatabaseTarget::Sqlite(db) = &database {
            files.insert(0, ("ORDER_DATABASE_URL", db.as_path()));
        }
        for (i, (a, pa)) in files.iter().enumerate() {
            for (b, pb) in files.iter().skip(i + 1) {
                if pa == pb {
                    return Err(ConfigError::new(format!(
                        "{a} and {b} name the same file {}; each needs its own",
                        pa.display()
                    )));
                }
            }
        }

        let kafka = match p.get("kafka_brokers") {
            None => None,
            Some(raw) => {
                let brokers = raw.value.trim().to_owned();
                let valid = brokers.split(',').all(|b| {
                    b.trim()
                        .rsplit_once(':')
                        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                });
                if !valid {
                    return Err(ConfigError::new(format!(
                        "{}: invalid value {:?}: expected host:port[,host:port…]",
                        raw.source, raw.value
                    )));
                }
                Some(KafkaSettings {
                    brokers,
                    partitions: p.int("kafka_partitions", 1, 10_000)? as i32,
                    publish_timeout: Duration::from_millis(p.int(
                        "publish_timeout_ms",
                        100,
                        600_000,
                    )?),
                    max_poll_interval: Duration::from_millis(p.int(
                        "kafka_max_poll_interval_ms",
                        1_000,
                        86_400_000,
                    )?),
                })
            }
        };
        let mongo = match p.get("mongodb_uri") {
            None => None,
            Some(raw) => {
                let uri = raw.value.trim();
                if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
                    return Err(ConfigError::new(format!(
                        "{}: expected a mongodb:// or mongodb+srv:// URI",
                        raw.source
                    )));
                }
                Some(MongoSettings {
                    uri: SecretUrl::new(uri),
                    database: p.name("mongodb_database")?,
                    collection: p.name("mongodb_collection")?,
                })
            }
        };

        let topic_events = p.topic("topic_events")?;
        let topic_dlq = p.topic("topic_dlq")?;
        if topic_events == topic_dlq {
            return Err(ConfigError::new(format!(
                "ORDER_TOPIC_EVENTS and ORDER_TOPIC_DLQ must differ (both are {topic_events:?})"
            )));
        }
        let projector_group = p.name("projector_group")?;
        let dlq_recorder_group = p.name("dlq_recorder_group")?;
        if projector_group == dlq_recorder_group {
            return Err(ConfigError::new(format!(
                "ORDER_PROJECTOR_GROUP and ORDER_DLQ_RECORDER_GROUP must differ (both are {projector_group:?})"
            )));
        }

        let log = p.required("log")?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log.value) {
            return Err(ConfigError::new(format!(
                "{}: invalid log filter {:?}: {e}",
                log.source, log.value
            )));
        }
        let fmt_raw = p.required("log_format")?;
        let log_format = match fmt_raw.value.to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                return Err(ConfigError::new(format!(
                    "{}: invalid value {:?}: expected text or json",
                    fmt_raw.source, fmt_raw.value
                )))
            }
        };
        let bind_raw = p.required("bind")?;
        let bind = bind_raw.value.parse::<IpAddr>().map_err(|_| {
            ConfigError::new(format!(
                "{}: invalid value {:?}: expected an IP address such as 0.0.0.0 or 127.0.0.1",
                bind_raw.source, bind_raw.value
            ))
        })?;

        Ok(Config {
            bind,
            port: p.int("port", 0, u64::from(u16::MAX))? as u16,
            // Test endpoints are for demos and tests: on by default only with
            // the embedded bus.
            test_endpoints: p.bool("test_endpoints")?.unwrap_or(kafka.is_none()),
            database,
            read_model_path,
            bus_path,
            kafka,
            mongo,
            mysql_pool_size: p.int("mysql_pool_size", 1, 1_000)? as u32,
            publish_max_attempts: p.int("publish_max_attempts", 1, 100)? as u32,
            publish_backoff: Duration::from_millis(p.int("publish_backoff_ms", 0, 600_000)?),
            topic_events,
            topic_dlq,
            projector_group,
            dlq_recorder_group,
            commit_batch_max: p.int("commit_batch_max", 1, 100_000)? as usize,
            commit_concurrency: p.int("commit_concurrency", 1, 64)? as usize,
            relay_batch_size: p.int("relay_batch_size", 1, 100_000)? as usize,
            relay_linger: Duration::from_millis(p.int("relay_linger_ms", 0, 1_000)?),
            projector_linger: Duration::from_millis(p.int("projector_linger_ms", 0, 5_000)?),
            dlq_auto_redrive: p.bool("dlq_auto_redrive")?.unwrap_or(false),
            dlq_auto_redrive_rate: p.int("dlq_auto_redrive_rate", 1, 10_000)? as u32,
            dlq_auto_redrive_interval: Duration::from_millis(p.int(
                "dlq_auto_redrive_interval_ms",
                100,
                86_400_000,
            )?),
            dlq_job_rate: p.float("dlq_job_rate", 0.01, 10_000.0)?,
            dlq_job_max_failure_ratio: p.float("dlq_job_max_failure_ratio", 0.0, 1.0)?,
            dlq_job_lease: Duration::from_millis(p.int("dlq_job_lease_ms", 1_000, 3_600_000)?),
            command_timeout: Duration::from_millis(p.int("command_timeout_ms", 1, 600_000)?),
            max_body_bytes: p.int("max_body_bytes", 1024, 64 * 1024 * 1024)? as usize,
            log: log.value.clone(),
            log_format,
            auth: parse_auth(&p)?,
        })
    }

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
                 ORDER_ADMIN_API_KEY, ORDER_JWT_HS256_SECRET or ORDER_JWT_RS256_PUBLIC_KEY \
                 (or ORDER_AUTH_DISABLED=true to run it open on purpose)",
            ));
        }
        Ok(AuthPosture::OpenEmbedded)
    }

    /// The SQLite file of the event store, when the database is SQLite.
    pub fn sqlite_database_path(&self) -> Option<&Path> {
        match &self.database {
            DatabaseTarget::Sqlite(p) => Some(p),
            DatabaseTarget::MySql(_) => None,
        }
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtSettings {
    pub key: JwtKey,
    /// Claim holding the role (a name or an array of names); a dotted path
    /// walks nested objects (`realm_access.roles`).
    pub role_claim: String,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

impl JwtSettings {
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            key: JwtKey::Hs256(secret.to_vec()),
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

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn parse_auth(p: &Parser<'_>) -> Result<AuthSettings, ConfigError> {
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
    let jwt = match key {
        None => None,
        Some(key) => Some(JwtSettings {
            key,
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

/// A PEM public key (`PUBLIC KEY` or `RSA PUBLIC KEY`), inline or in the
/// file the value names, as PKCS#1 `RSAPublicKey` DER.
fn parse_rsa_public_key(raw: &Raw) -> Result<Vec<u8>, ConfigError> {
    use base64::Engine as _;
    let value = raw.value.trim();
    let pem = if value.starts_with("-----BEGIN") {
        value.to_owned()
    } else {
        std::fs::read_to_string(value)
            .map_err(|e| ConfigError::new(format!("{}: cannot read {value:?}: {e}", raw.source)))?
    };
    let bad = |why: &str| ConfigError::new(format!("{}: not an RSA public key: {why}", raw.source));
    let spki = pem.contains("-----BEGIN PUBLIC KEY-----");
    if !spki && !pem.contains("-----BEGIN RSA PUBLIC KEY-----") {
        return Err(bad("expected a PEM `PUBLIC KEY` or `RSA PUBLIC KEY` block"));
    }
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| bad("the PEM body is not base64"))?;
    if !spki {
        return Ok(der);
    }
    // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier,
    //   subjectPublicKey BIT STRING } — the BIT STRING holds RSAPublicKey.
    const RSA_OID: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    let (tag, outer, _) = der_tlv(&der).ok_or_else(|| bad("malformed DER"))?;
    let (alg_tag, alg, rest) = der_tlv(outer).ok_or_else(|| bad("malformed DER"))?;
    if tag != 0x30 || alg_tag != 0x30 || !alg.starts_with(RSA_OID) {
        return Err(bad("not an RSA key"));
    }
    match der_tlv(rest) {
        Some((0x03, [0, key @ ..], _)) if !key.is_empty() => Ok(key.to_vec()),
        _ => Err(bad("malformed DER")),
    }
}

/// One DER tag-length-value: (tag, value, the rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn parse_database_url(raw: &Raw) -> Result<DatabaseTarget, ConfigError> {
    let url = raw.value.as_str();
    let lower = url.to_ascii_lowercase();
    if let Some(rest) = strip_prefix_ci(url, "mariadb://") {
        // The driver speaks the same protocol; accept MariaDB's own scheme.
        return Ok(DatabaseTarget::MySql(SecretUrl::new(format!(
            "mysql://{rest}"
        ))));
    }
    if lower.starts_with("mysql://") {
        if url.len() <= "mysql://".len() {
            return Err(ConfigError::new(format!(
                "{}: expected mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
                raw.source
            )));
        }
        return Ok(DatabaseTarget::MySql(SecretUrl::new(url)));
    }
    let path = if let Some(rest) = strip_prefix_ci(url, "sqlite://") {
        rest
    } else if let Some(rest) = strip_prefix_ci(url, "sqlite:") {
        rest
    } else {
        // Secrets may sit in a URL: never echo it back.
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        return Err(ConfigError::new(format!(
            "{}: unsupported database URL scheme {scheme:?}: expected sqlite://PATH or mysql://…",
            raw.source
        )));
    };
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if path.is_empty() || path == ":memory:" {
        return Err(ConfigError::new(format!(
            "{}: {url:?} names no file: expected sqlite://PATH, e.g. sqlite://data/orders.db",
            raw.source
        )));
    }
    Ok(DatabaseTarget::Sqlite(PathBuf::from(path)))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len() && s.is_char_boundary(prefix.len()) {
        let (head, tail) = s.split_at(prefix.len());
        head.eq_ignore_ascii_case(prefix).then_some(tail)
    } else {
        None
    }
}

struct Parser<'a>(&'a Layer);

impl Parser<'_> {
    fn get(&self, key: &str) -> Option<&Raw> {
        self.0.get(key).filter(|r| !r.value.trim().is_empty())
    }

    fn required(&self, key: &str) -> Result<&Raw, ConfigError> {
        self.get(key)
            .ok_or_else(|| ConfigError::new(format!("{} must be set", env_name(key))))
    }

    fn int(&self, key: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
        let raw = self.required(key)?;
        match raw.value.trim().parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(ConfigError::new(format!(
                "{}: invalid value {:?}: expected an integer from {min} to {max}",
                raw.source, raw.value
            ))),
        }
    }

    fn float(&self, key: &str, min: f64, max: f64) -> Result<f64, ConfigError> {
        let raw = self.required(key)?;
        match raw.value.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && (min..=max).contains(&v) => Ok(v),
            _ => Err(ConfigError::new(format!(
                "{}: invalid value {:?}: expected a number from {min} to {max}",
                raw.source, raw.value
            ))),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        match raw.value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(ConfigError::new(format!(
                "{}: invalid value {:?}: expected true or false",
                raw.source, raw.value
            ))),
        }
    }

    fn path(&self, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self.get(key).map(|r| PathBuf::from(r.value.trim())))
    }

    /// A Kafka topic name: 1..=249 of `[A-Za-z0-9._-]`, not `.` or `..`.
    fn topic(&self, key: &str) -> Result<String, ConfigError> {
        let raw = self.required(key)?;
        let v = raw.value.trim();
        let ok = !v.is_empty()
            && v.len() <= 249
            && v != "."
            && v != ".."
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(v.to_owned())
        } else {
            Err(ConfigError::new(format!(
                "{}: invalid topic name {:?}: use 1 to 249 of A-Z a-z 0-9 . _ -",
                raw.source, raw.value
            )))
        }
    }

    /// A consumer group name: 1..=255 printable characters.
    fn name(&self, key: &str) -> Result<String, ConfigError> {
        let raw = self.required(key)?;
        let v = raw.value.trim();
        if v.len() <= 255 && !v.chars().any(char::is_control) {
            Ok(v.to_owned())
        } else {
            Err(ConfigError::new(format!(
                "{}: invalid value {:?}: expected 1 to 255 printable characters",
                raw.source, raw.value
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        match Config::from_env(&env(pairs)) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_built_in_defaults_are_the_documented_ones() {
        let c = Config::defaults().unwrap();
        assert_eq!(c.port, 8084);
        assert_eq!(c.bind, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(
            c.database,
            DatabaseTarget::Sqlite(PathBuf::from("data/orders.db"))
        );
        assert_eq!(c.read_model_path, PathBuf::from("data/read-model.db"));
        assert_eq!(c.bus_path, PathBuf::from("data/bus.db"));
        assert_eq!(c.publish_max_attempts, 3);
        assert_eq!(c.publish_backoff, Duration::from_millis(1000));
        assert!(c.test_endpoints);
        assert_eq!(c.topic_events, "order-events");
        assert_eq!(c.topic_dlq, "order-events-dlq");
        assert_eq!(c.projector_group, "order-projector");
        assert_eq!(c.dlq_recorder_group, "order-dlq-recorder");
        assert_eq!(c.commit_batch_max, 512);
        assert_eq!(c.relay_batch_size, 500);
        assert_eq!(c.command_timeout, Duration::from_millis(5000));
        assert_eq!(c.max_body_bytes, 262_144);
        assert_eq!(c.log, "info");
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn every_key_of_the_defaults_file_is_known_and_documented_with_its_variable() {
        for key in KEYS {
            assert!(
                DEFAULTS_TOML.contains(&env_name(key)),
                "{key} is not documented"
            );
        }
    }

    #[test]
    fn environment_variables_override_the_defaults() {
        let c = Config::from_env(&env(&[
            ("ORDER_PORT", "9000"),
            ("ORDER_BIND", "127.0.0.1"),
            ("ORDER_DATABASE_URL", "sqlite:///var/lib/orders/o.db"),
            ("ORDER_PUBLISH_MAX_ATTEMPTS", "5"),
            ("ORDER_PUBLISH_BACKOFF_MS", "10"),
            ("ORDER_TEST_ENDPOINTS", "false"),
            ("ORDER_LOG_FORMAT", "JSON"),
        ]))
        .unwrap();
        assert_eq!(c.port, 9000);
        assert_eq!(c.bind, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(
            c.sqlite_database_path(),
            Some(Path::new("/var/lib/orders/o.db"))
        );
        assert_eq!(
            c.read_model_path,
            PathBuf::from("/var/lib/orders/read-model.db")
        );
        assert_eq!(c.bus_path, PathBuf::from("/var/lib/orders/bus.db"));
        assert_eq!(c.publish_max_attempts, 5);
        assert_eq!(c.publish_backoff, Duration::from_millis(10));
        assert!(!c.test_endpoints);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn a_config_file_overrides_the_defaults_and_the_environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("order.toml");
        std::fs::write(
            &file,
            "port = 7000\nrelay_batch_size = 42\nread_model_path = \"/tmp/rm.db\"\n",
        )
        .unwrap();
        let path = file.to_string_lossy().into_owned();
        let c = Config::from_env(&env(&[
            (CONFIG_FILE_VAR, path.as_str()),
            ("ORDER_PORT", "7001"),
        ]))
        .unwrap();
        assert_eq!(c.port, 7001, "env wins over the file");
        assert_eq!(c.relay_batch_size, 42, "the file wins over the defaults");
        assert_eq!(c.read_model_path, PathBuf::from("/tmp/rm.db"));
        assert_eq!(c.commit_batch_max, 512, "untouched keys keep their default");
    }

    #[test]
    fn an_empty_environment_variable_counts_as_unset() {
        let c =
            Config::from_env(&env(&[("ORDER_KAFKA_BROKERS", ""), ("ORDER_PORT", " ")])).unwrap();
        assert_eq!(c.port, 8084);
    }

    #[test]
    fn an_unknown_key_in_a_config_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "prot = 1\n").unwrap();
        let path = file.to_string_lossy().into_owned();
        let e = err(&[(CONFIG_FILE_VAR, path.as_str())]);
        assert!(e.contains("unknown key `prot`"), "{e}");
    }

    #[test]
    fn a_missing_config_file_names_the_variable() {
        let e = err(&[(CONFIG_FILE_VAR, "/nonexistent/order.toml")]);
        assert!(e.starts_with("ORDER_CONFIG_FILE"), "{e}");
    }

    #[test]
    fn a_config_file_that_is_not_toml_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "port = = 1\n").unwrap();
        let path = file.to_string_lossy().into_owned();
        let e = err(&[(CONFIG_FILE_VAR, path.as_str())]);
        assert!(e.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn a_non_numeric_port_names_the_variable() {
        let e = err(&[("ORDER_PORT", "eighty")]);
        assert!(e.starts_with("ORDER_PORT: invalid value \"eighty\""), "{e}");
    }

    #[test]
    fn a_port_out_of_range_is_rejected() {
        let e = err(&[("ORDER_PORT", "70000")]);
        assert!(e.contains("ORDER_PORT") && e.contains("0 to 65535"), "{e}");
    }

    #[test]
    fn an_invalid_bind_address_is_rejected() {
        let e = err(&[("ORDER_BIND", "localhost:80")]);
        assert!(e.starts_with("ORDER_BIND"), "{e}");
    }

    #[test]
    fn a_mysql_url_selects_mysql_and_never_shows_its_password() {
        let c = Config::from_env(&env(&[(
            "ORDER_DATABASE_URL",
            "mysql://root:secret@localhost:3306/orders",
        )]))
        .unwrap();
        let DatabaseTarget::MySql(url) = &c.database else {
            panic!("expected MySQL, got {:?}", c.database);
        };
        assert_eq!(url.expose(), "mysql://root:secret@localhost:3306/orders");
        let shown = format!("{c:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(
            shown.contains("mysql://root:***@localhost:3306/orders"),
            "{shown}"
        );
        assert_eq!(c.sqlite_database_path(), None);
        assert_eq!(c.bus_path, PathBuf::from("data/bus.db"));
    }

    #[test]
    fn a_mariadb_url_is_read_as_mysql() {
        let c =
            Config::from_env(&env(&[("ORDER_DATABASE_URL", "mariadb://root@db/orders")])).unwrap();
        assert_eq!(
            c.database,
            DatabaseTarget::MySql(SecretUrl::new("mysql://root@db/orders"))
        );
    }

    #[test]
    fn an_unknown_database_scheme_is_rejected_without_echoing_the_url() {
        let e = err(&[("ORDER_DATABASE_URL", "postgres://u:secret@h/db")]);
        assert!(e.contains("unsupported database URL scheme"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn a_sqlite_url_without_a_path_is_rejected() {
        let e = err(&[("ORDER_DATABASE_URL", "sqlite://")]);
        assert!(e.starts_with("ORDER_DATABASE_URL"), "{e}");
    }

    #[test]
    fn kafka_brokers_select_kafka_and_turn_test_endpoints_off_by_default() {
        let c = Config::from_env(&env(&[("ORDER_KAFKA_BROKERS", "k1:9092,k2:9093")])).unwrap();
        let k = c.kafka.expect("kafka settings");
        assert_eq!(k.brokers, "k1:9092,k2:9093");
        assert_eq!(k.partitions, 3);
        assert_eq!(k.publish_timeout, Duration::from_millis(5000));
        assert!(!c.test_endpoints);
        let c = Config::from_env(&env(&[
            ("ORDER_KAFKA_BROKERS", "k1:9092"),
            ("ORDER_TEST_ENDPOINTS", "true"),
        ]))
        .unwrap();
        assert!(c.test_endpoints, "an explicit setting wins");
    }

    #[test]
    fn malformed_kafka_brokers_are_rejected() {
        for bad in ["localhost", "host:port", ":9092", "a:1,b"] {
            let e = err(&[("ORDER_KAFKA_BROKERS", bad)]);
            assert!(e.starts_with("ORDER_KAFKA_BROKERS"), "{bad}: {e}");
        }
        let e = err(&[
            ("ORDER_KAFKA_BROKERS", "k:9092"),
            ("ORDER_KAFKA_PARTITIONS", "0"),
        ]);
        assert!(e.starts_with("ORDER_KAFKA_PARTITIONS"), "{e}");
    }

    #[test]
    fn a_mongodb_uri_selects_mongo_with_the_original_names_by_default() {
        let c = Config::from_env(&env(&[(
            "ORDER_MONGODB_URI",
            "mongodb://u:pw@localhost:27017",
        )]))
        .unwrap();
        let m = c.mongo.clone().expect("mongo settings");
        assert_eq!(m.database, "order_read_db");
        assert_eq!(m.collection, "orders");
        assert!(!format!("{c:?}").contains(":pw@"));
        let e = err(&[("ORDER_MONGODB_URI", "http://localhost")]);
        assert!(e.starts_with("ORDER_MONGODB_URI"), "{e}");
    }

    #[test]
    fn replay_job_settings_have_defaults_and_ranges() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert_eq!(c.dlq_job_rate, 20.0);
        assert_eq!(c.dlq_job_max_failure_ratio, 0.5);
        assert_eq!(c.dlq_job_lease, Duration::from_secs(30));
        let c = Config::from_env(&env(&[
            ("ORDER_DLQ_JOB_RATE", "0.5"),
            ("ORDER_DLQ_JOB_MAX_FAILURE_RATIO", "1"),
            ("ORDER_DLQ_JOB_LEASE_MS", "2000"),
        ]))
        .unwrap();
        assert_eq!(c.dlq_job_rate, 0.5);
        assert_eq!(c.dlq_job_max_failure_ratio, 1.0);
        assert_eq!(c.dlq_job_lease, Duration::from_secs(2));
        for (k, v) in [
            ("ORDER_DLQ_JOB_RATE", "0"),
            ("ORDER_DLQ_JOB_RATE", "NaN"),
            ("ORDER_DLQ_JOB_RATE", "fast"),
            ("ORDER_DLQ_JOB_MAX_FAILURE_RATIO", "1.5"),
            ("ORDER_DLQ_JOB_MAX_FAILURE_RATIO", "-0.1"),
            ("ORDER_DLQ_JOB_LEASE_MS", "999"),
        ] {
            let e = err(&[(k, v)]);
            assert!(e.starts_with(k), "{k}={v}: {e}");
        }
    }

    #[test]
    fn publish_attempts_must_be_at_least_one() {
        let e = err(&[("ORDER_PUBLISH_MAX_ATTEMPTS", "0")]);
        assert!(e.starts_with("ORDER_PUBLISH_MAX_ATTEMPTS"), "{e}");
    }

    #[test]
    fn a_negative_backoff_is_rejected() {
        let e = err(&[("ORDER_PUBLISH_BACKOFF_MS", "-5")]);
        assert!(e.starts_with("ORDER_PUBLISH_BACKOFF_MS"), "{e}");
    }

    #[test]
    fn the_automatic_redrive_is_off_by_default_and_configurable() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert!(!c.dlq_auto_redrive);
        assert_eq!(c.dlq_auto_redrive_rate, 10);
        assert_eq!(c.dlq_auto_redrive_interval, Duration::from_secs(10));
        let c = Config::from_env(&env(&[
            ("ORDER_DLQ_AUTO_REDRIVE", "true"),
            ("ORDER_DLQ_AUTO_REDRIVE_RATE", "3"),
            ("ORDER_DLQ_AUTO_REDRIVE_INTERVAL_MS", "500"),
        ]))
        .unwrap();
        assert!(c.dlq_auto_redrive);
        assert_eq!(c.dlq_auto_redrive_rate, 3);
        assert_eq!(c.dlq_auto_redrive_interval, Duration::from_millis(500));
        for (var, bad) in [
            ("ORDER_DLQ_AUTO_REDRIVE", "sometimes"),
            ("ORDER_DLQ_AUTO_REDRIVE_RATE", "0"),
            ("ORDER_DLQ_AUTO_REDRIVE_INTERVAL_MS", "0"),
        ] {
            let e = err(&[(var, bad)]);
            assert!(e.starts_with(var), "{e}");
        }
    }

    #[test]
    fn test_endpoints_must_be_a_boolean() {
        let e = err(&[("ORDER_TEST_ENDPOINTS", "maybe")]);
        assert!(e.starts_with("ORDER_TEST_ENDPOINTS"), "{e}");
    }

    #[test]
    fn an_invalid_topic_name_is_rejected() {
        let e = err(&[("ORDER_TOPIC_EVENTS", "order events!")]);
        assert!(e.starts_with("ORDER_TOPIC_EVENTS"), "{e}");
    }

    #[test]
    fn the_events_and_dlq_topics_must_differ() {
        let e = err(&[("ORDER_TOPIC_DLQ", "order-events")]);
        assert!(e.contains("must differ"), "{e}");
    }

    #[test]
    fn the_two_consumer_groups_must_differ() {
        let e = err(&[("ORDER_DLQ_RECORDER_GROUP", "order-projector")]);
        assert!(e.contains("must differ"), "{e}");
    }

    #[test]
    fn batch_sizes_and_timeouts_must_be_in_range() {
        for var in [
            "ORDER_COMMIT_BATCH_MAX",
            "ORDER_RELAY_BATCH_SIZE",
            "ORDER_COMMAND_TIMEOUT_MS",
        ] {
            let e = err(&[(var, "0")]);
            assert!(e.starts_with(var), "{e}");
        }
    }

    #[test]
    fn a_tiny_body_limit_is_rejected() {
        let e = err(&[("ORDER_MAX_BODY_BYTES", "10")]);
        assert!(e.starts_with("ORDER_MAX_BODY_BYTES"), "{e}");
    }

    #[test]
    fn an_invalid_log_filter_is_rejected() {
        let e = err(&[("ORDER_LOG", "info,[[[")]);
        assert!(e.starts_with("ORDER_LOG"), "{e}");
    }

    #[test]
    fn an_unknown_log_format_is_rejected() {
        let e = err(&[("ORDER_LOG_FORMAT", "xml")]);
        assert!(e.starts_with("ORDER_LOG_FORMAT"), "{e}");
    }

    #[test]
    fn the_bus_and_the_read_model_cannot_share_the_database_file() {
        let e = err(&[
            ("ORDER_DATABASE_URL", "sqlite://x/orders.db"),
            ("ORDER_BUS_PATH", "x/orders.db"),
        ]);
        assert!(e.contains("same file"), "{e}");
    }

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
    fn a_database_file_without_a_directory_puts_the_others_in_the_working_directory() {
        let c = Config::from_env(&env(&[("ORDER_DATABASE_URL", "sqlite://orders.db")])).unwrap();
        assert_eq!(c.read_model_path, PathBuf::from("read-model.db"));
        assert_eq!(c.bus_path, PathBuf::from("bus.db"));
    }
}
