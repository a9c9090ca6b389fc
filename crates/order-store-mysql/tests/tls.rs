//! TLS to MariaDB, against a real server: the test starts its own
//! `mariadbd` (own data directory and port) with a certificate signed by a
//! CA it makes with `openssl`, and that server refuses plain text
//! (`require_secure_transport`). The store connects in `verify-ca` and
//! `verify-identity` modes, refuses a certificate from another CA, and
//! refuses a server without TLS (the one named by `ORDER_TEST_MYSQL_URL`,
//! started without certificates) when TLS is required.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use order_core::testkit::pki::TestPki;
use order_store_mysql::{MySqlConfig, MySqlStore, Tls, TlsMode};

/// A `mariadbd` of the test's own, with TLS, stopped (and its files
/// removed) when dropped.
struct TlsServer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    pki: TestPki,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl TlsServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let d = dir.path();
        let pki = TestPki::create(d);
        let data = d.join("data");
        run(Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .args(root_user())
            .stdout(Stdio::null()));
        let port = free_port();
        let socket = d.join("mysqld.sock");
        let log = std::fs::File::create(d.join("mariadbd.log")).expect("log file");
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", d.join("mariadbd.pid").display()))
            .arg(format!("--ssl-ca={}", pki.ca("good").display()))
            .arg(format!("--ssl-cert={}", pki.server_cert().display()))
            .arg(format!("--ssl-key={}", pki.server_key().display()))
            .arg("--require-secure-transport=ON")
            .arg("--skip-log-bin")
            .arg("--innodb-buffer-pool-size=32M")
            .args(root_user())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mariadbd");
        let server = TlsServer {
            child,
            dir,
            port,
            pki,
        };
        server.wait_and_add_user(&socket);
        server
    }

    /// Waits for the socket, then adds a user that may log in over TCP.
    fn wait_and_add_user(&self, socket: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new("mariadb")
                .arg("--no-defaults")
                .arg(format!("--socket={}", socket.display()))
                .args(["-uroot", "-e"])
                .arg(
                    "CREATE USER IF NOT EXISTS 'orders'@'%' IDENTIFIED BY 'tls-test-pw'; \
                     GRANT ALL ON *.* TO 'orders'@'%';",
                )
                .output()
                .expect("run the mariadb client");
            if out.status.success() {
                return;
            }
            let log =
                std::fs::read_to_string(self.dir.path().join("mariadbd.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "mariadbd did not come up: {}\n{log}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn url(&self, host: &str) -> String {
        format!(
            "mysql://orders:tls-test-pw@{host}:{}/order_tls_test",
            self.port
        )
    }

    fn ca(&self, name: &str) -> PathBuf {
        self.pki.ca(name)
    }
}

/// mariadbd refuses to run as root unless told to.
fn root_user() -> Vec<String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if uid == "0" {
        vec!["--user=root".to_owned()]
    } else {
        vec![]
    }
}

fn config(url: String, mode: TlsMode, ca: Option<PathBuf>) -> MySqlConfig {
    MySqlConfig::new(url)
        .with_max_connections(2)
        .with_acquire_timeout(Duration::from_secs(5))
        .with_tls(Some(Tls { mode, ca_file: ca }))
}

async fn connect_err(cfg: MySqlConfig) -> String {
    match MySqlStore::connect_with(cfg).await {
        Ok(_) => panic!("the connection should have been refused"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_mariadb_is_verified_against_the_configured_ca() {
    let server = TlsServer::start();

    // verify-ca with the CA that signed the server's certificate: connected,
    // migrated, and the session really is encrypted.
    let store = MySqlStore::connect_with(config(
        server.url("127.0.0.1"),
        TlsMode::VerifyCa,
        Some(server.ca("good")),
    ))
    .await
    .expect("verify-ca with the right CA connects");
    let cipher = store.tls_cipher().await.expect("read the session's cipher");
    assert!(cipher.is_some(), "the session is encrypted");
    drop(store);

    // verify-identity: the certificate names localhost and 127.0.0.1.
    MySqlStore::connect_with(config(
        server.url("localhost"),
        TlsMode::VerifyIdentity,
        Some(server.ca("good")),
    ))
    .await
    .expect("verify-identity for a name the certificate carries connects");

    // A CA that did not sign the server's certificate: refused.
    let e = connect_err(config(
        server.url("127.0.0.1"),
        TlsMode::VerifyCa,
        Some(server.ca("other")),
    ))
    .await;
    assert!(
        e.to_ascii_lowercase().contains("certificate") || e.contains("tls") || e.contains("TLS"),
        "a wrong CA is refused with a TLS error: {e}"
    );

    // verify-ca without the private CA: the built-in web roots do not
    // trust it.
    let e = connect_err(config(server.url("127.0.0.1"), TlsMode::VerifyCa, None)).await;
    assert!(!e.is_empty());

    // The server requires TLS: the same credentials in plain text are
    // refused (MariaDB 10.11 answers an insecure transport with 1045,
    // "access denied"; MySQL 8 with 3159).
    let e = connect_err(config(server.url("127.0.0.1"), TlsMode::Disabled, None)).await;
    assert!(
        e.contains("1045") || e.contains("3159"),
        "plain text to a server that requires TLS is refused: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_requires_tls_refuses_a_server_without_it() {
    // The shared test server runs without certificates (have_ssl = DISABLED).
    let db = common::TestDb::new();
    let url = db.url.clone();
    for mode in [
        TlsMode::Required,
        TlsMode::VerifyCa,
        TlsMode::VerifyIdentity,
    ] {
        let e = connect_err(config(url.clone(), mode, None)).await;
        assert!(
            e.to_ascii_lowercase().contains("tls") || e.to_ascii_lowercase().contains("ssl"),
            "{mode:?}: refused for want of TLS: {e}"
        );
    }
    // `preferred` falls back to plain text, as MySQL's clients do.
    MySqlStore::connect_with(config(url, TlsMode::Preferred, None))
        .await
        .expect("preferred connects in plain text");
}
