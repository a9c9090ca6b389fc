//! The operators' dashboard (`/dashboard`), against the real binary: its
//! files are served offline, and a headless Chromium, driven over the W3C
//! WebDriver protocol by chromedriver, shows the same figures as the API and
//! replays a parked event; with API keys required it sends the typed key,
//! hides what the key may not do (403) and skips a record after a prompt;
//! it starts a replay job after a dry run and cancels it; and it repairs a
//! dead-lettered message: an edit refused with its field errors (422), an
//! edit with its diff, four eyes (the author's approval refused, a second
//! admin's accepted), the history a viewer sees without the editor, the
//! replay preview and the replay, after which the projector has the order.
//!
//! Needs `chromium` and `chromedriver` on `PATH` (Debian packages `chromium`
//! and `chromium-driver`; `scripts/browser.sh` installs them and
//! `scripts/test.sh` runs it). Without them the browser test fails, saying so:
//! it is never skipped. `ORDER_TEST_CHROMIUM` / `ORDER_TEST_CHROMEDRIVER`
//! name other binaries.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::metrics::metric;
use support::process::free_port;
use support::{call, eventually, order_body, Service};

// ---------------------------------------------------------------------------
// Plain HTTP: the files, their types, nothing fetched from elsewhere.

/// Every `http://` or `https://` URL in `text`.
fn absolute_urls(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for scheme in ["http://", "https://"] {
        let mut rest = text;
        while let Some(i) = rest.find(scheme) {
            let url: String = rest[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !"\"'`)<>".contains(*c))
                .collect();
            out.push(url);
            rest = &rest[i + scheme.len()..];
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_offline_with_the_right_content_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &[]).await;

    for (path, content_type) in [
        ("/dashboard", "text/html"),
        ("/dashboard/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
    ] {
        let r = svc.call("GET", path, None).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.text);
        let ct = r.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with(content_type) && ct.contains("charset=utf-8"),
            "GET {path}: content-type {ct:?}, expected {content_type}"
        );
        assert!(r.text.len() > 500, "GET {path}: suspiciously short");
        let urls = absolute_urls(&r.text);
        assert!(
            urls.is_empty(),
            "GET {path} refers to other hosts: {urls:?}"
        );
        // No protocol-relative references either (`//cdn.example/...`).
        for attr in ["src=\"//", "href=\"//", "url(//", "@import"] {
            assert!(!r.text.contains(attr), "GET {path} contains {attr:?}");
        }
    }

    let html = svc.call("GET", "/dashboard", None).await.text;
    assert!(html.contains("src=\"/dashboard/app.js\""), "{html}");
    assert!(html.contains("href=\"/dashboard/app.css\""), "{html}");
    for id in [
        "dlq-pending",
        "dlq-failed",
        "dlq-replayed",
        "dlq-skipped",
        "dlq-total",
        "dlq-blocked",
        "dlq-oldest-pending-age",
        "outbox-pending",
        "outbox-oldest-age",
        "projector-lag",
        "publish-rate",
    ] {
        assert!(
            html.contains(&format!("id=\"{id}\" data-testid=\"{id}\"")),
            "the page has no stable id for {id}"
        );
    }
    let js = svc.call("GET", "/dashboard/app.js", None).await.text;
    for needle in [
        "X-API-Key",
        "sessionStorage",
        "/api/dlq/stats",
        "/metrics",
        "/api/dlq/skip/",
        "/revisions",
        "?preview=true",
    ] {
        assert!(js.contains(needle), "app.js does not use {needle}");
    }
}

// ---------------------------------------------------------------------------
// A minimal W3C WebDriver client over the test support's HTTP client.

/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn browser_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    names.iter().find_map(|n| find_on_path(n))
}

const INSTALL_HINT: &str =
    "install them with scripts/browser.sh (apt-get install chromium chromium-driver)";

/// chromedriver plus one headless Chromium session. Both are ended on drop.
struct Browser {
    addr: SocketAddr,
    session: String,
    driver: Child,
    log: PathBuf,
}

