//! The monitoring files under deploy/ (Prometheus alert rules and scrape
//! configuration, the Grafana dashboard) only use metrics the service
//! serves: every `orders_…`, `http_server_…`, `process_…` and
//! `order_service_…` name in them must be on a real GET /metrics.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;
use support::Service;

const FILES: [&str; 4] = [
    "prometheus/alerts.yml",
    "prometheus/alerts.test.yml",
    "prometheus/prometheus.yml",
    "grafana/order-service-dashboard.json",
];

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(file: &str) -> String {
    let path = deploy_dir().join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every metric name of ours in `text`: the `orders_[a-z0-9_]+` words and
/// those of the HTTP server, the process and the build.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    ["orders_", "http_server_", "process_", "order_service_"]
        .iter()
        .flat_map(|prefix| words_starting_with(text, prefix))
        .collect()
}

/// Every `<prefix>[a-z0-9_]*` word of `text`.
fn words_starting_with(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let preceded_by_word = rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded_by_word {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// The sample names of a Prometheus text exposition.
fn served_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_in_the_alerts_and_the_dashboard_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &[]).await;
    let metrics = svc.call("GET", "/metrics", None).await;
    assert_eq!(metrics.status, 200, "{}", metrics.text);
    let served = served_names(&metrics.text);
    assert!(served.contains("orders_dlq_records"), "{}", metrics.text);

    for file in FILES {
        let used = metric_names_in(&read(file));
        if file != "prometheus/prometheus.yml" {
            assert!(used.len() >= 8, "{file} uses only {used:?}");
        }
        let unknown: Vec<&String> = used.iter().filter(|n| !served.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics the service does not serve: {unknown:?}\nserved: {served:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_durations_by_matched_route_process_metrics_and_build_info_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &[]).await;
    let missing = format!("/api/orders/{}", uuid::Uuid::now_v7());
    assert_eq!(svc.call("GET", &missing, None).await.status, 404);
    assert_eq!(svc.call("GET", "/no/such/route", None).await.status, 404);
    assert_eq!(svc.call("GET", "/health/live", None).await.status, 200);
    let text = svc.call("GET", "/metrics", None).await.text;

    let count = |labels: &str| {
        support::metrics::metric(
            &text,
            &format!("http_server_request_duration_seconds_count{{{labels}}}"),
        )
    };
    // The matched route, never the raw path (no ids in label values).
    assert_eq!(
        count(r#"method="GET",route="/api/orders/{id}",status="404""#),
        1.0
    );
    assert_eq!(count(r#"method="GET",route="unmatched",status="404""#), 1.0);
    assert_eq!(
        count(r#"method="GET",route="/health/live",status="200""#),
        1.0
    );
    assert!(!text.contains(&missing) && !text.contains("/no/such/route"));
    assert!(
        text.contains("# TYPE http_server_request_duration_seconds histogram"),
        "{text}"
    );
    let ms_bucket = r#"http_server_request_duration_seconds_bucket{method="GET",route="/health/live",status="200",le="0.001"}"#;
    assert!(text.lines().any(|l| l.starts_with(ms_bucket)), "{text}");

    let metric = |name: &str| support::metrics::metric(&text, name);
    assert!(metric("process_resident_memory_bytes") > 1e6);
    assert!(metric("process_open_fds") >= 3.0);
    assert!(metric("process_cpu_seconds_total") >= 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let started = metric("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 600.0,
        "{started} vs {now}"
    );
    let build = format!(
        "order_service_build_info{{version=\"{}\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(&build) && l.ends_with(" 1")),
        "{text}"
    );
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_with_a_query_in_every_panel() {
    let dash: Value = serde_json::from_str(&read("grafana/order-service-dashboard.json"))
        .expect("the dashboard is JSON");
    assert_eq!(dash["uid"], "order-service");
    assert!(dash["schemaVersion"].as_u64().is_some());
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "duplicate id in {p}"
        );
        let grid = &p["gridPos"];
        let right = grid["x"].as_u64().expect("x") + grid["w"].as_u64().expect("w");
        assert!(right <= 24, "{} is wider than the grid", p["title"]);
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "unbalanced: {expr}"
            );
        }
    }
    let all = read("grafana/order-service-dashboard.json");
    for wanted in [
        "orders_dlq_records",
        "orders_dlq_oldest_pending_age_seconds",
        "orders_outbox_pending",
        "orders_outbox_oldest_age_seconds",
        "orders_events_published_total",
        "histogram_quantile(0.99, sum by (le) (rate(orders_publish_lag_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(orders_projection_lag_seconds_bucket",
        "orders_projector_lag_events",
        "orders_commands_accepted_total",
        "orders_commands_failed_total",
    ] {
        assert!(all.contains(wanted), "the dashboard does not show {wanted}");
    }
}

#[test]
fn the_alert_rules_cover_the_dlq_the_outbox_the_projector_and_the_bus() {
    let rules = read("prometheus/alerts.yml");
    for alert in [
        "OrderServiceDlqGrowing",
        "OrderServiceDlqPendingTooOld",
        "OrderServiceOutboxLagging",
        "OrderServiceProjectorLagging",
        "OrderServiceBusPublishFailing",
    ] {
        assert!(
            rules.contains(&format!("alert: {alert}")),
            "missing {alert}"
        );
    }
    // Each rule has a duration, a severity and a summary.
    let count = |s: &str| rules.matches(s).count();
    let alerts = count("- alert: ");
    assert_eq!(count("\n        for: "), alerts);
    assert_eq!(count("severity: "), alerts);
    assert_eq!(count("summary: "), alerts);
    assert!(!rules.contains('\t'), "YAML does not allow tabs");
}

/// `promtool check config` (which checks the rules too) and `promtool test
/// rules` (the alerts fire, once per job, on made-up series), when promtool
/// is installed (Debian: `apt-get install prometheus`).
#[test]
fn promtool_accepts_the_configuration_and_the_alert_tests_when_installed() {
    let dir = deploy_dir().join("prometheus");
    for args in [
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let Ok(out) = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
        else {
            eprintln!("promtool not installed: skipped");
            return;
        };
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
