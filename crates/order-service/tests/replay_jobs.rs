//! Bulk replay jobs against the real binary: a job survives a `kill -9`
//! and a restart, continues where it stopped, and every parked event reaches
//! the bus once, in version order per order.

mod support;

use serde_json::{json, Value};
use support::{assert_ordered_once, eventually, order_body, read_topic, Service};

const EVENTS_TOPIC: &str = "order-events";

async fn job(svc: &Service, id: &str) -> Value {
    let r = svc.call("GET", &format!("/api/dlq/jobs/{id}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_job_survives_a_kill_and_completes_after_the_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut svc = Service::start(
        dir.path(),
        &[
            ("ORDER_TEST_ENDPOINTS", "true"),
            // Slow enough to kill it between heads; a dead runner's lease
            // lapses after a second.
            ("ORDER_DLQ_JOB_RATE", "2"),
            ("ORDER_DLQ_JOB_LEASE_MS", "1000"),
        ],
    )
    .await;

    // Four orders, created and confirmed with the bus down: four sequence
    // heads with one event held behind each.
    svc.call("POST", "/api/test/bus/down", None).await;
    for i in 0..4 {
        let created = svc
            .call(
                "POST",
                "/api/orders",
                Some(&order_body(&format!("job-restart-{i}"), "rest-1")),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let id = created.json()["id"].as_str().expect("id").to_owned();
        let confirmed = svc
            .call(
                "PUT",
                &format!("/api/orders/{id}/confirm?paymentId=p"),
                None,
            )
            .await;
        assert_eq!(confirmed.status, 200, "{}", confirmed.text);
    }
    eventually(20, "8 events parked", || async {
        let stats = svc.call("GET", "/api/dlq/stats", None).await.json();
        (stats["pendingCount"] == 8).then_some(())
    })
    .await;
    svc.call("POST", "/api/test/bus/up", None).await;

    let started = svc.call("POST", "/api/dlq/replay", Some(&json!({}))).await;
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.json()["id"].as_str().expect("job id").to_owned();
    assert_eq!(started.json()["matched"], 4);

    // Killed right after it saved its first head: the next one is ~0.5 s
    // away.
    eventually(20, "the first head replayed", || async {
        let j = job(&svc, &id).await;
        (j["processed"].as_u64().unwrap_or(0) >= 1).then_some(())
    })
    .await;
    svc.kill9();
    svc.restart().await;
    let at_restart = job(&svc, &id).await;
    assert_eq!(at_restart["status"], "RUNNING", "{at_restart}");
    assert!(
        at_restart["processed"].as_u64().unwrap() < 4,
        "killed before the end: {at_restart}"
    );

    let ended = eventually(30, "the job to end after the restart", || async {
        let j = job(&svc, &id).await;
        (j["status"] != "RUNNING").then_some(j)
    })
    .await;
    assert_eq!(ended["status"], "COMPLETED", "{ended}");
    assert_eq!(ended["message"], "no matching unresolved record left");
    assert_eq!(ended["failed"], 0, "{ended}");
    assert_eq!(ended["replayed"], 4, "{ended}");
    assert_eq!(ended["published"], 8, "{ended}");

    let stats = svc.call("GET", "/api/dlq/stats", None).await.json();
    assert_eq!(
        (
            stats["pendingCount"].clone(),
            stats["replayedCount"].clone()
        ),
        (json!(0), json!(8)),
        "{stats}"
    );
    // Downstream: every event once, in version order per order.
    let events = read_topic(&svc.bus(), EVENTS_TOPIC).await;
    let per_order = assert_ordered_once(&events);
    assert_eq!(per_order.len(), 4, "{per_order:?}");
    assert!(per_order.values().all(|v| v == &[1, 2]), "{per_order:?}");

    // Every replay was audited under the job's principal with its id.
    let audit = svc
        .call("GET", "/api/dlq/audit?action=DLQ_REPLAY&size=100", None)
        .await
        .json();
    let replays: Vec<&Value> = audit["content"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["parameters"]["jobId"] == id.as_str())
        .collect();
    assert_eq!(replays.len(), 4, "{audit}");
    assert!(replays.iter().all(|e| e["result"] == "REPLAYED"), "{audit}");
}
