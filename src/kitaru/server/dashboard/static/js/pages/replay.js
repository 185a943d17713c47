// Replay: pick the checkpoint call to replay from, edit overrides as JSON, submit,
// land on the new execution (a worker runs it).

import { api } from "../api.js";
import { h, replace, errorBox, shortId } from "../dom.js";

/**
 * The execution's checkpoint calls grouped by checkpoint name, in call order, each
 * call with a readable label. A checkpoint called several times has one call id per
 * call ("slow", "slow:2", ...): `at` and per-call overrides name the call id.
 */
export function callGroups(checkpoints) {
  const groups = new Map();
  for (const c of checkpoints || []) {
    if (!groups.has(c.name)) groups.set(c.name, []);
    groups.get(c.name).push(c);
  }
  return [...groups].map(([name, calls]) => ({
    name,
    calls: calls.map((c, i) => ({
      callId: c.call_id,
      label: calls.length > 1 ? `${name} (call ${callNumber(c, name, i)})` : name,
    })),
  }));
}

// "slow:3" is the third call of "slow"; an id of another shape is numbered by its place.
function callNumber(call, name, index) {
  if (call.call_id === name) return 1;
  const n = call.call_id.startsWith(`${name}:`) ? Number(call.call_id.slice(name.length + 1)) : NaN;
  return Number.isInteger(n) && n > 0 ? n : index + 1;
}

// A JSON override box; `target` says where its value goes in the request.
function overrideBox(id, label, target) {
  const area = h("textarea", { id, class: "mono", rows: 2, placeholder: "leave empty: run it (or reuse it, before the replay point)", dataset: target });
  return { label, area, el: h("div", { class: "field" }, h("label", { for: id }, label), area) };
}

/**
 * Output overrides per checkpoint. One box per checkpoint name (checkpoint_overrides:
 * every call of it); a repeated checkpoint also gets one box per call
 * (invocation_overrides by call id), which wins over the box for all its calls.
 */
function outputFields(groups) {
  const boxes = [];
  let n = 0;
  const els = groups.map((g) => {
    const all = g.calls.length > 1 ? `${g.name} (all ${g.calls.length} calls)` : g.name;
    const whole = overrideBox(`out-${g.name}`, all, { checkpoint: g.name });
    boxes.push(whole);
    if (g.calls.length === 1) return whole.el;
    const perCall = g.calls.map((c) => overrideBox(`out-call-${(n += 1)}`, c.label, { call: c.callId }));
    boxes.push(...perCall);
    return h("div", { class: "override-group" }, whole.el,
      h("details", { class: "per-call" },
        h("summary", null, `Override one call of ${g.name}`),
        h("p", { class: "hint" }, `A value here replaces that call's output only, and wins over "${all}".`),
        perCall.map((b) => b.el)));
  });
  return { boxes, els };
}

export async function render(main, { id }, ctx) {
  const execution = await api(`/executions/${encodeURIComponent(id)}`);
  const groups = callGroups(execution.checkpoints);
  const status = h("div", { "aria-live": "polite", id: "replay-status" });
  if (!ctx.me || !ctx.me.can_write) {
    replace(main, h("h1", null, "Replay"), h("p", null, "Your API key is read-only: it cannot start replays."));
    return null;
  }
  const at = h("select", { id: "replay-at", name: "at", required: true },
    groups.flatMap((g) => g.calls).map((c) => h("option", { value: c.callId }, c.label)));
  const flowOverrides = h("textarea", { id: "flow-overrides", class: "mono", rows: 3, placeholder: "{\"x\": 2}" });
  const outputs = outputFields(groups);
  const tag = h("input", { id: "replay-tag", type: "text" });

  function parse(text, label) {
    if (!text.trim()) return undefined;
    try { return JSON.parse(text); } catch (err) { throw new Error(`${label}: not valid JSON (${err.message})`); }
  }

  async function submit(event) {
    event.preventDefault();
    replace(status);
    let body;
    try {
      body = { executions: [execution.exec_id], at: at.value };
      const flow = parse(flowOverrides.value, "Flow inputs");
      if (flow !== undefined) body.flow_overrides = flow;
      const byName = {};
      const byCall = {};
      for (const o of outputs.boxes) {
        const v = parse(o.area.value, `Output of ${o.label}`);
        if (v === undefined) continue;
        if (o.area.dataset.call) byCall[o.area.dataset.call] = { output: v };
        else byName[o.area.dataset.checkpoint] = { output: v };
      }
      if (Object.keys(byName).length) body.checkpoint_overrides = byName;
      if (Object.keys(byCall).length) body.invocation_overrides = byCall;
      if (tag.value.trim()) body.tag = tag.value.trim();
    } catch (err) {
      replace(status, errorBox({ type: "Invalid input", message: err.message }));
      return;
    }
    try {
      const submission = await api("/replays", { method: "POST", body });
      const row = (submission.results || [])[0];
      if (row && row.replay_exec_id) {
        location.hash = `#/executions/${row.replay_exec_id}`;
      } else {
        const failed = (submission.failures || [])[0];
        replace(status, errorBox({ type: "Replay not started", message: (failed && failed.reason) || JSON.stringify(submission.summary) }));
      }
    } catch (err) {
      replace(status, errorBox(err));
    }
  }

  replace(main,
    h("h1", null, `Replay ${execution.flow_name} `, h("a", { href: `#/executions/${execution.exec_id}`, class: "mono" }, shortId(execution.exec_id))),
    h("p", { class: "hint" }, "Calls before the chosen checkpoint call reuse their recorded outputs; it and later calls run again (a `kitaru worker` on this store runs the new execution)."),
    h("form", { class: "card replay", onsubmit: submit },
      h("div", { class: "field" }, h("label", { for: "replay-at" }, "Replay from checkpoint"), at),
      h("div", { class: "field" }, h("label", { for: "flow-overrides" }, "Flow input overrides (JSON object, optional)"), flowOverrides),
      h("fieldset", null, h("legend", null, "Checkpoint output overrides (JSON, optional)"), outputs.els),
      h("div", { class: "field" }, h("label", { for: "replay-tag" }, "Tag (optional)"), tag),
      h("button", { type: "submit", class: "primary", id: "replay-submit" }, "Start replay"),
      status));
  return null;
}
