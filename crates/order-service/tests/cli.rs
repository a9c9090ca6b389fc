//! `order-service dlq …` against the real binary: the CLI is a second process
//! talking HTTP to a running service, and what it prints with `--json` is
//! what the API answers.

mod support;

use std::process::{Command, Output};

use serde_json::Value;
use support::{eventually, order_body, Service};

/// Runs the CLI with a clean environment (no ORDER_URL / ORDER_API_KEY from
/// the developer's shell) plus `env`.
fn cli_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_order-service"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the CLI runs")
}

/// `order-service dlq <args> --url <service>`.
fn dlq(svc: &Service, args: &[&str]) -> Output {
    let url = format!("http://{}", svc.addr);
    let mut all = vec!["dlq"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--url", &url]);
    cli_with_env(&all, &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts exit code 0 and parses stdout as JSON.
fn ok_json(o: &Output) -> Value {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

async fn api(svc: &Service, method: &str, path: &str) -> Value {
    let r = svc.call(method, path, None).await;
    assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.text);
    r.json()
}

/// Takes the bus down, creates an order and waits until its OrderCreated is
/// parked; returns its event id.
async fn park_one(svc: &Service, customer: &str) -> String {
    svc.call("POST", "/api/test/bus/down", None).await;
    let created = svc
        .call("POST", "/api/orders", Some(&order_body(customer, "rest-1")))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let order = created.json()["id"].as_str().expect("id").to_owned();
    eventually(20, "the event parked", || async {
        let page = svc
            .call("GET", "/api/dlq/pending?size=100", None)
            .await
            .json();
        page["content"].as_array().and_then(|records| {
            records
                .iter()
                .find(|r| r["aggregateId"] == order.as_str())
                .and_then(|r| r["eventId"].as_str().map(str::to_owned))
        })
    })
    .await
}

/// A service with two orders' OrderCreated parked (the bus left down), and
/// their event ids, older first.
async fn two_parked(prefix: &str) -> (tempfile::TempDir, Service, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &[]).await;
    let older = park_one(&svc, &format!("{prefix}-1")).await;
    let newer = park_one(&svc, &format!("{prefix}-2")).await;
    (dir, svc, older, newer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_shows_replays_and_resets_a_parked_event_as_the_api_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &[]).await;
    let event_id = park_one(&svc, "cli-cust-1").await;

    // stats, list and show print exactly what the API answers.
    let stats = ok_json(&dlq(&svc, &["stats", "--json"]));
    assert_eq!(stats, api(&svc, "GET", "/api/dlq/stats").await);
    assert_eq!(stats["pendingCount"], 1);
    let list = ok_json(&dlq(&svc, &["list", "--json"]));
    assert_eq!(list, api(&svc, "GET", "/api/dlq/pending").await);
    let list = ok_json(&dlq(
        &svc,
        &[
            "list", "--status", "pending", "--page", "0", "--size", "5", "--json",
        ],
    ));
    assert_eq!(list["size"], 5);
    assert_eq!(list["content"][0]["eventId"], event_id.as_str());
    let record = ok_json(&dlq(&svc, &["show", &event_id, "--json"]));
    assert_eq!(
        record,
        api(&svc, "GET", &format!("/api/dlq/event/{event_id}")).await
    );

    // The human output is a table with the event id in it.
    let out = dlq(&svc, &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("EVENT ID"), "{text}");
    assert!(text.contains(&event_id), "{text}");
    assert!(
        text.contains("OrderCreated") && text.contains("PENDING"),
        "{text}"
    );
    let text = stdout(&dlq(&svc, &["show", &event_id]));
    assert!(
        text.contains(&event_id) && text.contains("failureReason"),
        "{text}"
    );
    let text = stdout(&dlq(&svc, &["stats"]));
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().eq(["PENDING", "1"])),
        "{text}"
    );

    // A replay while the bus is down fails: exit 1, the outcome on stdout,
    // the reason on stderr; the record is FAILED.
    let out = dlq(&svc, &["replay", &event_id, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let outcome: Value = serde_json::from_str(&stdout(&out)).expect("JSON outcome");
    assert_eq!(outcome["status"], "FAILED");
    assert!(stderr(&out).contains("502"), "{}", stderr(&out));

    // reset: FAILED → PENDING, the answer is the record.
    let reset = ok_json(&dlq(&svc, &["reset", &event_id, "--json"]));
    assert_eq!(reset["status"], "PENDING");
    // The record GET answers is the same, with its revision history.
    let mut record = api(&svc, "GET", &format!("/api/dlq/event/{event_id}")).await;
    let record = record.as_object_mut().expect("an object");
    assert_eq!(record.remove("revisions"), Some(serde_json::json!([])));
    assert_eq!(record.remove("approvalRequired"), Some(Value::Bool(false)));
    assert_eq!(reset, Value::Object(record.clone()));

    // The bus is back: the replay publishes.
    svc.call("POST", "/api/test/bus/up", None).await;
    let out = dlq(&svc, &["replay", &event_id]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&event_id) && text.contains("REPLAYED"),
        "{text}"
    );
    let replayed = ok_json(&dlq(&svc, &["list", "--status", "REPLAYED", "--json"]));
    assert_eq!(replayed["content"][0]["eventId"], event_id.as_str());
    let again = ok_json(&dlq(&svc, &["replay", &event_id, "--json"]));
    assert_eq!(again["status"], "SKIPPED");

    // A reset of a REPLAYED record is refused by the service: exit 1 and
    // its problem on stderr.
    let out = dlq(&svc, &["reset", &event_id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("409"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_replay_from_the_cli_lists_first_with_dry_run_then_replays() {
    let (_dir, svc, first, second) = two_parked("cli-bulk").await;
    svc.call("POST", "/api/test/bus/up", None).await;

    let dry = ok_json(&dlq(&svc, &["replay", "--all", "--dry-run", "--json"]));
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["matched"], 2);
    let text = stdout(&dlq(&svc, &["replay", "--all", "--dry-run"]));
    assert!(
        text.contains("dry run") && text.contains(&first) && text.contains(&second),
        "{text}"
    );
    assert_eq!(api(&svc, "GET", "/api/dlq/stats").await["pendingCount"], 2);

    // Filters reach the service: an unknown order matches nothing.
    let none = ok_json(&dlq(
        &svc,
        &[
            "replay",
            "--all",
            "--aggregate-id",
            "no-such-order",
            "--json",
        ],
    ));
    assert_eq!(none["matched"], 0);
    assert_eq!(none["status"], "COMPLETED", "{none}");

    let out = dlq(
        &svc,
        &[
            "replay",
            "--all",
            "--limit",
            "1",
            "--event-type",
            "OrderCreated",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("replay job")
            && text.contains("COMPLETED: 1 of 1 head(s) processed: 1 replayed"),
        "{text}"
    );
    let rest = ok_json(&dlq(&svc, &["replay", "--all", "--json"]));
    assert_eq!(rest["replayed"], 1);
    assert_eq!(rest["status"], "COMPLETED");
    assert_eq!(api(&svc, "GET", "/api/dlq/stats").await["pendingCount"], 0);

    // --no-wait prints the job id; `dlq jobs` lists and shows jobs.
    let out = dlq(&svc, &["replay", "--all", "--no-wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let started = ok_json(&dlq(&svc, &["replay", "--all", "--no-wait", "--json"]));
    let id = started["id"].as_str().expect("job id").to_owned();
    assert!(stdout(&out).contains("replay job "), "{}", stdout(&out));
    let job = eventually(20, "the job to end", || async {
        let j = api(&svc, "GET", &format!("/api/dlq/jobs/{id}")).await;
        (j["status"] != "RUNNING").then_some(j)
    })
    .await;
    assert_eq!(job["status"], "COMPLETED");
    let shown = ok_json(&dlq(&svc, &["jobs", &id, "--json"]));
    assert_eq!(shown["id"], id.as_str());
    let list = stdout(&dlq(&svc, &["jobs"]));
    assert!(
        list.contains(&id) && list.contains("jobs in all: 5"),
        "{list}"
    );
    let out = dlq(&svc, &["cancel-job", &id]);
    assert_eq!(out.status.code(), Some(1), "an ended job is not cancelled");
    assert!(stderr(&out).contains("409"), "{}", stderr(&out));

    // Invalid input is the service's to judge: its problem, exit 1.
    let out = dlq(&svc, &["replay", "--all", "--limit", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("limit"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_event_exits_1_with_the_services_problem_detail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &[]).await;
    let path = "/api/dlq/event/no-such-event";
    let problem = svc.call("GET", path, None).await;
    assert_eq!(problem.status, 404);
    let detail = problem.json()["detail"]
        .as_str()
        .expect("detail")
        .to_owned();

    for args in [
        vec!["show", "no-such-event"],
        vec!["replay", "no-such-event"],
        vec!["reset", "no-such-event"],
    ] {
        let out = dlq(&svc, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("404") && err.contains("no-such-event"),
            "{args:?}: {err}"
        );
        assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
    }
    let err = stderr(&dlq(&svc, &["show", "no-such-event"]));
    assert!(err.contains(&detail), "{err}");
    // With --json the problem document is printed as it is.
    let out = dlq(&svc, &["show", "no-such-event", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&out)).expect("JSON problem"),
        problem.json()
    );
    // An event id that is not a plain path segment is encoded, not mangled.
    let out = dlq(&svc, &["show", "a/b c?d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("a/b c?d"), "{}", stderr(&out));
}

#[test]
fn an_unreachable_service_or_a_bad_command_line_exits_2() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = cli_with_env(&["dlq", "stats", "--url", &url], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot reach the service"),
        "{}",
        stderr(&out)
    );
    // ORDER_URL is the default for --url.
    let out = cli_with_env(&["dlq", "stats"], &[("ORDER_URL", &url)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&url), "{}", stderr(&out));

    let out = cli_with_env(&["dlq", "stats", "--url", "https://orders.example"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("https is not supported"),
        "{}",
        stderr(&out)
    );
    // Usage errors: clap's exit code 2.
    for args in [
        vec!["dlq", "replay"],
        vec!["dlq", "replay", "e1", "--all"],
        vec!["dlq", "replay", "e1", "--dry-run"],
        vec!["dlq", "skip", "e1"],
        vec!["dlq", "frobnicate"],
    ] {
        let out = cli_with_env(&args, &[("ORDER_URL", &url)]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

/// Whether the running service documents `path`.
async fn documents(svc: &Service, path: &str) -> bool {
    api(svc, "GET", "/v3/api-docs").await["paths"]
        .get(path)
        .is_some()
}

/// skip and audit arrive with the authentication and audit work: where the
/// service has them, the CLI uses them; where not, it prints the 404/405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_and_audit_go_through_the_api_or_print_its_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &[]).await;
    let event_id = park_one(&svc, "cli-skip-1").await;

    let out = dlq(
        &svc,
        &[
            "skip",
            &event_id,
            "--reason",
            "duplicate of a manual fix",
            "--json",
        ],
    );
    let has_skip = out.status.code() == Some(0);
    if has_skip {
        let answer: Value = serde_json::from_str(&stdout(&out)).expect("JSON answer");
        assert!(answer.is_object(), "{answer}");
        let record = api(&svc, "GET", &format!("/api/dlq/event/{event_id}")).await;
        assert_eq!(record["status"], "SKIPPED");
        let out = dlq(&svc, &["skip", "no-such-event", "--reason", "r"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("404"), "{}", stderr(&out));
    } else {
        assert!(!documents(&svc, "/api/dlq/skip/{eventId}").await);
        let out = dlq(&svc, &["skip", &event_id, "--reason", "r"]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains("404") || err.contains("405"), "{err}");
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    }

    let out = dlq(&svc, &["audit", "--json"]);
    if out.status.code() == Some(0) {
        let all: Value = serde_json::from_str(&stdout(&out)).expect("JSON answer");
        assert_eq!(all, api(&svc, "GET", "/api/dlq/audit").await);
        let out = dlq(&svc, &["audit", "--target", &event_id]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        if has_skip {
            assert!(stdout(&out).contains(&event_id), "{}", stdout(&out));
            let skips = ok_json(&dlq(
                &svc,
                &[
                    "audit", "--action", "DLQ_SKIP", "--target", &event_id, "--json",
                ],
            ));
            let entries = skips["content"].as_array().expect("a page of entries");
            assert_eq!(entries.len(), 1, "{skips}");
            assert_eq!(entries[0]["result"], "SKIPPED", "{skips}");
        }
    } else {
        assert!(!documents(&svc, "/api/dlq/audit").await);
        let out = dlq(&svc, &["audit", "--principal", "ops"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("404"), "{}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_is_sent_from_the_flag_or_order_api_key() {
    const KEY: &str = "cli-test-key-0123456789abcdef";
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = format!("cli:admin:{KEY}");
    let svc = Service::start(dir.path(), &[("ORDER_API_KEYS", &keys)]).await;
    let url = format!("http://{}", svc.addr);

    let with_flag = cli_with_env(
        &["dlq", "stats", "--json", "--url", &url, "--api-key", KEY],
        &[],
    );
    ok_json(&with_flag);
    let with_env = cli_with_env(
        &["dlq", "stats", "--json"],
        &[("ORDER_URL", &url), ("ORDER_API_KEY", KEY)],
    );
    ok_json(&with_env);

    // When the service enforces keys, a call without one is its 401 problem.
    let anonymous = svc.call("GET", "/api/dlq/stats", None).await;
    if anonymous.status == 401 {
        let out = cli_with_env(&["dlq", "stats", "--url", &url], &[]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("401"), "{}", stderr(&out));
        let out = cli_with_env(
            &[
                "dlq",
                "stats",
                "--url",
                &url,
                "--api-key",
                "wrong-key-0123456789",
            ],
            &[],
        );
        assert_eq!(out.status.code(), Some(1));
    }
}

/// `order-service relay-partitions` on the embedded profile: one partition
/// covering every bucket; `--set 4` rewrites the layout, and the new
/// partitions start with epochs above the old one's.
#[test]
fn relay_partitions_shows_and_changes_the_layout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("orders.db");
    let env = [
        ("ORDER_DATABASE_URL", format!("sqlite://{}", db.display())),
        (
            "ORDER_READ_MODEL_PATH",
            dir.path().join("read.db").display().to_string(),
        ),
        (
            "ORDER_BUS_PATH",
            dir.path().join("bus.db").display().to_string(),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let shown = cli_with_env(&["relay-partitions"], &env);
    assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
    let lines: Vec<String> = stdout(&shown).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "a header and one partition: {lines:?}");
    assert!(lines[1].contains("0..1024"), "{lines:?}");
    assert!(lines[1].contains("(free)"), "{lines:?}");

    let set = cli_with_env(&["relay-partitions", "--set", "4"], &env);
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let lines: Vec<String> = stdout(&set).lines().skip(1).map(str::to_owned).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[3].contains("768..1024"), "{lines:?}");
    assert!(
        lines.iter().all(|l| l.contains(" 1  ")),
        "epoch 1 everywhere: {lines:?}"
    );

    let refused = cli_with_env(&["relay-partitions", "--set", "0"], &env);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pages_on_with_the_cursor_a_page_prints() {
    let (_dir, svc, older, newer) = two_parked("cli-page").await;

    let out = dlq(&svc, &["list", "--size", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&newer), "newest first: {text}");
    let cursor = text
        .lines()
        .find_map(|l| l.strip_prefix("next page: --after "))
        .unwrap_or_else(|| panic!("no next page line: {text}"))
        .to_owned();
    let next = ok_json(&dlq(
        &svc,
        &["list", "--size", "1", "--after", &cursor, "--json"],
    ));
    let uri = format!("/api/dlq/pending?size=1&after={cursor}");
    assert_eq!(next, api(&svc, "GET", &uri).await);
    assert_eq!(next["content"][0]["eventId"], older.as_str());
    assert!(next["nextCursor"].is_null(), "the last page: {next}");
    let text = stdout(&dlq(&svc, &["list", "--size", "1", "--after", &cursor]));
    assert!(!text.contains("next page"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_revised_previewed_and_replayed_from_the_cli() {
    use order_core::ports::{BusMessage, EventBus};
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &[]).await;
    // A third-party producer's message fails the projector, which
    // dead-letters it naming its group; the recorder parks it.
    let (order, event_id) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let bus = svc.bus();
    let sent = bus
        .publish(&[BusMessage {
            topic: "order-events".into(),
            key: order.to_string(),
            payload: support::poison_created(order, event_id, "cli-poisoned")
                .to_string()
                .into_bytes(),
            headers: vec![("ce_id".into(), event_id.to_string())],
        }])
        .await;
    assert!(sent.iter().all(Result::is_ok), "{sent:?}");
    let id = event_id.to_string();
    let record = eventually(20, "the poison message recorded", || async {
        let r = svc.call("GET", &format!("/api/dlq/event/{id}"), None).await;
        (r.status == 200).then(|| r.json())
    })
    .await;
    assert_eq!(record["source"], "CONSUMER");
    assert_eq!(record["consumerGroup"], "order-projector");
    assert!(
        record["failureReason"]
            .as_str()
            .unwrap_or_default()
            .contains("totalAmount"),
        "{record}"
    );

    // An edit that changes the event's identity is refused, field by field.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"[{"op":"replace","path":"/version","value":7}]"#).expect("write");
    let bad = bad.to_string_lossy().into_owned();
    let o = dlq(&svc, &["revise", &id, "--patch", &bad, "--reason", "oops"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("version: an edit may not change it"),
        "{}",
        stderr(&o)
    );

    let fix = dir.path().join("fix.json");
    std::fs::write(
        &fix,
        r#"[{"op":"add","path":"/data/totalAmount","value":"25.00"}]"#,
    )
    .expect("write");
    let fix = fix.to_string_lossy().into_owned();
    let rev = ok_json(&dlq(
        &svc,
        &[
            "revise",
            &id,
            "--patch",
            &fix,
            "--reason",
            "old producer",
            "--based-on",
            "0",
            "--json",
        ],
    ));
    assert_eq!(
        (rev["revision"].clone(), rev["state"].clone()),
        (1.into(), "READY".into())
    );
    let history = ok_json(&dlq(&svc, &["revisions", &id, "--json"]));
    assert_eq!(history["current"], 1);
    // The table view names the revision's author and reason.
    let table = stdout(&dlq(&svc, &["revisions", &id]));
    assert!(table.contains("old producer"), "{table}");

    let preview = ok_json(&dlq(&svc, &["preview", &id, "--json"]));
    assert_eq!(preview["replayable"], true, "{preview}");
    // The same from `replay --preview`, and for every head with --all.
    let again = ok_json(&dlq(&svc, &["replay", &id, "--preview", "--json"]));
    assert_eq!(again["messages"], preview["messages"]);
    let all = ok_json(&dlq(&svc, &["replay", "--all", "--preview", "--json"]));
    assert_eq!(all["previews"][0]["eventId"], id.as_str(), "{all}");
    assert_eq!(preview["messages"][0]["topic"], "order-events-redelivery");
    assert_eq!(preview["readModel"]["after"]["totalAmount"], "25.00");

    let replayed = ok_json(&dlq(&svc, &["replay", &id, "--json"]));
    assert_eq!(replayed["status"], "REPLAYED", "{replayed}");
    // The projector took the revision from the redelivery topic.
    eventually(20, "the revised order projected", || async {
        let r = svc
            .call("GET", "/api/orders/customer/cli-poisoned", None)
            .await;
        let page = r.json();
        page["content"]
            .as_array()
            .and_then(|orders| {
                orders
                    .iter()
                    .find(|o| o["id"] == order.to_string().as_str())
            })
            .map(|o| o["totalAmount"].clone())
    })
    .await;
    // Once: the record stays REPLAYED (no second failure reopened it).
    let record = api(&svc, "GET", &format!("/api/dlq/event/{id}")).await;
    assert_eq!(record["status"], "REPLAYED", "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_searches_exports_and_imports_into_another_service() {
    let (_dir, svc, older, _newer) = two_parked("exp").await;
    let found = ok_json(&dlq(&svc, &["search", "--customer-id", "exp-1", "--json"]));
    let records = found["content"].as_array().expect("content");
    assert_eq!(records.len(), 1, "{found}");
    assert_eq!(records[0]["eventId"], older.as_str());

    let export = dlq(&svc, &["export", "--customer-id", "exp-1"]);
    assert_eq!(export.status.code(), Some(0), "{}", stderr(&export));
    let file_dir = tempfile::tempdir().expect("tempdir");
    let file = file_dir.path().join("dlq.ndjson");
    std::fs::write(&file, &export.stdout).expect("written");
    let line: Value = serde_json::from_str(stdout(&export).trim()).expect("one record");
    assert_eq!(line["eventId"], older.as_str());

    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = Service::start(other_dir.path(), &[]).await;
    let path = file.to_str().expect("a path");
    let imported = ok_json(&dlq(&other, &["import", path, "--json"]));
    assert_eq!(imported["imported"], 1, "{imported}");
    let again = ok_json(&dlq(&other, &["import", path, "--json"]));
    assert_eq!(again["skipped"][0], older.as_str(), "{again}");
    let record = api(&other, "GET", &format!("/api/dlq/event/{older}")).await;
    assert_eq!(record["importedBy"], "anonymous");

    let bad = file_dir.path().join("bad.ndjson");
    std::fs::write(&bad, "{}\n").expect("written");
    let refused = dlq(&other, &["import", bad.to_str().expect("a path")]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("line 1"), "{}", stderr(&refused));
    let missing = dlq(&other, &["import", "/nonexistent/file.ndjson"]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
}
