// order-service operations dashboard: plain JavaScript, no dependencies.
// Reads /api/dlq/stats, /api/dlq/status/{PENDING,FAILED}, /api/dlq/jobs and
// /metrics every REFRESH_MS, drives replay / reset / skip of one DLQ record,
// and starts (after a dry run) and cancels bulk replay jobs. Every call
// carries the API key kept in sessionStorage (X-API-Key) when there is one.
// Data from the service is only ever written with textContent: failure
// reasons and payloads come from brokers and consumers and may hold markup.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  const FAILURES_SHOWN = 20;
  const JOBS_SHOWN = 10;
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
    preview: null, // the job request the shown dry run answered
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
    // The server's clock (whole seconds), for figures computed against now.
    const date = Date.parse(resp.headers.get("Date") || "");
    return { status: resp.status, ok: resp.ok, json, text, serverNow: isNaN(date) ? null : date };
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

  // ---- replay jobs -----------------------------------------------------------

  // Heads the job will work on: those that matched at its start, at most its limit.
  function jobTarget(job) {
    const limit = job.filter && Number(job.filter.limit);
    return limit > 0 ? Math.min(job.matched, limit) : job.matched;
  }

  // Heads per second from the job's own counters and timestamps: until its
  // end, or until now by the server's clock (the answer's Date header; its
  // last progress save when there is none), never the browser's.
  function jobRate(job, serverNow) {
    const updated = Date.parse(job.updatedAt);
    const end = job.finishedAt ? Date.parse(job.finishedAt) : Math.max(updated, serverNow || updated);
    const secs = (end - Date.parse(job.createdAt)) / 1000;
    return job.processed > 0 && secs > 0 ? job.processed / secs : null;
  }

  function jobEta(job, rate) {
    if (job.status !== "RUNNING") return "–";
    const left = Math.max(0, jobTarget(job) - job.processed);
    if (left === 0) return formatAge(0);
    return rate ? formatAge(left / rate) : "–";
  }

  function renderJobs(jobs, serverNow) {
    const rows = [];
    for (const job of jobs) {
      const tr = document.createElement("tr");
      tr.dataset.testid = "job-row";
      tr.dataset.jobId = job.id;
      tr.dataset.status = job.status;
      const rate = jobRate(job, serverNow);
      const cells = [
        formatTime(job.createdAt),
        job.status,
        job.processed + " / " + jobTarget(job),
        job.replayed + " / " + job.failed + " / " + job.skipped,
        rate === null ? "–" : rate.toFixed(2),
        jobEta(job, rate),
        job.principal,
      ];
      for (const c of cells) {
        const td = document.createElement("td");
        td.textContent = c === null || c === undefined ? "" : String(c);
        tr.appendChild(td);
      }
      tr.children[1].classList.add("status-" + String(job.status).toLowerCase());
      tr.children[1].title = job.message || "";
      const td = document.createElement("td");
      if (job.status === "RUNNING" && !state.forbidden.has("cancel")) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "secondary";
        b.textContent = "Cancel";
        b.dataset.testid = "job-cancel";
        b.addEventListener("click", () => cancelJob(job.id, b));
        td.appendChild(b);
      }
      tr.appendChild(td);
      rows.push(tr);
    }
    $("jobs-body").replaceChildren(...rows);
    $("jobs-empty").hidden = rows.length > 0;
  }

  function showJobsResult(text, isError) {
    showOutcome("jobs-result", text, isError);
  }

  // The filter as the form says; empty fields match anything.
  function jobRequest() {
    const body = {};
    const status = $("job-status").value;
    if (status) body.status = status;
    const eventType = $("job-event-type").value.trim();
    if (eventType) body.eventType = eventType;
    const aggregateId = $("job-aggregate-id").value.trim();
    if (aggregateId) body.aggregateId = aggregateId;
    const limit = $("job-limit").value.trim();
    if (limit) body.limit = Number(limit);
    return body;
  }

  function discardPreview() {
    state.preview = null;
    $("job-preview").hidden = true;
    $("job-confirm").disabled = false;
  }

  // Starting a job is admin-only: a 403 hides the form.
  function forbidJobForm(what, r) {
    state.forbidden.add("start-job");
    $("job-form").hidden = true;
    showJobsResult(describe(what, r), true);
  }

  async function dryRun() {
    const body = jobRequest();
    discardPreview();
    const r = await call("POST", "/api/dlq/replay", Object.assign({}, body, { dryRun: true }));
    if (r.status === 403) return forbidJobForm("dry run", r);
    if (!r.ok || !r.json) return showJobsResult(describe("dry run", r), true);
    const n = r.json.matched;
    const ids = r.json.eventIds || [];
    let text = "Dry run: " + n + " sequence head" + (n === 1 ? "" : "s") + " would be replayed";
    if (ids.length) text += " (oldest first: " + ids.slice(0, 3).join(", ") + (ids.length > 3 ? ", …" : "") + ")";
    text += n ? ". Start the job?" : ": nothing to start.";
    state.preview = body;
    $("job-preview-text").textContent = text;
    $("job-preview").dataset.matched = String(n);
    $("job-confirm").disabled = n === 0;
    $("job-preview").hidden = false;
    $("jobs-result").hidden = true;
  }

  async function startJob() {
    const body = state.preview;
    if (!body) return;
    $("job-confirm").disabled = true;
    const r = await call("POST", "/api/dlq/replay", body);
    discardPreview();
    if (r.status === 403) return forbidJobForm("start job", r);
    if (r.status === 202 && r.json) {
      showJobsResult("job " + r.json.id + " started: " + r.json.matched + " heads matched", false);
    } else {
      showJobsResult(describe("start job", r), true);
    }
    await refresh();
  }

  async function cancelJob(id, button) {
    button.disabled = true;
    const r = await call("DELETE", "/api/dlq/jobs/" + encodeURIComponent(id));
    if (r.status === 403) state.forbidden.add("cancel");
    if (r.ok && r.json) showJobsResult("job " + id + ": " + r.json.status, false);
    else showJobsResult(describe("cancel job " + id, r), true);
    await refresh();
  }

  // The jobs (operator and up) and whether the key may start one (admin:
  // the admin-only audit log answers it).
  function renderJobPanel(jobs, adminProbe, errors) {
    const forbidden = jobs.status === 403;
    $("jobs-forbidden").hidden = !forbidden;
    $("jobs").hidden = forbidden;
    if (forbidden) {
      $("jobs-empty").hidden = true;
    } else if (jobs.ok && jobs.json) {
      renderJobs(jobs.json.content, jobs.serverNow);
    } else {
      errors.push(describe("GET /api/dlq/jobs", jobs));
    }
    const admin = adminProbe.ok && !state.forbidden.has("start-job");
    $("job-form").hidden = !admin;
    if (!admin) discardPreview();
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
    showOutcome("action-result", text, isError);
  }

  // An action's outcome (or its error) in the result line `id`.
  function showOutcome(id, text, isError) {
    const el = $(id);
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
    const [stats, metrics, pending, failed, jobs, adminProbe] = await Promise.all([
      call("GET", "/api/dlq/stats"),
      call("GET", "/metrics"),
      list("PENDING"),
      list("FAILED"),
      call("GET", "/api/dlq/jobs?size=" + JOBS_SHOWN),
      call("GET", "/api/dlq/audit?size=1"),
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
    renderJobPanel(jobs, adminProbe, errors);
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
    $("job-form").addEventListener("submit", (e) => {
      e.preventDefault();
      dryRun();
    });
    // A changed filter needs a new dry run before it can start.
    $("job-form").addEventListener("input", discardPreview);
    $("job-confirm").addEventListener("click", startJob);
    $("job-discard").addEventListener("click", discardPreview);
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
