//! Certificates for TLS tests, made with the `openssl` command line: two
//! certificate authorities (`good`, which signs the server's certificate,
//! and `other`, which signs nothing) and a server certificate for
//! `127.0.0.1` and `localhost`. The files live in a directory the caller
//! owns (a temporary one). [`SecureTansu`] is a Tansu broker serving TLS
//! with that certificate and requiring SASL authentication.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The files of a test PKI in `dir`.
#[derive(Clone, Debug)]
pub struct TestPki {
    pub dir: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is openssl installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestPki {
    /// Makes the CAs and the server certificate in `dir`.
    pub fn create(dir: &Path) -> Self {
        let pki = Self {
            dir: dir.to_path_buf(),
        };
        for name in ["good", "other"] {
            run(Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .arg("-keyout")
                .arg(pki.file(&format!("{name}-ca.key")))
                .arg("-out")
                .arg(pki.ca(name))
                .args(["-subj", &format!("/CN=order-service test CA {name}")]));
        }
        let ext = pki.file("server.ext");
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("write the certificate extensions");
        run(Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
            ])
            .arg("-keyout")
            .arg(pki.server_key())
            .arg("-out")
            .arg(pki.file("server.csr")));
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2"])
            .arg("-in")
            .arg(pki.file("server.csr"))
            .arg("-CA")
            .arg(pki.ca("good"))
            .arg("-CAkey")
            .arg(pki.file("good-ca.key"))
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(pki.server_cert()));
        pki
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The certificate of CA `good` (signed the server's) or `other`.
    pub fn ca(&self, name: &str) -> PathBuf {
        self.file(&format!("{name}-ca.pem"))
    }

    pub fn server_cert(&self) -> PathBuf {
        self.file("server.pem")
    }

    /// The server's private key (PKCS#8 PEM, unencrypted).
    pub fn server_key(&self) -> PathBuf {
        self.file("server.key")
    }
}

/// The Tansu binary: `ORDER_TEST_TANSU_BIN` (set by scripts/services.sh),
/// else `tansu` on the PATH or in ~/.cargo/bin.
pub fn tansu_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("ORDER_TEST_TANSU_BIN") {
        if !bin.trim().is_empty() {
            return PathBuf::from(bin);
        }
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cargo = PathBuf::from(home).join(".cargo/bin/tansu");
    if cargo.is_file() {
        return cargo;
    }
    PathBuf::from("tansu")
}

/// A Kafka-protocol broker of the test's own that serves TLS with the
/// [`TestPki`] server certificate, and with `authentication` requires a
/// SASL login; killed when dropped.
///
/// Tansu 0.6 authenticates (`--authentication`) but its command line cannot
/// turn TLS on: `--cert` and `--key` sit in one argument group, so giving
/// both is refused, and either alone leaves TLS off. TLS is therefore
/// terminated by `socat` (Debian's package) in front of it, and the broker
/// advertises the TLS address, so every connection a client makes,
/// bootstrap or not, goes through TLS.
///
/// Its SASL offers SCRAM-SHA-256/512 and OAUTHBEARER (no PLAIN), and a SCRAM
/// user can only be created over a connection that has already logged in,
/// while its memory storage starts empty: no login can succeed, so with
/// `authentication` it serves the refused-login cases only.
pub struct SecureTansu {
    tansu: Child,
    tls: Child,
    /// `host:port` of the TLS listener.
    pub brokers: String,
    /// `host:port` of Tansu's own listener (plain text, SASL required).
    pub plain: String,
    pub pki: TestPki,
    logs: [PathBuf; 2],
}

impl Drop for SecureTansu {
    fn drop(&mut self) {
        for child in [&mut self.tls, &mut self.tansu] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl SecureTansu {
    /// Starts it with its certificates and logs in `dir`.
    pub fn start(dir: &Path, authentication: bool) -> Self {
        let pki = TestPki::create(dir);
        let (plain, tls_port) = (free_port(), free_port());
        let tansu_log = dir.join("tansu.log");
        let tansu = Command::new(tansu_bin())
            .arg("broker")
            .args(["--listener-url", &format!("tcp://127.0.0.1:{plain}")])
            .args([
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{tls_port}"),
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .args(authentication.then_some("--authentication"))
            .stdout(std::fs::File::create(&tansu_log).expect("log file"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", tansu_bin().display()));
        let socat_log = dir.join("socat.log");
        let tls = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{tls_port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
                pki.server_cert().display(),
                pki.server_key().display()
            ))
            .arg(format!("TCP:127.0.0.1:{plain}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&socat_log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("start socat (apt-get install socat): {e}"));
        let broker = SecureTansu {
            tansu,
            tls,
            brokers: format!("127.0.0.1:{tls_port}"),
            plain: format!("127.0.0.1:{plain}"),
            pki,
            logs: [tansu_log.clone(), socat_log.clone()],
        };
        wait_for_port(plain, "tansu", &tansu_log);
        wait_for_port(tls_port, "socat", &socat_log);
        broker
    }

    /// What Tansu and socat logged so far (for failure messages).
    pub fn log(&self) -> String {
        self.logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}