impl Browser {
    async fn start(dir: &Path) -> Browser {
        let Some(chromedriver) = browser_binary(
            "ORDER_TEST_CHROMEDRIVER",
            &["chromedriver", "chromium-driver"],
        ) else {
            panic!("chromedriver is not on PATH: the dashboard browser test cannot run; {INSTALL_HINT}");
        };
        let chromium = browser_binary(
            "ORDER_TEST_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let Some(chromium) = chromium else {
            panic!(
                "Chromium is not on PATH: the dashboard browser test cannot run; {INSTALL_HINT}"
            );
        };
        let port = free_port();
        let log = dir.join("chromedriver.log");
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; {INSTALL_HINT}",
                    chromedriver.display()
                )
            });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut b = Browser {
            addr,
            session: String::new(),
            driver,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Ok(r)) = tokio::time::timeout(
                Duration::from_secs(5),
                call(addr, "GET", "/status", None, &[]),
            )
            .await
            {
                if r.json()["value"]["ready"] == json!(true) {
                    break;
                }
            }
            if let Ok(Some(status)) = b.driver.try_wait() {
                panic!(
                    "chromedriver exited at start ({status}); log:\n{}",
                    b.driver_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready within 30 s; log:\n{}",
                b.driver_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--window-size=1400,1200",
                        ],
                    },
                }
            }
        });
        let started = Instant::now();
        let value = b
            .send("POST", "/session", Some(&caps), Duration::from_secs(90))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "headless Chromium ({}) could not be started by chromedriver: {e}\nchromedriver log:\n{}",
                    chromium.display(),
                    b.driver_log()
                )
            });
        b.session = value["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        eprintln!(
            "dashboard: {} started in {:.1} s",
            value["capabilities"]["browserVersion"]
                .as_str()
                .map_or_else(|| "Chromium".to_owned(), |v| format!("Chromium {v}")),
            started.elapsed().as_secs_f64()
        );
        b
    }

    /// Ends the session (and Chromium); the driver goes on drop.
    async fn quit(mut self) {
        let path = format!("/session/{}", self.session);
        if let Err(e) = self
            .send("DELETE", &path, None, Duration::from_secs(20))
            .await
        {
            eprintln!("dashboard: ending the browser session: {e}");
        }
        self.session.clear();
    }

    fn driver_log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        // The end tells why; the whole log can be long.
        let start = text.len().saturating_sub(6000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].to_owned()
    }

    /// One WebDriver command; `Ok(value)` or the error the driver reported.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, String> {
        let r = tokio::time::timeout(timeout, call(self.addr, method, path, body, &[]))
            .await
            .map_err(|_| format!("{method} {path}: no answer within {timeout:?}"))??;
        let v = r.json();
        if r.status == 200 {
            Ok(v["value"].clone())
        } else {
            Err(format!(
                "{method} {path} answered {}: {} {}",
                r.status, v["value"]["error"], v["value"]["message"]
            ))
        }
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.send(method, &path, body, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("WebDriver: {e}"))
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(&json!({ "url": url }))).await;
    }

    async fn script(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
        .await
    }

    async fn find(&self, css: &str) -> String {
        let el = self
            .cmd(
                "POST",
                "/element",
                Some(&json!({ "using": "css selector", "value": css })),
            )
            .await;
        el[ELEMENT_KEY]
            .as_str()
            .expect("an element reference")
            .to_owned()
    }

    /// Clicks the element matching `css` the way a user does (WebDriver
    /// Element Click: scrolled into view, must be visible and enabled).
    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.cmd("POST", &format!("/element/{id}/click"), Some(&json!({})))
            .await;
    }

    /// Replaces the text of the input matching `css`, typed as keys.
    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd("POST", &format!("/element/{id}/clear"), Some(&json!({})))
            .await;
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(&json!({ "text": text })),
        )
        .await;
    }

    /// Types `key` in the page's API key field and uses it.
    async fn enter_key(&self, key: &str) {
        self.type_into("#api-key", key).await;
        self.click("#key-save").await;
    }

    /// Waits for a `window.prompt`, types `answer` and accepts it; returns
    /// the prompt's question.
    async fn answer_prompt(&self, answer: &str) -> String {
        let path = format!("/session/{}/alert/text", self.session);
        let deadline = Instant::now() + Duration::from_secs(10);
        let question = loop {
            match self.send("GET", &path, None, Duration::from_secs(10)).await {
                Ok(v) => break v.as_str().unwrap_or_default().to_owned(),
                Err(e) if e.contains("no such alert") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("WebDriver: no prompt: {e}"),
            }
        };
        self.cmd("POST", "/alert/text", Some(&json!({ "text": answer })))
            .await;
        self.cmd("POST", "/alert/accept", Some(&json!({}))).await;
        question
    }

    /// Every element with an `id` and a `data-testid`: its text, whether it
    /// is shown, and its `data-*` values.
    async fn snapshot(&self) -> Value {
        self.script(
            r#"const out = {};
               for (const el of document.querySelectorAll("[id][data-testid]")) {
                 out[el.id] = { text: el.textContent.trim(), shown: el.closest("[hidden]") === null,
                                data: Object.assign({}, el.dataset) };
               }
               out.rows = Array.from(document.querySelectorAll("tr[data-testid=failure-row]"))
                 .map((tr) => tr.dataset.eventId);
               return out;"#,
            json!([]),
        )
        .await
    }

    /// The text of the result line `id` once an answer is shown there.
    async fn outcome(&self, secs: u64, id: &str) -> String {
        self.wait_for(secs, &format!("an outcome in #{id}"), |s| {
            let t = text(s, id);
            (s[id]["shown"] == json!(true) && t != "<missing>" && !t.is_empty())
                .then(|| t.to_owned())
        })
        .await
    }

    /// Polls the page until `check` accepts a snapshot; panics with the last
    /// one after `secs`.
    async fn wait_for<T>(&self, secs: u64, what: &str, check: impl Fn(&Value) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let snap = self.snapshot().await;
            if let Some(v) = check(&snap) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {secs} s waiting for {what}; the page shows:\n{snap:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After a failed test: ends Chromium through its driver
        // (synchronously: no runtime here), then the driver.
        if !self.session.is_empty() {
            if let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    s,
                    "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.session, self.addr
                );
                let _ = s.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn text<'a>(snap: &'a Value, id: &str) -> &'a str {
    snap[id]["text"].as_str().unwrap_or("<missing>")
}

