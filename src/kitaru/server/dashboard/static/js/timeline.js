// The timeline: one row per checkpoint call, drawn to scale on a shared time axis
// (concurrent calls overlap in time on neighbouring rows), one segment per attempt.
// Kinds are told apart by a glyph, a word and a pattern, not by colour alone.

import { h, fmtDuration } from "./dom.js";

const KIND = {
  cached: { glyph: "◆", word: "cached" },
  reused: { glyph: "⇄", word: "reused" },
  failed: { glyph: "✕", word: "failed" },
  running: { glyph: "▶", word: "running" },
  completed: { glyph: "✓", word: "done" },
};

const ts = (iso) => (iso ? Date.parse(iso) / 1000 : null);

export function legend() {
  return h("p", { class: "legend" },
    ["completed", "cached", "reused", "failed", "running"].map((k) =>
      h("span", { class: `leg k-${k}` }, h("span", { class: "swatch" }), `${KIND[k].glyph} ${KIND[k].word}`)),
    h("span", { class: "leg" }, "↻n retried (n attempts; one segment each)"));
}

/**
 * Render calls to scale. `onSelect(call)` is called when a row is chosen.
 * Builds everything into one fragment first: 1,000 calls are a few thousand nodes.
 */
export function timeline(execution, onSelect) {
  const calls = execution.checkpoints || [];
  const now = Date.now() / 1000;
  let t0 = Infinity;
  let t1 = -Infinity;
  const spans = calls.map((c) => {
    const attempts = (c.attempts || []).map((a) => ({
      a, start: ts(a.started_at), end: ts(a.ended_at) ?? (a.status === "running" ? now : ts(a.started_at)),
    })).filter((x) => x.start !== null);
    let start = ts(c.started_at);
    let end = ts(c.ended_at);
    for (const x of attempts) {
      start = start === null ? x.start : Math.min(start, x.start);
      end = end === null ? x.end : Math.max(end, x.end);
    }
    if (start === null) start = ts(execution.started_at) ?? now;
    if (end === null) end = c.status === "running" ? now : start;
    t0 = Math.min(t0, start);
    t1 = Math.max(t1, end);
    return { c, start, end, attempts };
  });
  const execStart = ts(execution.started_at);
  if (execStart !== null) t0 = Math.min(t0, execStart);
  const execEnd = ts(execution.ended_at);
  if (execEnd !== null) t1 = Math.max(t1, execEnd);
  if (!Number.isFinite(t0)) { t0 = now; t1 = now; }
  const total = Math.max(t1 - t0, 1e-3);
  const pct = (t) => `${(((t - t0) / total) * 100).toFixed(3)}%`;
  const width = (a, b) => `max(2px, ${(((b - a) / total) * 100).toFixed(3)}%)`;

  const axis = h("div", { class: "tl-axis", "aria-hidden": "true" });
  for (let i = 0; i <= 4; i += 1) {
    axis.appendChild(h("span", { class: "tick", style: { left: `${i * 25}%` } }, `+${fmtDuration((total * i) / 4)}`));
  }
  const rows = document.createDocumentFragment();
  spans.sort((x, y) => x.start - y.start || String(x.c.call_id).localeCompare(String(y.c.call_id)));
  for (const { c, start, end, attempts } of spans) {
    const kind = c.call_status in KIND ? c.call_status : (c.status in KIND ? c.status : "completed");
    const retried = attempts.length > 1;
    const label = `${KIND[kind].glyph} ${c.name}${retried ? ` ↻${attempts.length}` : ""}`;
    const desc = `${c.name}: ${KIND[kind].word}, ${fmtDuration(end - start)}` +
      (retried ? `, ${attempts.length} attempts` : "") +
      (c.source_exec_id ? `, output from ${c.source_exec_id.slice(0, 8)}` : "");
    const bar = h("span", {
      class: `tl-bar k-${kind}${retried ? " retried" : ""}`,
      style: { left: pct(start), width: width(start, end) },
    });
    if (retried) {
      for (const x of attempts) {
        const failed = x.a.status === "failed";
        bar.appendChild(h("span", {
          class: `tl-attempt${failed ? " failed" : ""}`,
          style: { left: `${(((x.start - start) / Math.max(end - start, 1e-6)) * 100).toFixed(3)}%`,
            width: `max(4px, ${(((x.end - x.start) / Math.max(end - start, 1e-6)) * 100).toFixed(3)}%)` },
          title: `attempt ${x.a.attempt}: ${x.a.status}`,
        }));
      }
    }
    rows.appendChild(h("button", {
      type: "button", class: "tl-row", "aria-label": desc, title: desc,
      dataset: { call: c.call_id, kind, name: c.name, attempts: String(attempts.length) },
      onclick: (event) => {
        for (const el of event.currentTarget.parentNode.querySelectorAll(".tl-row[aria-pressed='true']")) el.setAttribute("aria-pressed", "false");
        event.currentTarget.setAttribute("aria-pressed", "true");
        onSelect(c);
      },
    },
    h("span", { class: "tl-label" }, label),
    h("span", { class: "tl-track" }, bar),
    h("span", { class: "tl-dur" }, fmtDuration(end - start))));
  }
  const list = h("div", { class: "tl-rows", role: "group", "aria-label": "Checkpoint calls" });
  list.appendChild(rows);
  return h("div", { class: "timeline", id: "timeline" },
    legend(),
    h("div", { class: "tl-head" }, h("span", { class: "tl-label" }, `${calls.length} calls`), axis, h("span", { class: "tl-dur" })),
    list);
}
