// One execution: header, actions, failure, waits, timeline, call detail, live logs.

import { api, follow } from "../api.js";
import { h, replace, badge, shortId, fmtTime, fmtDuration, kv, pretty, errorBox, section } from "../dom.js";
import { timeline } from "../timeline.js";
import { waitForm } from "../waitform.js";
import { callDetail } from "../calldetail.js";
import { debounce } from "./executions.js";

const FINISHED = ["completed", "failed", "cancelled"];
const STOPPED = ["failed", "cancelled"];

// A runner holds the execution while its lease runs: the server's own verdict for a
// running one (is_orphaned); for a waiting one the lease itself (a runner that lets
// go at a wait clears it, so this browser's clock only matters for a crashed one).
function leaseHeld(e) {
  if (e.status === "running") return !e.is_orphaned && !!e.lease_expires_at;
  return !!e.lease_expires_at && Date.parse(e.lease_expires_at) > Date.now();
}

/**
 * Whether the server's resume (server/_control.py) would accept this execution, so
 * the button is never offered for a certain 409: a failed or cancelled one whose
 * stored failure is `resumable` (its store failed, or Ctrl-C), a running one whose
 * runner is gone, a waiting one with no pending wait that no runner holds.
 */
export function canResume(e, storedFailure) {
  if (STOPPED.includes(e.status)) return !!(storedFailure && storedFailure.resumable);
  if (e.status === "running") return !leaseHeld(e);
  if (e.status === "waiting") return !(e.pending_waits || []).length && !leaseHeld(e);
  return false;
}

