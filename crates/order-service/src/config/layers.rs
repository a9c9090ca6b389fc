//! The layering half of configuration: where raw values come from and in
//! which order they win (built-in defaults → `ORDER_CONFIG_FILE` →
//! `ORDER_*` variables), and typed reads that name the value's source in
//! every error. Kept apart from the settings so each concern's validation
//! reads as "which keys, which ranges" without the plumbing.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::ConfigError;

/// The defaults, documented key by key.
pub const DEFAULTS_TOML: &str = include_str!("../../../../config/default.toml");

/// Environment variable naming an optional TOML file with overrides.
pub const CONFIG_FILE_VAR: &str = "ORDER_CONFIG_FILE";

/// Every key a file may set; the environment variable is `ORDER_` + upper case.
pub(super) const KEYS: &[&str] = &[
    "port",
    "bind",
    "database_url",
    "read_model_path",
    "bus_path",
    "kafka_brokers",
    "kafka_partitions",
    "kafka_dlq_partitions",
    "kafka_max_poll_interval_ms",
    "kafka_replication_factor",
    "kafka_min_insync_replicas",
    "kafka_compression",
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_ca_location",
    "dlq_topic_naming",
    "database_ssl_mode",
    "database_ssl_ca",
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
    "topic_redelivery",
    "projector_group",
    "dlq_recorder_group",
    "commit_batch_max",
    "commit_linger_us",
    "commit_concurrency",
    "relay_batch_size",
    "relay_linger_ms",
    "relay_partitions",
    "relay_lease_ms",
    "projector_linger_ms",
    "command_timeout_ms",
    "max_body_bytes",
    "log",
    "log_format",
    "otlp_endpoint",
    "api_keys",
    "api_keys_file",
    "admin_api_key",
    "jwt_hs256_secret",
    "jwt_rs256_public_key",
    "jwt_jwks_url",
    "jwt_jwks_refresh_secs",
    "jwt_jwks_min_refresh_secs",
    "jwt_jwks_ca_file",
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
    "dlq_auto_redrive_max_attempts",
    "dlq_auto_redrive_backoff_ms",
    "dlq_retention_days",
    "dlq_edit_approval",
    "dlq_job_rate",
    "dlq_job_max_failure_ratio",
    "dlq_job_lease_ms",
];

/// One raw value and where it came from (for error messages).
#[derive(Clone, Debug)]
pub(super) struct Raw {
    pub(super) value: String,
    pub(super) source: String,
}

pub(super) type Layer = BTreeMap<&'static str, Raw>;

pub(super) fn env_name(key: &str) -> String {
    format!("ORDER_{}", key.to_ascii_uppercase())
}

/// Pass-through librdkafka properties by name (`ssl.ca.location`…).
pub(super) type Properties = BTreeMap<String, Raw>;

/// The table of a config file holding librdkafka properties.
pub(super) const KAFKA_PROPERTIES_TABLE: &str = "kafka_properties";

/// Prefix of the variables holding librdkafka properties:
/// `ORDER_KAFKA_PROPERTY_SSL_CA_LOCATION` sets `ssl.ca.location`.
pub(super) const KAFKA_PROPERTY_PREFIX: &str = "ORDER_KAFKA_PROPERTY_";

/// Everything the layers gave: the known keys, and the pass-through
/// Kafka client properties.
pub(super) struct Sources {
    pub(super) values: Layer,
    pub(super) kafka_properties: Properties,
}

