//! The test's own Tansu broker (a Kafka-protocol broker with memory
//! storage), which a test can freeze and resume without disturbing others.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::process::free_port;

/// The test's own Tansu broker (memory storage), so freezing it disturbs no
/// other test. `ORDER_TEST_TANSU_BIN`, else `tansu` in ~/.cargo/bin or on PATH.
pub struct Broker {
    child: Child,
    pub address: String,
}

impl Broker {
    pub fn start() -> Broker {
        Self::start_advertising(None)
    }

    /// Starts a broker that tells clients to connect to `advertised`
    /// (`host:port`, e.g. a TCP proxy in front of it) instead of its own
    /// listener; [`Broker::address`] is still the listener.
    pub fn start_advertising(advertised: Option<&str>) -> Broker {
        let bin = std::env::var("ORDER_TEST_TANSU_BIN")
            .ok()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| {
                let home = std::env::var("HOME").unwrap_or_default();
                let cargo_bin = format!("{home}/.cargo/bin/tansu");
                if std::path::Path::new(&cargo_bin).exists() {
                    cargo_bin
                } else {
                    "tansu".to_owned()
                }
            });
        let address = format!("127.0.0.1:{}", free_port());
        let url = format!("tcp://{address}");
        let advertised_url = format!("tcp://{}", advertised.unwrap_or(&address));
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised_url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the Tansu broker {bin}: {e}; run ./scripts/test.sh \
                     (it installs Tansu) or set ORDER_TEST_TANSU_BIN"
                )
            });
        let broker = Broker { child, address };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&broker.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "Tansu did not listen on {} within 30 s",
                broker.address
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        broker
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {sig} {}", self.child.id());
    }

    /// SIGSTOP: the broker hangs (connections stay open, nothing answers);
    /// its memory storage survives.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