export async function render(main, { id }, ctx) {
  const canWrite = !!(ctx.me && ctx.me.can_write);
  let execution = await api(`/executions/${encodeURIComponent(id)}`);
  const execId = execution.exec_id;
  // The failure as stored: the execution's view leaves out whether it is resumable.
  let storedFailure = null;
  async function readStoredFailure() {
    let found = null;
    if (canWrite && STOPPED.includes(execution.status)) {
      try {
        found = (await api(`/executions/${encodeURIComponent(execId)}/result`)).failure;
      } catch (_) { /* no Resume button then: the server would refuse it and say why */ }
    }
    storedFailure = found;
  }
  await readStoredFailure();
  const header = h("div");
  const actionStatus = h("div", { "aria-live": "polite", id: "action-status" });
  const waitsBox = h("div", { id: "waits" });
  const tlBox = h("div");
  const detailBox = h("div", { id: "call-detail" });
  const logList = h("ol", { class: "logs", id: "logs", "aria-label": "Log lines" });
  const logState = h("span", { class: "muted", id: "log-state" });
  let selected = null;

  function renderHeader() {
    const e = execution;
    replace(header,
      h("div", { class: "title" },
        h("h1", null, e.flow_name || "execution", " "), badge(e.status),
        e.is_orphaned ? h("span", { class: "badge s-failed" }, "⚠ orphaned") : null),
      h("dl", { class: "facts" },
        fact("Execution", h("span", { class: "mono", id: "exec-id" }, e.exec_id)),
        fact("Stack", e.stack_name || "—"),
        fact("Created", fmtTime(e.created_at)),
        fact("Started", fmtTime(e.started_at)),
        fact("Ended", fmtTime(e.ended_at)),
        fact("Duration", fmtDuration(e.duration)),
        fact("Runs", String(e.run_count)),
        fact("Checkpoints", String((e.checkpoints || []).length)),
        e.original_exec_id ? fact("Replay of", h("span", null,
          h("a", { href: `#/executions/${e.original_exec_id}`, class: "mono" }, shortId(e.original_exec_id)), " · ",
          h("a", { href: `#/compare/${e.original_exec_id}/${e.exec_id}`, id: "compare-source" }, "compare with source"))) : null,
        e.status_reason ? fact("Reason", e.status_reason) : null,
        e.llm_usage_summary ? fact("LLM usage", kv(e.llm_usage_summary)) : null),
      actions(),
      actionStatus,
      e.failure ? failureBox(e.failure) : null);
  }

  function actions() {
    if (!canWrite) return null;
    const s = execution.status;
    const box = h("div", { class: "actions", id: "actions" });
    const act = (name, label, run, cls) => h("button", { type: "button", class: cls || "", dataset: { action: name }, onclick: run }, label);
    // The server retries any failed execution (resumable or not); never another status.
    if (s === "failed") box.appendChild(act("retry", "↻ Retry", () => post("retry")));
    if (canResume(execution, storedFailure)) box.appendChild(act("resume", "▶ Resume", () => post("resume")));
    if (!FINISHED.includes(s)) box.appendChild(act("cancel", "⊘ Cancel", () => post("cancel")));
    box.appendChild(h("a", { class: "button", href: `#/executions/${execId}/replay`, dataset: { action: "replay" } }, "⇄ Replay…"));
    if (FINISHED.includes(s)) {
      box.appendChild(act("delete", "Delete…", () => {
        replace(actionStatus, h("div", { class: "confirm", role: "alertdialog", "aria-label": "Confirm delete" },
          h("p", null, `Delete execution ${execId} and its records? This cannot be undone.`),
          h("button", { type: "button", class: "danger", id: "confirm-delete", onclick: del }, "Delete"),
          h("button", { type: "button", id: "cancel-delete", onclick: () => replace(actionStatus) }, "Keep it")));
        actionStatus.querySelector("#cancel-delete").focus();
      }, "danger"));
    }
    const other = h("input", { id: "compare-with", type: "text", placeholder: "execution id", size: 14 });
    box.appendChild(h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); if (other.value.trim()) location.hash = `#/compare/${execId}/${other.value.trim()}`; } },
      h("label", { for: "compare-with" }, "Compare with"), other, h("button", { type: "submit" }, "Compare")));
    return box;
  }

  async function post(action) {
    replace(actionStatus, h("p", { class: "muted" }, `${action}…`));
    try {
      execution = await api(`/executions/${encodeURIComponent(execId)}/${action}`, { method: "POST" });
      await readStoredFailure();
      replace(actionStatus, h("p", { class: "ok" }, `${action}: the execution is now ${execution.status}.`));
      renderAll();
      startLogs();
    } catch (err) {
      replace(actionStatus, errorBox(err));
    }
  }

  async function del() {
    try {
      await api(`/executions/${encodeURIComponent(execId)}`, { method: "DELETE" });
      location.hash = "#/executions";
    } catch (err) {
      replace(actionStatus, errorBox(err));
    }
  }

  let shownWaits = null;
  function renderWaits() {
    // Keep the forms (and what the user typed) while the same waits are pending.
    const waits = execution.pending_waits || [];
    const key = waits.map((w) => w.wait_id).join("\n");
    if (key === shownWaits) return;
    shownWaits = key;
    replace(waitsBox, waits.map((w) => waitForm(execId, w, {
      canWrite,
      onDone: (message) => { replace(actionStatus, h("p", { class: "ok" }, message)); reload(); },
    })));
  }

  function renderTimeline() {
    replace(tlBox, timeline(execution, (call) => { selected = call.call_id; showCall(call); }));
    if (selected) {
      const call = (execution.checkpoints || []).find((c) => c.call_id === selected);
      if (call) showCall(call);
    }
  }

  function showCall(call) {
    replace(detailBox, callDetail(execution, call, logList));
  }

  let shownSignature = null;
  function renderAll() {
    shownSignature = signature(execution);
    renderHeader();
    renderWaits();
    renderTimeline();
  }

  // What the page shows; re-render only when it changed (keeps focus and open details).
  // It is compared with what was last rendered: a runner's lease runs out with no
  // change to the execution, and that alone brings the Resume button.
  function signature(e) {
    return JSON.stringify([e.status, e.run_count, e.ended_at, e.failure, canResume(e, storedFailure),
      (e.pending_waits || []).map((w) => w.wait_id),
      (e.checkpoints || []).map((c) => [c.call_id, c.call_status, c.ended_at, (c.attempts || []).length])]);
  }
  async function reload() {
    try {
      const fresh = await api(`/executions/${encodeURIComponent(execId)}`);
      const before = execution;
      execution = fresh;
      if (fresh.status !== before.status || fresh.run_count !== before.run_count) await readStoredFailure();
      if (signature(fresh) !== shownSignature) renderAll();
    } catch (err) {
      replace(actionStatus, errorBox(err));
    }
  }
  const reloadSoon = debounce(reload, 300);

  let stopLogs = null;
  function startLogs() {
    if (stopLogs) stopLogs();
    replace(logList);
    replace(logState, "● following");
    // The stream sends the stored lines first, then new ones; it ends with the execution.
    stopLogs = follow(`/executions/${encodeURIComponent(execId)}/stream`, (event, data) => {
      if (event === "log") {
        logList.appendChild(logLine(data));
        if (logList.childElementCount % 50 === 0 || logList.scrollHeight - logList.scrollTop < logList.clientHeight + 80) {
          logList.scrollTop = logList.scrollHeight;
        }
      } else if (event === "status" && data.status && data.status !== execution.status) {
        reloadSoon();
      } else if (event === "event") {
        reloadSoon();
      }
    }, { onEnd: () => { replace(logState, "ended"); reloadSoon(); } });
  }

  replace(main,
    header,
    waitsBox,
    section("Timeline", tlBox),
    detailBox,
    section("Logs", logState, logList),
    h("details", { class: "card" }, h("summary", null, "Configuration and metadata"),
      h("h3", null, "Metadata"), kv(execution.metadata),
      h("h3", null, "Config"), pretty(execution.config || {}),
      execution.frozen_execution_spec ? [h("h3", null, "Frozen execution spec"), pretty(execution.frozen_execution_spec)] : null,
      (execution.llm_usage_records || []).length ? [h("h3", null, "LLM usage"), kv(execution.llm_usage_records)] : null));
  renderAll();
  startLogs();
  // Checkpoint calls do not all publish stream events: while the execution is active,
  // re-read it every 2 s so the timeline grows as calls finish.
  const poll = setInterval(() => {
    if (!FINISHED.includes(execution.status) && !document.hidden) reload();
  }, 2000);
  return () => { clearInterval(poll); if (stopLogs) stopLogs(); };
}

function fact(name, value) {
  return [h("dt", null, name), h("dd", null, value)];
}

export function failureBox(f) {
  return h("div", { class: "failure", role: "region", "aria-label": "Failure", id: "failure" },
    h("h2", null, "✕ Failure"),
    h("p", null, h("strong", null, f.exception_type ? `${f.exception_type}: ` : ""), f.message),
    h("p", { class: "muted" }, `origin: ${f.origin}${f.checkpoint ? ` · checkpoint: ${f.checkpoint}` : ""}`),
    f.traceback ? h("details", { open: true }, h("summary", null, "Traceback"), h("pre", { class: "traceback" }, f.traceback)) : null);
}

export function logLine(entry) {
  return h("li", { class: `log ${entry.stream || ""} ${entry.level ? `lvl-${String(entry.level).toLowerCase()}` : ""}`, dataset: { call: entry.call_id || "" } },
    h("span", { class: "ts" }, entry.timestamp ? entry.timestamp.slice(11, 23) : ""),
    h("span", { class: "src" }, entry.checkpoint_name || "flow"),
    h("span", { class: "msg" }, entry.message));
}
