//! A broker that hangs (SIGSTOP) while the bus is connected: publishes fail
//! as retryable within about the publish timeout, the health check reports
//! it, and publishing works again after SIGCONT. Runs its own Tansu broker
//! (`ORDER_TEST_TANSU_BIN`, else `tansu` on PATH or in ~/.cargo/bin), so
//! stopping it disturbs no other test.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use order_bus_kafka::KafkaBus;
use order_core::ports::{BusError, EventBus, PublishError};
use order_core::testkit::fixtures::{message, unique_name};

struct Broker {
    child: Child,
    address: String,
}

impl Broker {
    fn start() -> Broker {
        let bin = std::env::var("ORDER_TEST_TANSU_BIN")
            .ok()
            .unwrap_or_else(|| {
                let home = std::env::var("HOME").unwrap_or_default();
                let cargo_bin = format!("{home}/.cargo/bin/tansu");
                if std::path::Path::new(&cargo_bin).exists() {
                    cargo_bin
                } else {
                    "tansu".to_owned()
                }
            });
        let address = common::closed_port_address();
        let url = format!("tcp://{address}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the Tansu broker {bin}: {e}; run ./scripts/test.sh \
                     (it installs Tansu) or set ORDER_TEST_TANSU_BIN"
                )
            });
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                Instant::now() < deadline,
                "Tansu did not listen on {address}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Broker { child, address }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {sig}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_broker_fails_publishes_within_the_publish_timeout() {
    let broker = Broker::start();
    let mut cfg = common::test_config(&broker.address);
    cfg.publish_timeout = Duration::from_secs(2);
    let bus = KafkaBus::connect(cfg).await.expect("connect");
    let topic = unique_name("orders");
    let ok = bus.publish(&[message(&topic, "k", 0)]).await;
    assert_eq!(ok, vec![Ok(())]);

    broker.signal("-STOP");
    let started = Instant::now();
    let results = bus
        .publish(&[message(&topic, "k", 1), message(&topic, "k", 2)])
        .await;
    let took = started.elapsed();
    for r in &results {
        assert!(matches!(r, Err(PublishError::Retryable(_))), "{r:?}");
    }
    assert!(took < Duration::from_secs(5), "failed after {took:?}");
    let started = Instant::now();
    let check = bus.check(Duration::from_secs(1)).await;
    assert!(matches!(check, Err(BusError::Unavailable(_))), "{check:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    broker.signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = bus.publish(&[message(&topic, "k", 3)]).await;
        if r == vec![Ok(())] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "publishing did not recover: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
