// order-service operations dashboard: plain JavaScript, no dependencies.
// Reads /api/dlq/stats, /api/dlq/status/{PENDING,FAILED} and /metrics every
// REFRESH_MS, and drives replay / reset / skip of one DLQ record. Every call
// carries the API key kept in sessionStorage (X-API-Key) when there is one.
// Data from the service is only ever written with textContent: failure
// reasons and payloads come from brokers and consumers and may hold markup.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  const FAILURES_SHOWN = 20;
  const KEY_STORAGE = "order-service.apiKey";

  const $ = (id) => document.getElementById(id);
  const state = {
    selected: null, // event id shown in the detail panel
    forbidden: new Set(), // actions the key may not use (403): their buttons are hidden
    lastPublished: null, // {value, at} of orders_events_published_total
    key: "",
    refreshing: null,
    again: false,
    refreshes: 0,
  };

  // ---- HTTP ----------------------------------------------------------------

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || "";
    } catch (_) {
      return ""; // storage disabled: the key lives for this page only
    }
  }

  function saveKey(key) {
    state.key = key;
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch (_) {
      /* storage disabled */
    }
    state.forbidden.clear();
  }

  async function call(method, path, body) {
    const headers = { Accept: "application/json, application/problem+json, text/plain" };
    if (state.key) headers["X-API-Key"] = state.key;
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      return { status: 0, ok: false, json: null, text: "", error: "network error: " + e.message };
    }
    const text = await resp.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch (_) {
      /* not JSON (metrics text, or an empty body) */
    }
    return { status: resp.status, ok: resp.ok, json, text };
  }

  // One line for an error answer: the problem's title and detail when it is one.
  function describe(what, r) {
    if (r.status === 0) return what + ": " + r.error;
    const p = r.json;
    let msg = what + " answered " + r.status;
    if (p && (p.title || p.detail)) {
      msg += " " + (p.title || "") + (p.detail ? ": " + p.detail : "");
    } else if (r.text) {
      msg += ": " + r.text.slice(0, 200);
    }
    if (r.status === 401) msg += " (enter an API key above)";
    if (r.status === 403) msg += " (this API key may not do that)";
    return msg;
  }

  // ---- formatting ------------------------------------------------------------

  function setText(id, value) {
    const el = $(id);
    if (el) el.textContent = value === null || value === undefined || value === "" ? "–" : String(value);
  }

  function formatAge(secs) {
    if (secs === null || secs === undefined || !isFinite(secs)) return "–";
    const s = Math.max(0, Math.floor(secs));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  function setAge(id, secs) {
    const el = $(id);
    el.textContent = formatAge(secs);
    el.dataset.seconds = secs === null || secs === undefined || !isFinite(secs) ? "" : String(Math.floor(secs));
  }

  function formatTime(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return isNaN(d.getTime()) ? iso : d.toLocaleString();
  }

  // Prometheus text format → Map("name{labels}" → number).
  function parseMetrics(text) {
    const out = new Map();
    for (const raw of text.split("\n")) {
      const line = raw.trim();
      if (!line || line.startsWith("#")) continue;
      const i = line.lastIndexOf(" ");
      if (i <= 0) continue;
      const v = Number(line.slice(i + 1));
      if (!Number.isNaN(v)) out.set(line.slice(0, i).trim(), v);
    }
    return out;
  }

  // ---- rendering -------------------------------------------------------------

  function showError(messages) {
    const el = $("error");
    if (messages.length === 0) {
      el.hidden = true;
      el.textContent = "";
    } else {
      el.hidden = false;
      el.textContent = messages.join("\n");
    }
  }

  function renderStats(s) {
    setText("dlq-pending", s.pendingCount);
    setText("dlq-blocked", s.blockedCount);
    setText("dlq-failed", s.failedCount);
    setText("dlq-replayed", s.replayedCount);
    setText("dlq-skipped", s.skippedCount);
    setText("dlq-total", s.totalCount);
  }

  function renderMetrics(m) {
    setText("outbox-pending", m.get("orders_outbox_pending"));
    setAge("outbox-oldest-age", m.get("orders_outbox_oldest_age_seconds"));
    setText("projector-lag", m.get("orders_projector_lag_events"));
    const busDown = m.get("orders_bus_down");
    setText("bus-down", busDown === undefined ? null : busDown ? "ON (bus down)" : "off");
    const published = m.get("orders_events_published_total");
    setText("events-published", published);
    const now = performance.now();
    const prev = state.lastPublished;
    if (published !== undefined && prev && published >= prev.value && now > prev.at) {
      const rate = (published - prev.value) / ((now - prev.at) / 1000);
      setText("publish-rate", rate.toFixed(1));
    } else {
      setText("publish-rate", null); // first sample, or the counter restarted
    }
    state.lastPublished = published === undefined ? null : { value: published, at: now };
  }

  // Prefers the server's own figure (/metrics), which does not depend on the
  // browser's clock; falls back to the stats' failure time.
  function renderOldestPending(stats, metrics) {
    if (!stats || stats.oldestPendingFailureTime === null) {
      setAge("dlq-oldest-pending-age", null);
      return;
    }
    const fromServer = metrics && metrics.get("orders_dlq_oldest_pending_age_seconds");
    if (fromServer !== undefined && fromServer !== null) {
      setAge("dlq-oldest-pending-age", fromServer);
    } else {
      const t = Date.parse(stats.oldestPendingFailureTime);
      setAge("dlq-oldest-pending-age", isNaN(t) ? null : (Date.now() - t) / 1000);
    }
  }

  function renderFailures(records) {
    const body = $("failures-body");
    const rows = [];
    for (const r of records) {
      const tr = document.createElement("tr");
      tr.dataset.testid = "failure-row";
      tr.dataset.eventId = r.eventId;
      tr.tabIndex = 0;
      tr.title = "show record " + r.eventId;
      if (r.eventId === state.selected) tr.classList.add("selected");
      const cells = [
        formatTime(r.failureTime),
        r.status + (r.blockedBy ? " (blocked)" : ""),
        r.eventType,
        r.aggregateId,
        r.eventId,
        r.failureReason,
      ];
      for (const c of cells) {
        const td = document.createElement("td");
        td.textContent = c === null || c === undefined ? "" : String(c);
        td.title = td.textContent; // the reason column is cut to one line
        tr.appendChild(td);
      }
      tr.querySelector("td:nth-child(2)").classList.add("status-" + String(r.status).toLowerCase());
      tr.addEventListener("click", () => selectRecord(r.eventId));
      tr.addEventListener("keydown", (e) => {
        if (e.key === "Enter") selectRecord(r.eventId);
      });
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    $("failures-empty").hidden = rows.length > 0;
  }

  function renderDetail(r) {
    $("detail").hidden = false;
    $("detail").dataset.status = r.status;
    setText("detail-event-id", r.eventId);
    setText("detail-status", r.status);
    setText("detail-event-type", r.eventType);
    setText("detail-aggregate-id", r.aggregateId);
    setText("detail-version", r.version);
    setText("detail-source", r.source);
    setText("detail-blocked-by", r.blockedBy);
    setText("detail-failure-time", formatTime(r.failureTime));
    setText("detail-failure-reason", r.failureReason);
    setText("detail-replay-attempts", r.replayAttempts);
    setText(
      "detail-replay-result",
      r.replayAttemptTime ? formatTime(r.replayAttemptTime) + ": " + (r.replayResult || "") : null,
    );
    let original = r.originalEvent || "";
    try {
      original = JSON.stringify(JSON.parse(original), null, 2);
    } catch (_) {
      /* shown as stored */
    }
    $("detail-original").textContent = original;
    const unresolved = r.status === "PENDING" || r.status === "FAILED";
    const buttons = { replay: unresolved, reset: r.status === "FAILED", skip: unresolved };
    for (const [action, enabled] of Object.entries(buttons)) {
      const b = $("action-" + action);
      b.hidden = state.forbidden.has(action);
      b.disabled = !enabled;
    }
  }

  function showResult(text, isError) {
    const el = $("action-result");
    el.hidden = false;
    el.textContent = text;
    el.classList.toggle("error", !!isError);
    el.dataset.outcome = isError ? "error" : "ok";
  }

  // ---- data flow -------------------------------------------------------------

  async function loadDetail() {
    const id = state.selected;
    if (!id) return null;
    const r = await call("GET", "/api/dlq/event/" + encodeURIComponent(id));
    if (id !== state.selected) return null; // another row was clicked meanwhile
    if (r.ok && r.json) {
      renderDetail(r.json);
      return null;
    }
    return describe("GET /api/dlq/event/" + id, r);
  }

  async function selectRecord(id) {
    state.selected = id;
    $("action-result").hidden = true;
    for (const tr of $("failures-body").children) {
      tr.classList.toggle("selected", tr.dataset.eventId === id);
    }
    const err = await loadDetail();
    if (err) {
      $("detail").hidden = false;
      setText("detail-event-id", id);
      showResult(err, true);
    }
  }

  async function refreshOnce() {
    const list = (status) => call("GET", "/api/dlq/status/" + status + "?page=0&size=" + FAILURES_SHOWN);
    const [stats, metrics, pending, failed] = await Promise.all([
      call("GET", "/api/dlq/stats"),
      call("GET", "/metrics"),
      list("PENDING"),
      list("FAILED"),
    ]);
    const errors = [];
    if (stats.ok && stats.json) renderStats(stats.json);
    else errors.push(describe("GET /api/dlq/stats", stats));
    const m = metrics.ok ? parseMetrics(metrics.text) : null;
    if (m) renderMetrics(m);
    else errors.push(describe("GET /metrics", metrics));
    if (stats.ok && stats.json) renderOldestPending(stats.json, m);
    if (pending.ok && failed.ok) {
      const all = pending.json.content.concat(failed.json.content);
      all.sort((a, b) => Date.parse(b.failureTime) - Date.parse(a.failureTime) || b.id - a.id);
      renderFailures(all.slice(0, FAILURES_SHOWN));
    } else {
      errors.push(describe("GET /api/dlq/status", pending.ok ? failed : pending));
    }
    const detailErr = await loadDetail();
    if (detailErr) errors.push(detailErr);
    showError(errors);
    state.refreshes += 1;
    setText("refresh-count", state.refreshes);
    setText("last-refresh", new Date().toLocaleTimeString());
    setText("refresh-state", errors.length ? "refreshed with errors" : "up to date");
    $("refresh-state").dataset.ok = errors.length ? "false" : "true";
  }

  // Refreshes never overlap; a request during one runs once after it.
  async function refresh() {
    if (state.refreshing) {
      state.again = true;
      return state.refreshing;
    }
    state.refreshing = (async () => {
      do {
        state.again = false;
        try {
          await refreshOnce();
        } catch (e) {
          showError(["refresh failed: " + e.message]);
        }
      } while (state.again);
      state.refreshing = null;
    })();
    return state.refreshing;
  }

  const ACTIONS = {
    replay: (id) => call("POST", "/api/dlq/replay/" + encodeURIComponent(id)),
    reset: (id) => call("PUT", "/api/dlq/reset/" + encodeURIComponent(id)),
    skip: (id) => {
      const reason = window.prompt("Skip event " + id + ": why will it never be published?");
      if (reason === null) return null; // cancelled
      if (!reason.trim()) {
        showResult("skipping needs a reason", true);
        return null;
      }
      return call("POST", "/api/dlq/skip/" + encodeURIComponent(id), { reason: reason.trim() });
    },
  };

  async function act(action) {
    const id = state.selected;
    if (!id) return;
    const pending = ACTIONS[action](id);
    if (!pending) return;
    const button = $("action-" + action);
    button.disabled = true;
    const r = await pending;
    if (r.status === 403) {
      state.forbidden.add(action);
      button.hidden = true;
    }
    const body = r.json;
    if (r.ok) {
      const what = body && body.status ? body.status : "done";
      showResult(action + ": " + what + (body && body.message ? " — " + body.message : ""), false);
    } else if (body && body.success === false && body.message) {
      // A replay the bus refused (502): the outcome, not a problem.
      showResult(action + ": " + body.status + " — " + body.message, true);
    } else {
      showResult(describe(action + " " + id, r), true);
    }
    await refresh();
  }

  // ---- wiring ----------------------------------------------------------------

  function init() {
    state.key = storedKey();
    $("api-key").value = state.key;
    $("key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      saveKey($("api-key").value.trim());
      refresh();
    });
    $("key-clear").addEventListener("click", () => {
      $("api-key").value = "";
      saveKey("");
      refresh();
    });
    for (const action of Object.keys(ACTIONS)) {
      $("action-" + action).addEventListener("click", () => act(action));
    }
    $("detail-close").addEventListener("click", () => {
      state.selected = null;
      $("detail").hidden = true;
      for (const tr of $("failures-body").children) tr.classList.remove("selected");
    });
    refresh();
    setInterval(refresh, REFRESH_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