/// The dashboard figures the API also answers, as the page shows them.
fn page_stats(snap: &Value) -> Vec<(&'static str, String)> {
    [
        ("pendingCount", "dlq-pending"),
        ("blockedCount", "dlq-blocked"),
        ("failedCount", "dlq-failed"),
        ("replayedCount", "dlq-replayed"),
        ("skippedCount", "dlq-skipped"),
        ("totalCount", "dlq-total"),
    ]
    .into_iter()
    .map(|(field, id)| (field, text(snap, id).to_owned()))
    .collect()
}

fn api_stats(stats: &Value) -> Vec<(&'static str, String)> {
    [
        "pendingCount",
        "blockedCount",
        "failedCount",
        "replayedCount",
        "skippedCount",
        "totalCount",
    ]
    .into_iter()
    .map(|field| (field, stats[field].to_string()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_apis_figures_and_replays_a_parked_event_in_a_real_browser() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &[]).await;

    // Park one event: the bus is down while an order is created.
    svc.call("POST", "/api/test/bus/down", None).await;
    let created = svc
        .call(
            "POST",
            "/api/orders",
            Some(&order_body("dash-cust", "rest-1")),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let order_id = created.json()["id"].as_str().expect("id").to_owned();
    let event_id: String = eventually(20, "the OrderCreated event parked", || async {
        let r = svc.call("GET", "/api/dlq/pending", None).await.json();
        r["content"]
            .as_array()?
            .iter()
            .find(|rec| rec["aggregateId"] == json!(order_id))
            .and_then(|rec| rec["eventId"].as_str().map(str::to_owned))
    })
    .await;
    svc.call("POST", "/api/test/bus/up", None).await;

    let browser = Browser::start(dir.path()).await;
    let started = Instant::now();
    browser
        .goto(&format!("http://{}/dashboard", svc.addr))
        .await;

    // The page's figures are the API's (read again until both agree: the
    // page refreshes on its own schedule).
    let deadline = Instant::now() + Duration::from_secs(20);
    let snap = loop {
        let snap = browser.snapshot().await;
        let stats = svc.call("GET", "/api/dlq/stats", None).await.json();
        let metrics = svc.call("GET", "/metrics", None).await.text;
        let refreshed = text(&snap, "refresh-count").parse::<u64>().unwrap_or(0) >= 1;
        let same_stats = page_stats(&snap) == api_stats(&stats);
        let same_outbox =
            text(&snap, "outbox-pending") == metric(&metrics, "orders_outbox_pending").to_string();
        let same_published = text(&snap, "events-published")
            == metric(&metrics, "orders_events_published_total").to_string();
        if refreshed && same_stats && same_outbox && same_published {
            assert_eq!(stats["pendingCount"], json!(1), "{stats}");
            let api_age = metric(&metrics, "orders_dlq_oldest_pending_age_seconds");
            let page_age: f64 = snap["dlq-oldest-pending-age"]["data"]["seconds"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no oldest pending age on the page: {snap:#}"));
            assert!(
                (page_age - api_age).abs() <= 10.0,
                "oldest pending age: page {page_age} s, API {api_age} s"
            );
            assert!(
                text(&snap, "dlq-oldest-pending-age").ends_with(" s"),
                "{snap:#}"
            );
            let lag = text(&snap, "projector-lag");
            assert!(lag.parse::<u64>().is_ok(), "projector lag {lag:?}");
            assert!(text(&snap, "outbox-oldest-age").ends_with(" s"), "{snap:#}");
            assert!(
                !snap["error"]["shown"].as_bool().unwrap_or(true),
                "{snap:#}"
            );
            break snap;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed the API's figures\npage: {:?}\nAPI: {:?}\nsnapshot: {snap:#}",
            page_stats(&snap),
            api_stats(&stats)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(snap["rows"], json!([event_id]), "recent failures: {snap:#}");
    let shown_after = started.elapsed();

    // Click the record: its detail, with the actions.
    browser
        .click(&format!("tr[data-event-id=\"{event_id}\"]"))
        .await;
    browser
        .wait_for(10, "the record's detail", |s| {
            (text(s, "detail-event-id") == event_id
                && text(s, "detail-status") == "PENDING"
                && s["action-replay"]["shown"] == json!(true))
            .then_some(())
        })
        .await;
    assert_eq!(
        text(&browser.snapshot().await, "detail-event-type"),
        "OrderCreated"
    );

    // Replay it from the page: the API shows it REPLAYED, and so does the page.
    browser.click("#action-replay").await;
    let result = browser.outcome(15, "action-result").await;
    assert!(
        result.contains("REPLAYED"),
        "replay outcome shown: {result}"
    );
    let record = svc
        .call("GET", &format!("/api/dlq/event/{event_id}"), None)
        .await
        .json();
    assert_eq!(record["status"], "REPLAYED", "{record}");
    let stats = svc.call("GET", "/api/dlq/stats", None).await.json();
    assert_eq!(stats["pendingCount"], json!(0), "{stats}");
    let snap = browser
        .wait_for(15, "the page to show the replay", |s| {
            (text(s, "detail-status") == "REPLAYED"
                && page_stats(s) == api_stats(&stats)
                && s["rows"] == json!([])
                && s["failures-empty"]["shown"] == json!(true))
            .then(|| s.clone())
        })
        .await;
    assert_eq!(text(&snap, "dlq-oldest-pending-age"), "–", "{snap:#}");

    // The page refreshes by itself (every 5 s): an order created now is
    // published by the relay, and the page shows the count and a rate.
    let created = svc
        .call(
            "POST",
            "/api/orders",
            Some(&order_body("dash-cust", "rest-2")),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let published = eventually(10, "the relay to publish the new order", || async {
        let m = svc.call("GET", "/metrics", None).await.text;
        let n = metric(&m, "orders_events_published_total");
        (n >= 1.0).then_some(n)
    })
    .await;
    let snap = browser
        .wait_for(15, "the auto-refresh to show a publish rate", |s| {
            let rate: f64 = text(s, "publish-rate").parse().ok()?;
            (text(s, "events-published") == published.to_string() && rate > 0.0).then(|| s.clone())
        })
        .await;
    eprintln!(
        "dashboard: figures = API's {:.1} s after load; replayed {event_id} from the page; \
         {} events published, rate {} events/s on an auto-refresh; whole test {:.1} s",
        shown_after.as_secs_f64(),
        text(&snap, "events-published"),
        text(&snap, "publish-rate"),
        t0.elapsed().as_secs_f64()
    );
    browser.quit().await;
}

const VIEWER_KEY: &str = "dash-viewer-key-0123456789";
const ADMIN_KEY: &str = "dash-admin-key-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_api_keys_the_dashboard_sends_the_key_and_hides_what_the_key_may_not_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = format!("dash-viewer:viewer:{VIEWER_KEY},dash-admin:admin:{ADMIN_KEY}");
    let svc = Service::start(dir.path(), &[("ORDER_API_KEYS", keys.as_str())]).await;
    let admin = async |method: &str, path: &str, body: Option<&Value>| {
        call(svc.addr, method, path, body, &[("x-api-key", ADMIN_KEY)])
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    };

    let down = admin("POST", "/api/test/bus/down", None).await;
    assert_eq!(down.status, 200, "{}", down.text);
    let mut parked = Vec::new();
    for customer in ["dash-auth-1", "dash-auth-2"] {
        let created = admin("POST", "/api/orders", Some(&order_body(customer, "rest-1"))).await;
        assert_eq!(created.status, 201, "{}", created.text);
        let order_id = created.json()["id"].as_str().expect("id").to_owned();
        let event_id: String = eventually(20, "the OrderCreated event parked", || async {
            let r = admin("GET", "/api/dlq/pending", None).await.json();
            r["content"]
                .as_array()?
                .iter()
                .find(|rec| rec["aggregateId"] == json!(order_id))
                .and_then(|rec| rec["eventId"].as_str().map(str::to_owned))
        })
        .await;
        parked.push(event_id);
    }
    let (event_id, to_skip) = (parked[0].clone(), parked[1].clone());
    admin("POST", "/api/test/bus/up", None).await;

    // The page itself is open; without a key its calls answer 401, shown.
    let browser = Browser::start(dir.path()).await;
    let page = format!("http://{}/dashboard", svc.addr);
    browser.goto(&page).await;
    browser
        .wait_for(15, "the 401 to be shown", |s| {
            (s["error"]["shown"] == json!(true)
                && text(s, "error").contains("401")
                && text(s, "dlq-pending") == "–")
                .then_some(())
        })
        .await;

    // A viewer key: the figures, and the record, but replaying answers 403,
    // which hides the button and shows the problem.
    browser.enter_key(VIEWER_KEY).await;
    browser
        .wait_for(15, "the figures with the viewer key", |s| {
            (text(s, "dlq-pending") == "2" && s["error"]["shown"] == json!(false)).then_some(())
        })
        .await;
    let stored = browser
        .script(
            "return sessionStorage.getItem(\"order-service.apiKey\");",
            json!([]),
        )
        .await;
    assert_eq!(
        stored,
        json!(VIEWER_KEY),
        "the key is kept in sessionStorage"
    );
    browser
        .click(&format!("tr[data-event-id=\"{event_id}\"]"))
        .await;
    browser
        .wait_for(10, "the record's detail", |s| {
            (text(s, "detail-status") == "PENDING" && s["action-replay"]["shown"] == json!(true))
                .then_some(())
        })
        .await;
    browser.click("#action-replay").await;
    let snap = browser
        .wait_for(10, "the 403 to hide Replay", |s| {
            (s["action-replay"]["shown"] == json!(false)
                && text(s, "action-result").contains("403"))
            .then(|| s.clone())
        })
        .await;
    let record = admin("GET", &format!("/api/dlq/event/{event_id}"), None)
        .await
        .json();
    assert_eq!(record["status"], "PENDING", "{record}");

    // An admin key: the button is back and the replay goes through.
    browser.enter_key(ADMIN_KEY).await;
    browser
        .wait_for(15, "Replay to be offered again", |s| {
            (s["action-replay"]["shown"] == json!(true) && text(s, "detail-status") == "PENDING")
                .then_some(())
        })
        .await;
    browser.click("#action-replay").await;
    browser
        .wait_for(15, "the replay with the admin key", |s| {
            (text(s, "detail-status") == "REPLAYED" && text(s, "dlq-replayed") == "1").then_some(())
        })
        .await;
    let record = admin("GET", &format!("/api/dlq/event/{event_id}"), None)
        .await
        .json();
    assert_eq!(record["status"], "REPLAYED", "{record}");

    // Skip asks for a reason (a prompt), and the record is SKIPPED with it.
    browser
        .click(&format!("tr[data-event-id=\"{to_skip}\"]"))
        .await;
    browser
        .wait_for(10, "the second record's detail", |s| {
            (text(s, "detail-event-id") == to_skip && text(s, "detail-status") == "PENDING")
                .then_some(())
        })
        .await;
    browser.click("#action-skip").await;
    let question = browser
        .answer_prompt("the customer cancelled by phone")
        .await;
    assert!(question.contains(&to_skip), "the prompt: {question}");
    browser
        .wait_for(15, "the skip", |s| {
            (text(s, "detail-status") == "SKIPPED"
                && text(s, "dlq-skipped") == "1"
                && text(s, "dlq-pending") == "0"
                && text(s, "action-result").contains("SKIPPED"))
            .then_some(())
        })
        .await;
    let record = admin("GET", &format!("/api/dlq/event/{to_skip}"), None)
        .await
        .json();
    assert_eq!(record["status"], "SKIPPED", "{record}");
    assert!(
        record["replayResult"]
            .as_str()
            .is_some_and(|r| r.contains("the customer cancelled by phone")),
        "{record}"
    );

    // The key outlives a reload of the tab.
    browser.goto(&page).await;
    browser
        .wait_for(15, "the figures after a reload", |s| {
            (text(s, "dlq-replayed") == "1" && s["error"]["shown"] == json!(false)).then_some(())
        })
        .await;
    eprintln!(
        "dashboard: with API keys: 401 shown without a key, viewer's Replay hidden after {:?}, admin replayed one record and skipped another",
        text(&snap, "action-result")
    );
    browser.quit().await;
}

/// The text of each cell of the replay-job row of `job_id`, and its status.
async fn job_row(browser: &Browser, job_id: &str) -> Option<(String, Vec<String>)> {
    let row = browser
        .script(
            r#"const tr = document.querySelector(`tr[data-job-id="${arguments[0]}"]`);
               return tr && { status: tr.dataset.status,
                              cells: Array.from(tr.children).map((td) => td.textContent.trim()) };"#,
            json!([job_id]),
        )
        .await;
    let cells = row["cells"].as_array()?;
    let cells = cells
        .iter()
        .map(|c| c.as_str().unwrap_or_default().to_owned())
        .collect();
    Some((row["status"].as_str()?.to_owned(), cells))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_starts_a_replay_job_after_a_dry_run_and_cancels_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One head a hundred seconds: the job is still running when cancelled.
    let svc = Service::start(dir.path(), &[("ORDER_DLQ_JOB_RATE", "0.01")]).await;
    svc.call("POST", "/api/test/bus/down", None).await;
    for customer in ["dash-job-1", "dash-job-2", "dash-job-3"] {
        let created = svc
            .call("POST", "/api/orders", Some(&order_body(customer, "rest-1")))
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
    }
    eventually(20, "three events parked", || async {
        let s = svc.call("GET", "/api/dlq/stats", None).await.json();
        (s["pendingCount"] == json!(3)).then_some(())
    })
    .await;
    svc.call("POST", "/api/test/bus/up", None).await;

    let browser = Browser::start(dir.path()).await;
    browser
        .goto(&format!("http://{}/dashboard", svc.addr))
        .await;
    browser
        .wait_for(15, "the job form and an empty job list", |s| {
            (s["job-form"]["shown"] == json!(true) && s["jobs-empty"]["shown"] == json!(true))
                .then_some(())
        })
        .await;

    // A dry run first: what the job would replay, and nothing started.
    browser.click("#job-status option[value=PENDING]").await;
    browser.type_into("#job-limit", "2").await;
    browser.click("#job-dry-run").await;
    let preview = browser
        .wait_for(15, "the dry run's answer", |s| {
            (s["job-preview"]["shown"] == json!(true))
                .then(|| text(s, "job-preview-text").to_owned())
        })
        .await;
    assert!(
        preview.contains("2 sequence heads would be replayed"),
        "{preview}"
    );
    let jobs = svc.call("GET", "/api/dlq/jobs", None).await.json();
    assert_eq!(
        jobs["totalElements"],
        json!(0),
        "a dry run starts no job: {jobs}"
    );

    // Confirmed: the job runs, and its row shows its progress, rate and ETA.
    browser.click("#job-confirm").await;
    let job_id = eventually(15, "the job in the API", || async {
        let jobs = svc.call("GET", "/api/dlq/jobs", None).await.json();
        jobs["content"][0]["id"].as_str().map(str::to_owned)
    })
    .await;
    let job = svc
        .call("GET", &format!("/api/dlq/jobs/{job_id}"), None)
        .await
        .json();
    assert_eq!(
        (
            &job["status"],
            &job["filter"]["status"],
            &job["filter"]["limit"]
        ),
        (&json!("RUNNING"), &json!("PENDING"), &json!(2)),
        "{job}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let cells = loop {
        if let Some((status, cells)) = job_row(&browser, &job_id).await {
            let rate = cells[4].parse::<f64>().unwrap_or(0.0);
            if status == "RUNNING" && cells[2] == "1 / 2" && rate > 0.0 {
                break cells;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the running job's progress never showed: {:?}",
            job_row(&browser, &job_id).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        cells[5].ends_with(" s") || cells[5].contains("min"),
        "ETA: {cells:?}"
    );
    assert!(
        text(&browser.snapshot().await, "jobs-result").contains("started"),
        "the start is reported"
    );

    // Cancel it from its row.
    browser
        .click(&format!(
            "tr[data-job-id=\"{job_id}\"] button[data-testid=job-cancel]"
        ))
        .await;
    browser
        .wait_for(15, "the cancelled job", |s| {
            text(s, "jobs-result").contains("CANCELLED").then_some(())
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while job_row(&browser, &job_id).await.map(|(s, _)| s) != Some("CANCELLED".to_owned()) {
        assert!(Instant::now() < deadline, "the row never showed CANCELLED");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let job = svc
        .call("GET", &format!("/api/dlq/jobs/{job_id}"), None)
        .await
        .json();
    assert_eq!(
        (&job["status"], &job["processed"]),
        (&json!("CANCELLED"), &json!(1)),
        "{job}"
    );
    eprintln!(
        "dashboard: dry run ({preview}), job started, shown {cells:?}, cancelled from the page"
    );
    browser.quit().await;
}

const ALICE_KEY: &str = "dash-alice-admin-key-0123456789";
const BOB_KEY: &str = "dash-bob-admin-key-0123456789";

/// The `data-*` values of every element matching `css`.
async fn rows(browser: &Browser, css: &str) -> Vec<Value> {
    let v = browser
        .script(
            r#"return Array.from(document.querySelectorAll(arguments[0]))
                 .map((el) => Object.assign({ text: el.textContent.trim() }, el.dataset));"#,
            json!([css]),
        )
        .await;
    v.as_array().cloned().unwrap_or_default()
}

/// Uses `key` from now on and waits for a refresh with it.
async fn use_key(browser: &Browser, key: &str) {
    browser.enter_key(key).await;
    browser
        .wait_for(15, "a refresh with the new key", |s| {
            (s["error"]["shown"] == json!(false) && text(s, "refresh-state") == "up to date")
                .then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_edits_a_dead_lettered_message_with_four_eyes_previews_and_replays_it() {
    use order_core::ports::{BusMessage, EventBus};

    let dir = tempfile::tempdir().expect("tempdir");
    let keys = format!(
        "dash-alice:admin:{ALICE_KEY},dash-bob:admin:{BOB_KEY},dash-viewer:viewer:{VIEWER_KEY}"
    );
    let svc = Service::start(
        dir.path(),
        &[
            ("ORDER_API_KEYS", keys.as_str()),
            ("ORDER_DLQ_EDIT_APPROVAL", "true"),
        ],
    )
    .await;
    let api = async |method: &str, path: &str| {
        call(svc.addr, method, path, None, &[("x-api-key", ALICE_KEY)])
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
            .json()
    };

    // The poison goes on order-events like any producer's message: the
    // projector dead-letters it and the recorder keeps it, consumer-side.
    let (order_id, event_uuid) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let (order, event_id) = (order_id.to_string(), event_uuid.to_string());
    let customer = "dash-repair-cust";
    let original = support::poison_created(order_id, event_uuid, customer);
    let sent = svc
        .bus()
        .publish(&[BusMessage {
            topic: "order-events".into(),
            key: order.clone(),
            payload: original.to_string().into_bytes(),
            headers: vec![],
        }])
        .await;
    assert!(sent.iter().all(Result::is_ok), "{sent:?}");
    let record = eventually(20, "the poison recorded in the DLQ", || async {
        let r = api("GET", &format!("/api/dlq/event/{event_id}")).await;
        (r["status"] == json!("PENDING")).then_some(r)
    })
    .await;
    assert_eq!(
        (&record["source"], &record["consumerGroup"]),
        (&json!("CONSUMER"), &json!("order-projector")),
        "{record}"
    );

    let browser = Browser::start(dir.path()).await;
    browser
        .goto(&format!("http://{}/dashboard", svc.addr))
        .await;
    use_key(&browser, ALICE_KEY).await;
    browser
        .click(&format!("tr[data-event-id=\"{event_id}\"]"))
        .await;
    let snap = browser
        .wait_for(10, "the record with an empty history and the editor", |s| {
            (text(s, "detail-event-id") == event_id
                && s["editor"]["shown"] == json!(true)
                && s["revisions-empty"]["shown"] == json!(true))
            .then(|| s.clone())
        })
        .await;
    assert_eq!(text(&snap, "detail-consumer-group"), "order-projector");
    let prefilled = browser
        .script(
            "return document.getElementById('editor-message').value;",
            json!([]),
        )
        .await;
    let prefilled: Value = serde_json::from_str(prefilled.as_str().unwrap_or_default())
        .expect("the editor holds the message as JSON");
    assert_eq!(prefilled, original, "pre-filled with the original");

    // An invalid edit: the 422's field message next to the editor, nothing stored.
    let mut invalid = original.clone();
    invalid["data"]["totalAmount"] = json!("0.00");
    invalid["data"]["items"][0]["quantity"] = json!(0);
    browser
        .type_into("#editor-message", &invalid.to_string())
        .await;
    browser
        .type_into("#editor-reason", "old producer left out the total")
        .await;
    browser.click("#editor-save").await;
    let refusal = browser.outcome(10, "editor-result").await;
    assert!(
        refusal.contains("422") && refusal.contains("data.items[0].quantity"),
        "the field is named: {refusal}"
    );
    let history = api("GET", &format!("/api/dlq/{event_id}/revisions")).await;
    assert_eq!(history["revisions"], json!([]), "nothing stored: {history}");

    // The fix: the diff first, then saved, awaiting a second admin.
    let mut fixed = original.clone();
    fixed["data"]["totalAmount"] = json!("25.00");
    browser
        .type_into("#editor-message", &fixed.to_string())
        .await;
    browser.click("#editor-diff").await;
    let diff = browser
        .wait_for(10, "the diff", |s| {
            (s["editor-diff-out"]["shown"] == json!(true))
                .then(|| text(s, "editor-diff-out").to_owned())
        })
        .await;
    assert_eq!(diff, "add /data/totalAmount: \"25.00\"");
    browser.click("#editor-save").await;
    browser
        .wait_for(10, "revision 1 awaiting approval", |s| {
            (text(s, "editor-result").contains("AWAITING_APPROVAL")
                && s["review"]["shown"] == json!(true))
            .then_some(())
        })
        .await;
    let revs = rows(&browser, "tr[data-testid=revision-row]").await;
    assert_eq!(revs.len(), 1, "{revs:?}");
    assert_eq!(
        (&revs[0]["revision"], &revs[0]["state"]),
        (&json!("1"), &json!("AWAITING_APPROVAL"))
    );
    let line = revs[0]["text"].as_str().unwrap_or_default();
    assert!(
        line.contains("dash-alice") && line.contains("add /data/totalAmount: \"25.00\""),
        "{line}"
    );

    // Its author may not approve it: the 403 is shown, nothing changes.
    browser.click("#review-approve").await;
    let forbidden = browser.outcome(10, "review-result").await;
    assert!(forbidden.contains("403"), "{forbidden}");
    let history = api("GET", &format!("/api/dlq/{event_id}/revisions")).await;
    assert_eq!(history["revisions"][0]["state"], "AWAITING_APPROVAL");

    // A second admin approves it.
    use_key(&browser, BOB_KEY).await;
    browser.type_into("#review-note", "total checked").await;
    browser.click("#review-approve").await;
    browser
        .wait_for(10, "revision 1 approved", |s| {
            (text(s, "review-result").contains("APPROVED") && s["review"]["shown"] == json!(false))
                .then_some(())
        })
        .await;
    let history = api("GET", &format!("/api/dlq/{event_id}/revisions")).await;
    assert_eq!(
        (
            &history["revisions"][0]["state"],
            &history["revisions"][0]["reviewer"]
        ),
        (&json!("APPROVED"), &json!("dash-bob")),
        "{history}"
    );

    // A viewer sees the history and its diff, but no editor and no buttons.
    use_key(&browser, VIEWER_KEY).await;
    let snap = browser
        .wait_for(10, "the viewer's detail", |s| {
            (s["revisions-table"]["shown"] == json!(true) && s["editor"]["shown"] == json!(false))
                .then(|| s.clone())
        })
        .await;
    for hidden in ["review", "action-preview", "edit-refused"] {
        assert_eq!(snap[hidden]["shown"], json!(false), "{hidden}: {snap:#}");
    }
    let revs = rows(&browser, "tr[data-testid=revision-row]").await;
    let line = revs[0]["text"].as_str().unwrap_or_default();
    assert!(
        revs[0]["state"] == json!("APPROVED") && line.contains("add /data/totalAmount: \"25.00\""),
        "{revs:?}"
    );

    // The preview: revision 1, to the redelivery topic for the projector,
    // and the order it would create in the read model.
    use_key(&browser, BOB_KEY).await;
    browser.click("#action-preview").await;
    let snap = browser
        .wait_for(10, "the preview", |s| {
            (s["preview"]["shown"] == json!(true)).then(|| s.clone())
        })
        .await;
    assert_eq!(
        snap["preview-summary"]["data"]["replayable"], "true",
        "{snap:#}"
    );
    assert_eq!(
        snap["preview-redeliver-to"]["data"]["group"],
        "order-projector"
    );
    let msgs = rows(&browser, "tr[data-testid=preview-message]").await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(
        (
            &msgs[0]["topic"],
            &msgs[0]["revision"],
            &msgs[0]["willSend"]
        ),
        (
            &json!("order-events-redelivery"),
            &json!("1"),
            &json!("true")
        ),
    );
    assert!(
        msgs[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("orders_approved_by: dash-bob")),
        "{msgs:?}"
    );
    let fields = rows(&browser, "tr[data-testid=preview-field]").await;
    let total = fields
        .iter()
        .find(|f| f["field"] == "totalAmount")
        .unwrap_or_else(|| panic!("no totalAmount in the read model: {fields:?}"));
    assert_eq!(total["changed"], "true");
    assert!(
        total["text"].as_str().is_some_and(|t| t.ends_with("25.00")),
        "{total}"
    );
    assert!(
        text(&snap, "preview-steps").starts_with("APPLIED"),
        "{snap:#}"
    );

    // Replay from the preview: REPLAYED, and the projector creates the order.
    browser.click("#preview-replay").await;
    browser
        .wait_for(15, "the replay", |s| {
            (text(s, "detail-status") == "REPLAYED" && s["editor"]["shown"] == json!(false))
                .then_some(())
        })
        .await;
    let record = api("GET", &format!("/api/dlq/event/{event_id}")).await;
    assert_eq!(record["status"], "REPLAYED", "{record}");
    let projected = eventually(15, "the order in the read model", || async {
        let list = api("GET", &format!("/api/orders/customer/{customer}")).await;
        (list["totalElements"] == json!(1)).then(|| list["content"][0].clone())
    })
    .await;
    assert_eq!(
        (&projected["id"], &projected["totalAmount"]),
        (&json!(order), &json!("25.00")),
        "{projected}"
    );
    eprintln!(
        "dashboard: repair: 422 shown ({}), diff {diff:?}, author's approval refused ({}), approved by a second admin, previewed and replayed",
        refusal.replace('\n', " | "),
        forbidden
    );
    browser.quit().await;
}
