// order-service operations dashboard: plain JavaScript, no dependencies.
// Reads /api/dlq/stats, /api/dlq/status/{PENDING,FAILED}, /api/dlq/jobs and
// /metrics every REFRESH_MS, drives replay / reset / skip of one DLQ record,
// shows its revisions with their diffs, edits a consumer-side message (a
// new revision), approves or rejects one, previews a replay, and starts
// (after a dry run) and cancels bulk replay jobs. Every call carries the
// API key kept in sessionStorage (X-API-Key) when there is one.
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
    admin: false, // the key may use admin-only calls (the audit log answered)
    record: null, // the record shown in the detail panel, with its revisions
    editorKey: null, // record and revision the editor was filled from
    editorBase: null, // that message, parsed: what "Show diff" compares with
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

  // One line for an error answer: the problem's title and detail when it is
  // one. `roleHint`: a 403 means the key's role (not, say, four eyes).
  function describe(what, r, roleHint = true) {
    if (r.status === 0) return what + ": " + r.error;
    const p = r.json;
    let msg = what + " answered " + r.status;
    if (p && (p.title || p.detail)) {
      msg += " " + (p.title || "") + (p.detail ? ": " + p.detail : "");
    } else if (r.text) {
      msg += ": " + r.text.slice(0, 200);
    }
    if (r.status === 401) msg += " (enter an API key above)";
    if (r.status === 403 && roleHint) msg += " (this API key may not do that)";
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
    setText("detail-consumer-group", r.consumerGroup);
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
    const unresolved = isUnresolved(r);
    const buttons = { replay: unresolved, reset: r.status === "FAILED", skip: unresolved };
    for (const [action, enabled] of Object.entries(buttons)) {
      const b = $("action-" + action);
      b.hidden = state.forbidden.has(action);
      b.disabled = !enabled;
    }
    // The preview is admin-only, like the replay it answers for.
    $("action-preview").hidden = !state.admin || state.forbidden.has("preview");
    $("action-preview").disabled = !unresolved;
    $("preview-replay").hidden = state.forbidden.has("replay");
    $("preview-replay").disabled = !unresolved;
    renderRepair(r);
  }

  const isUnresolved = (r) => r.status === "PENDING" || r.status === "FAILED";

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

  // ---- DLQ repair: revisions, the editor, four eyes, the replay preview --------

  function parseJson(text) {
    try {
      return { ok: true, value: JSON.parse(text) };
    } catch (e) {
      return { ok: false, error: e.message };
    }
  }

  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const show = (v) => (v === undefined ? "(none)" : JSON.stringify(v));

  // The value at an RFC 6901 pointer, or {found: false}.
  function pointerGet(doc, path) {
    let cur = doc;
    if (path === "") return { found: true, value: cur };
    for (const raw of path.split("/").slice(1)) {
      const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
      if (Array.isArray(cur) && /^(0|[1-9][0-9]*)$/.test(key) && Number(key) < cur.length) {
        cur = cur[Number(key)];
      } else if (isObject(cur) && Object.prototype.hasOwnProperty.call(cur, key)) {
        cur = cur[key];
      } else {
        return { found: false };
      }
    }
    return { found: true, value: cur };
  }

  const escapeKey = (k) => String(k).replace(/~/g, "~0").replace(/\//g, "~1");

  const sameJson = (a, b) => JSON.stringify(a) === JSON.stringify(b);

  // RFC 6902 operations turning `a` into `b`, member by member and index by
  // index: what the editor shows before saving (the server stores its own).
  function diffJson(a, b, path, out) {
    if (isObject(a) && isObject(b)) {
      for (const k of Object.keys(a)) {
        const p = path + "/" + escapeKey(k);
        if (!Object.prototype.hasOwnProperty.call(b, k)) out.push({ op: "remove", path: p });
        else diffJson(a[k], b[k], p, out);
      }
      for (const k of Object.keys(b)) {
        if (!Object.prototype.hasOwnProperty.call(a, k)) {
          out.push({ op: "add", path: path + "/" + escapeKey(k), value: b[k] });
        }
      }
    } else if (Array.isArray(a) && Array.isArray(b)) {
      const common = Math.min(a.length, b.length);
      for (let i = 0; i < common; i++) diffJson(a[i], b[i], path + "/" + i, out);
      for (let i = common; i < b.length; i++) out.push({ op: "add", path: path + "/" + i, value: b[i] });
      for (let i = a.length - 1; i >= common; i--) out.push({ op: "remove", path: path + "/" + i });
    } else if (!sameJson(a, b)) {
      out.push({ op: "replace", path, value: b });
    }
    return out;
  }

  // One readable line per operation. With the message it applied to
  // (`base`, null when the key may not see payloads) a line names the old
  // value too: `replace /data/x: old → new`; without it, the op as is.
  function opLine(op, base) {
    const old = base === null ? { found: false } : pointerGet(base, op.path);
    const known = base !== null && old.found;
    switch (op.op) {
      case "add":
        return known
          ? "add " + op.path + ": " + show(old.value) + " → " + show(op.value)
          : "add " + op.path + ": " + show(op.value);
      case "replace":
        return known
          ? "replace " + op.path + ": " + show(old.value) + " → " + show(op.value)
          : "replace " + op.path + ": → " + show(op.value);
      case "remove":
        return known ? "remove " + op.path + ": " + show(old.value) : "remove " + op.path;
      case "move":
      case "copy":
        return op.op + " " + op.from + " → " + op.path;
      case "test":
        return "test " + op.path + " = " + show(op.value);
      default:
        return JSON.stringify(op);
    }
  }

  function diffText(patch, base) {
    const ops = Array.isArray(patch) ? patch : [];
    return ops.length ? ops.map((op) => opLine(op, base)).join("\n") : "(no changes)";
  }

  // The revision a replay sends: the latest not rejected; null: the original.
  function currentRevision(revisions) {
    for (let i = revisions.length - 1; i >= 0; i--) {
      if (revisions[i].state !== "REJECTED") return revisions[i];
    }
    return null;
  }

  // The message revision `n` holds (0: the original), parsed; null when the
  // key may not see it (below operator) or it is not JSON.
  function messageAt(record, n) {
    let text = record.originalEvent;
    if (n) {
      const rev = (record.revisions || []).find((x) => x.revision === n);
      text = rev && rev.payload;
    }
    if (typeof text !== "string") return null;
    const parsed = parseJson(text);
    return parsed.ok ? parsed.value : null;
  }

  function cell(tr, value, cls) {
    const td = document.createElement("td");
    if (value instanceof Node) td.appendChild(value);
    else td.textContent = value === null || value === undefined || value === "" ? "–" : String(value);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function renderRevisions(record, current) {
    const revisions = record.revisions || [];
    setText(
      "revisions-approval",
      record.approvalRequired ? "four eyes: a second admin approves each revision" : "no approval needed",
    );
    const rows = revisions.map((rev) => {
      const tr = document.createElement("tr");
      tr.dataset.testid = "revision-row";
      tr.dataset.revision = String(rev.revision);
      tr.dataset.state = rev.state;
      if (current && current.revision === rev.revision) tr.classList.add("current");
      cell(tr, rev.revision + (current && current.revision === rev.revision ? " (current)" : ""));
      cell(tr, rev.state, "status-" + String(rev.state).toLowerCase());
      cell(tr, rev.author);
      cell(tr, rev.reason);
      cell(tr, formatTime(rev.createdAt));
      const reviewed = rev.reviewer
        ? rev.reviewer + " at " + formatTime(rev.reviewedAt) + (rev.reviewNote ? ": " + rev.reviewNote : "")
        : null;
      cell(tr, reviewed);
      const pre = document.createElement("pre");
      pre.className = "diff";
      pre.dataset.testid = "revision-diff";
      const from = rev.basedOn ? "revision " + rev.basedOn : "the original";
      pre.textContent = "from " + from + "\n" + diffText(rev.patch, messageAt(record, rev.basedOn));
      cell(tr, pre);
      return tr;
    });
    $("revisions-body").replaceChildren(...rows);
    $("revisions-table").hidden = rows.length === 0;
    $("revisions-empty").hidden = rows.length > 0;
  }

  // Approve / Reject for the current revision while it waits for a review.
  function renderReview(record, current, unresolved) {
    const reviewable =
      current &&
      (current.state === "AWAITING_APPROVAL" || (current.state === "READY" && record.approvalRequired));
    const form = $("review");
    const shown = !!(state.admin && unresolved && reviewable && !state.forbidden.has("review"));
    if (shown && form.dataset.revision !== String(current.revision)) $("review-note").value = "";
    form.hidden = !shown;
    form.dataset.revision = shown ? String(current.revision) : "";
    if (shown) {
      setText("review-title", "Revision " + current.revision + " by " + current.author + " awaits a second admin:");
    }
  }

  // The editor for an admin on an unresolved consumer-side record; a
  // publish-side one says why it cannot be edited.
  function renderEditor(record, current, unresolved) {
    const refused = $("edit-refused");
    const form = $("editor");
    let why = null;
    if (!state.admin) why = "";
    else if (record.source !== "CONSUMER") {
      why =
        "A publish-side record is an event of this service's own event store, which is the truth: " +
        "it cannot be edited. Replay it as it is, or skip it.";
    } else if (!unresolved) why = "The record is " + record.status + ": it is not edited any more.";
    refused.hidden = !why;
    refused.textContent = why || "";
    form.hidden = why !== null;
    if (why !== null) return;

    // Filled once per record and current revision: a refresh keeps what is typed.
    const n = current ? current.revision : 0;
    const key = record.eventId + "#" + n;
    if (state.editorKey === key) return;
    state.editorKey = key;
    state.editorBase = messageAt(record, n);
    $("editor-message").value = state.editorBase === null ? "" : JSON.stringify(state.editorBase, null, 2);
    $("editor-message").dataset.basedOn = String(n);
    $("editor-reason").value = "";
    $("editor-diff-out").hidden = true;
    setText("editor-base", n ? "from revision " + n + " (current)" : "from the original");
  }

  function renderRepair(record) {
    state.record = record;
    const unresolved = isUnresolved(record);
    const current = currentRevision(record.revisions || []);
    renderRevisions(record, current);
    renderReview(record, current, unresolved);
    renderEditor(record, current, unresolved);
  }

  // The edited message against the one it was filled from, or why not.
  function editedMessage() {
    const parsed = parseJson($("editor-message").value);
    if (!parsed.ok) return { error: "the message is not JSON: " + parsed.error };
    return { message: parsed.value };
  }

  function showDiff() {
    const edited = editedMessage();
    const out = $("editor-diff-out");
    if (edited.error) {
      out.hidden = true;
      return showOutcome("editor-result", edited.error, true);
    }
    const ops = diffJson(state.editorBase, edited.message, "", []);
    out.textContent = diffText(ops, state.editorBase);
    out.hidden = false;
    $("editor-result").hidden = true;
  }

  // A 422's field errors one a line under its title; other errors as usual.
  function describeRefusal(what, r) {
    const errors = r.json && Array.isArray(r.json.errors) ? r.json.errors : [];
    if (r.status !== 422 || errors.length === 0) return describe(what, r);
    const title = r.json.title || "invalid";
    return what + " answered 422 " + title + ":\n" + errors.map((e) => e.field + ": " + e.message).join("\n");
  }

  async function saveRevision() {
    const id = state.selected;
    if (!id) return;
    const edited = editedMessage();
    if (edited.error) return showOutcome("editor-result", edited.error, true);
    const body = {
      reason: $("editor-reason").value.trim(),
      message: edited.message,
      basedOn: Number($("editor-message").dataset.basedOn || "0"),
    };
    const button = $("editor-save");
    button.disabled = true;
    const r = await call("POST", "/api/dlq/" + encodeURIComponent(id) + "/revisions", body);
    button.disabled = false;
    if (id !== state.selected) return;
    if (r.status === 201 && r.json) {
      const waits = r.json.state === "AWAITING_APPROVAL" ? ": a second admin must approve it" : "";
      showOutcome("editor-result", "revision " + r.json.revision + " saved, " + r.json.state + waits, false);
      $("preview").hidden = true; // it previewed the message before this one
    } else {
      if (r.status === 403) state.forbidden.add("revise");
      showOutcome("editor-result", describeRefusal("save revision", r), true);
    }
    await refresh();
  }

  async function review(decision) {
    const id = state.selected;
    const n = $("review").dataset.revision;
    if (!id || !n) return;
    const note = $("review-note").value.trim();
    const path = "/api/dlq/" + encodeURIComponent(id) + "/revisions/" + n + "/" + decision;
    const r = await call("POST", path, note ? { note } : undefined);
    if (id !== state.selected) return;
    // A 403 here is mostly the author reviewing their own revision: the
    // buttons stay for the next revision; the answer says why.
    if (r.ok && r.json) {
      showOutcome("review-result", "revision " + n + " " + r.json.state + " by " + r.json.reviewer, false);
      $("preview").hidden = true;
    } else {
      showOutcome("review-result", describe(decision + " revision " + n, r, false), true);
    }
    await refresh();
  }

  function jsonCell(v) {
    if (v === undefined) return "";
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  function renderPreview(p) {
    const summary = $("preview-summary");
    summary.replaceChildren();
    const verdict = document.createElement("span");
    verdict.className = p.replayable ? "replayable" : "refused";
    verdict.textContent = p.replayable ? "Replayable" : "Refused";
    const why = p.replayable ? p.messages.length + " message(s), sent in this order" : p.refusal || "";
    summary.append(verdict, document.createTextNode(": " + why));
    summary.dataset.replayable = String(!!p.replayable);
    setText(
      "preview-redeliver-to",
      p.redeliverTo ? "consumer group " + p.redeliverTo + " only" : "every subscriber of the topic",
    );
    $("preview-redeliver-to").dataset.group = p.redeliverTo || "";

    const rows = p.messages.map((m, i) => {
      const tr = document.createElement("tr");
      tr.dataset.testid = "preview-message";
      tr.dataset.topic = m.topic;
      tr.dataset.revision = m.revision === null ? "" : String(m.revision);
      tr.dataset.willSend = String(m.willSend);
      cell(tr, i + 1);
      cell(tr, m.eventType + (m.version === null ? "" : " v" + m.version) + " " + m.eventId);
      cell(tr, m.topic + " (key " + m.key + ")");
      cell(tr, m.revision === null ? "original" : "revision " + m.revision);
      const ul = document.createElement("ul");
      ul.className = "headers";
      for (const h of m.headers) {
        const li = document.createElement("li");
        li.textContent = h.name + ": " + h.value;
        ul.appendChild(li);
      }
      cell(tr, ul);
      cell(tr, m.alreadyOnBus === null ? "unknown" : m.alreadyOnBus ? "yes" : "no");
      cell(tr, m.willSend ? "sent" : "not sent");
      return tr;
    });
    $("preview-messages-body").replaceChildren(...rows);

    const rm = p.readModel;
    $("preview-read-model").hidden = !rm;
    $("preview-no-read-model").hidden = !!rm;
    if (rm) {
      setText("preview-order", "order " + rm.orderId);
      const before = rm.before || {};
      const after = rm.after || {};
      const fields = Object.keys(Object.assign({}, before, after));
      const docRows = fields.map((f) => {
        const tr = document.createElement("tr");
        tr.dataset.testid = "preview-field";
        tr.dataset.field = f;
        const changed = !sameJson(before[f], after[f]);
        tr.dataset.changed = String(changed);
        if (changed) tr.classList.add("changed");
        cell(tr, f);
        cell(tr, rm.before ? jsonCell(before[f]) : "(no document)");
        cell(tr, rm.after ? jsonCell(after[f]) : "(none)");
        return tr;
      });
      $("preview-document-body").replaceChildren(...docRows);
      $("preview-steps").replaceChildren(
        ...rm.steps.map((s) => {
          const li = document.createElement("li");
          li.textContent = s;
          return li;
        }),
      );
    }
    $("preview").hidden = false;
  }

  async function runPreview() {
    const id = state.selected;
    if (!id) return;
    const button = $("action-preview");
    button.disabled = true;
    const r = await call("POST", "/api/dlq/replay/" + encodeURIComponent(id) + "?preview=true");
    button.disabled = false;
    if (id !== state.selected) return;
    if (r.ok && r.json) {
      renderPreview(r.json);
      $("action-result").hidden = true;
      return;
    }
    if (r.status === 403) {
      state.forbidden.add("preview");
      button.hidden = true;
    }
    $("preview").hidden = true;
    showResult(describe("preview replay " + id, r), true);
  }

  function wireRepair() {
    $("action-preview").addEventListener("click", runPreview);
    $("preview-replay").addEventListener("click", async (e) => {
      const r = await act("replay", e.currentTarget);
      if (r && r.ok) $("preview").hidden = true; // it answered for the state before the replay
    });
    $("preview-close").addEventListener("click", () => {
      $("preview").hidden = true;
    });
    $("editor").addEventListener("submit", (e) => {
      e.preventDefault();
      saveRevision();
    });
    $("editor-diff").addEventListener("click", showDiff);
    // A changed message needs a new "Show diff".
    $("editor-message").addEventListener("input", () => {
      $("editor-diff-out").hidden = true;
    });
    $("editor-reset").addEventListener("click", () => {
      state.editorKey = null;
      $("editor-result").hidden = true;
      if (state.record) renderRepair(state.record);
    });
    $("review").addEventListener("submit", (e) => {
      e.preventDefault();
      review("approve");
    });
    $("review-reject").addEventListener("click", () => review("reject"));
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
    state.record = null;
    state.editorKey = null;
    for (const el of ["action-result", "editor-result", "review-result", "editor-diff-out", "preview"]) {
      $(el).hidden = true;
    }
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
    state.admin = adminProbe.ok;
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

  // Runs `action` on the selected record from `button` (the action row's,
  // or the preview's Replay); answers the call's result.
  async function act(action, button) {
    const id = state.selected;
    if (!id) return null;
    const pending = ACTIONS[action](id);
    if (!pending) return null;
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
    return r;
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
      $("action-" + action).addEventListener("click", (e) => act(action, e.currentTarget));
    }
    wireRepair();
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
      state.record = null;
      $("detail").hidden = true;
      for (const tr of $("failures-body").children) tr.classList.remove("selected");
    });
    refresh();
    setInterval(refresh, REFRESH_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