fn scalar(v: toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

/// Reads a TOML document into raw strings; unknown keys and non-scalar
/// values are errors, but for the `[kafka_properties]` table.
fn toml_layer(text: &str, origin: &str) -> Result<Sources, ConfigError> {
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| ConfigError::new(format!("{origin}: not valid TOML: {}", e.message())))?;
    let mut layer = Layer::new();
    let mut kafka_properties = Properties::new();
    for (k, v) in table {
        if k == KAFKA_PROPERTIES_TABLE {
            let toml::Value::Table(props) = v else {
                return Err(ConfigError::new(format!(
                    "{origin}: `{KAFKA_PROPERTIES_TABLE}` must be a table of librdkafka properties"
                )));
            };
            for (name, value) in props {
                let Some(value) = scalar(value) else {
                    return Err(ConfigError::new(format!(
                        "{origin}: `{KAFKA_PROPERTIES_TABLE}.{name}` must be a string, integer or boolean"
                    )));
                };
                kafka_properties.insert(
                    name.clone(),
                    Raw {
                        value,
                        source: format!("`{KAFKA_PROPERTIES_TABLE}.{name}` in {origin}"),
                    },
                );
            }
            continue;
        }
        let Some(key) = KEYS.iter().copied().find(|known| *known == k) else {
            return Err(ConfigError::new(format!(
                "{origin}: unknown key `{k}` (known keys: {})",
                KEYS.join(", ")
            )));
        };
        let Some(value) = scalar(v) else {
            return Err(ConfigError::new(format!(
                "{origin}: key `{k}` must be a string, integer or boolean"
            )));
        };
        layer.insert(
            key,
            Raw {
                value,
                source: format!("`{k}` in {origin}"),
            },
        );
    }
    Ok(Sources {
        values: layer,
        kafka_properties,
    })
}

fn env_layer(env: &HashMap<String, String>) -> Sources {
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
    // ORDER_KAFKA_PROPERTY_SSL_CA_LOCATION → ssl.ca.location (librdkafka
    // names are lower case with dots; none has an underscore).
    let mut kafka_properties = Properties::new();
    for (name, v) in env {
        if let Some(rest) = name.strip_prefix(KAFKA_PROPERTY_PREFIX) {
            if !rest.is_empty() && !v.trim().is_empty() {
                kafka_properties.insert(
                    rest.to_ascii_lowercase().replace('_', "."),
                    Raw {
                        value: v.trim().to_owned(),
                        source: name.clone(),
                    },
                );
            }
        }
    }
    Sources {
        values: layer,
        kafka_properties,
    }
}

/// The merged layers for `env` standing in for the environment.
pub(super) fn merged(env: &HashMap<String, String>) -> Result<Sources, ConfigError> {
    let mut merged = toml_layer(DEFAULTS_TOML, "the built-in defaults")?;
    let mut add = |layer: Sources| {
        merged.values.extend(layer.values);
        merged.kafka_properties.extend(layer.kafka_properties);
    };
    if let Some(path) = env.get(CONFIG_FILE_VAR).filter(|p| !p.trim().is_empty()) {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(format!("{CONFIG_FILE_VAR}: cannot read {path:?}: {e}"))
        })?;
        add(toml_layer(&text, path)?);
    }
    add(env_layer(env));
    Ok(merged)
}

pub(super) struct Parser<'a>(pub(super) &'a Layer);

impl Parser<'_> {
    pub(super) fn get(&self, key: &str) -> Option<&Raw> {
        self.0.get(key).filter(|r| !r.value.trim().is_empty())
    }

    pub(super) fn required(&self, key: &str) -> Result<&Raw, ConfigError> {
        self.get(key)
            .ok_or_else(|| ConfigError::new(format!("{} must be set", env_name(key))))
    }

    pub(super) fn int(&self, key: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
        let raw = self.required(key)?;
        match raw.value.trim().parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(ConfigError::new(format!(
                "{}: invalid value {:?}: expected an integer from {min} to {max}",
                raw.source, raw.value
            ))),
        }
    }

    pub(super) fn float(&self, key: &str, min: f64, max: f64) -> Result<f64, ConfigError> {
        let raw = self.required(key)?;
        match raw.value.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && (min..=max).contains(&v) => Ok(v),
            _ => Err(ConfigError::new(format!(
                "{}: invalid value {:?}: expected a number from {min} to {max}",
                raw.source, raw.value
            ))),
        }
    }

    pub(super) fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
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

    pub(super) fn path(&self, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self.get(key).map(|r| PathBuf::from(r.value.trim())))
    }

    /// A Kafka topic name: 1..=249 of `[A-Za-z0-9._-]`, not `.` or `..`.
    pub(super) fn topic(&self, key: &str) -> Result<String, ConfigError> {
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
    pub(super) fn name(&self, key: &str) -> Result<String, ConfigError> {
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
    use std::path::PathBuf;

    use super::super::test_support::{env, err};
    use super::super::Config;
    use super::*;

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
}
