//! Where the data lives: the write-side database (SQLite file or MySQL
//! URL), the SQLite files of the embedded profile laid out beside it, and
//! the optional MongoDB read model. Connection URLs may carry passwords, so
//! they are held as [`SecretUrl`] and never echoed in errors.

use std::fmt;
use std::path::{Path, PathBuf};

use order_store_mysql::{Tls, TlsMode};

use super::layers::{Parser, Raw};
use super::ConfigError;

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

/// MongoDB read model settings; present when `ORDER_MONGODB_URI` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MongoSettings {
    pub uri: SecretUrl,
    pub database: String,
    pub collection: String,
}

/// The write-side database and the files of the embedded read model and bus.
pub(super) struct Storage {
    pub(super) database: DatabaseTarget,
    pub(super) database_tls: Option<Tls>,
    pub(super) read_model_path: PathBuf,
    pub(super) bus_path: PathBuf,
}

pub(super) fn parse_storage(p: &Parser<'_>) -> Result<Storage, ConfigError> {
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
    let database_tls = parse_tls(p, &database)?;
    Ok(Storage {
        database,
        database_tls,
        read_model_path,
        bus_path,
    })
}

/// `ORDER_DATABASE_SSL_MODE` and `ORDER_DATABASE_SSL_CA` (MySQL only). A CA
/// file without a mode means `verify-ca`: whoever names a CA wants it
/// checked.
fn parse_tls(p: &Parser<'_>, database: &DatabaseTarget) -> Result<Option<Tls>, ConfigError> {
    let mode_raw = p.get("database_ssl_mode");
    let ca_raw = p.get("database_ssl_ca");
    if mode_raw.is_none() && ca_raw.is_none() {
        return Ok(None);
    }
    if let DatabaseTarget::Sqlite(_) = database {
        let source = mode_raw.or(ca_raw).map_or("", |r| r.source.as_str());
        return Err(ConfigError::new(format!(
            "{source} applies to MySQL only; ORDER_DATABASE_URL names a SQLite file"
        )));
    }
    let mode = match mode_raw {
        Some(raw) => TlsMode::parse(&raw.value).ok_or_else(|| {
            ConfigError::new(format!(
                "{}: invalid value {:?}: expected disabled, preferred, required, verify-ca or \
                 verify-identity",
                raw.source, raw.value
            ))
        })?,
        None => TlsMode::VerifyCa,
    };
    let ca_file = match ca_raw {
        None => None,
        Some(raw) => {
            let path = PathBuf::from(raw.value.trim());
            if !path.is_file() {
                return Err(ConfigError::new(format!(
                    "{}: no such file {:?}",
                    raw.source, raw.value
                )));
            }
            if mode == TlsMode::Disabled {
                return Err(ConfigError::new(format!(
                    "{} is set but ORDER_DATABASE_SSL_MODE is disabled",
                    raw.source
                )));
            }
            Some(path)
        }
    };
    Ok(Some(Tls { mode, ca_file }))
}

pub(super) fn parse_mongo(p: &Parser<'_>) -> Result<Option<MongoSettings>, ConfigError> {
    Ok(match p.get("mongodb_uri") {
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
    })
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{env, err};
    use super::super::Config;
    use super::*;

    #[test]
    fn mysql_tls_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let ca_s = ca.to_string_lossy().into_owned();
        let url = ("ORDER_DATABASE_URL", "mysql://root@db/orders");
        let c = Config::from_env(&env(&[url])).unwrap();
        assert_eq!(c.database_tls, None, "unset: as the URL says");
        let c = Config::from_env(&env(&[url, ("ORDER_DATABASE_SSL_CA", &ca_s)])).unwrap();
        assert_eq!(
            c.database_tls,
            Some(Tls {
                mode: TlsMode::VerifyCa,
                ca_file: Some(ca.clone())
            }),
            "a CA alone means verify-ca"
        );
        let c =
            Config::from_env(&env(&[url, ("ORDER_DATABASE_SSL_MODE", "VERIFY_IDENTITY")])).unwrap();
        assert_eq!(
            c.database_tls.map(|t| t.mode),
            Some(TlsMode::VerifyIdentity)
        );
        for (pairs, expect) in [
            (
                vec![url, ("ORDER_DATABASE_SSL_MODE", "strict")],
                "expected disabled",
            ),
            (
                vec![url, ("ORDER_DATABASE_SSL_CA", "/nonexistent.pem")],
                "no such file",
            ),
            (
                vec![
                    url,
                    ("ORDER_DATABASE_SSL_MODE", "disabled"),
                    ("ORDER_DATABASE_SSL_CA", &ca_s),
                ],
                "is disabled",
            ),
            (vec![("ORDER_DATABASE_SSL_MODE", "required")], "MySQL only"),
        ] {
            let e = err(&pairs);
            assert!(e.contains(expect), "{pairs:?}: {e}");
        }
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
    fn the_bus_and_the_read_model_cannot_share_the_database_file() {
        let e = err(&[
            ("ORDER_DATABASE_URL", "sqlite://x/orders.db"),
            ("ORDER_BUS_PATH", "x/orders.db"),
        ]);
        assert!(e.contains("same file"), "{e}");
    }

    #[test]
    fn a_database_file_without_a_directory_puts_the_others_in_the_working_directory() {
        let c = Config::from_env(&env(&[("ORDER_DATABASE_URL", "sqlite://orders.db")])).unwrap();
        assert_eq!(c.read_model_path, PathBuf::from("read-model.db"));
        assert_eq!(c.bus_path, PathBuf::from("bus.db"));
    }
}
