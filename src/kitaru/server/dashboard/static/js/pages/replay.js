// Replay: pick the checkpoint to replay from, edit overrides as JSON, submit, land
// on the new execution (a worker runs it).

import { api } from "../api.js";
import { h, replace, errorBox, shortId } from "../dom.js";

export async function render(main, { id }, ctx) {
  const execution = await api(`/executions/${encodeURIComponent(id)}`);
  const names = [...new Set((execution.checkpoints || []).map((c) => c.name))];
  const status = h("div", { "aria-live": "polite", id: "replay-status" });
  if (!ctx.me || !ctx.me.can_write) {
    replace(main, h("h1", null, "Replay"), h("p", null, "Your API key is read-only: it cannot start replays."));
    return null;
  }
  const at = h("select", { id: "replay-at", name: "at", required: true },
    names.map((n) => h("option", { value: n }, n)));
  const flowOverrides = h("textarea", { id: "flow-overrides", class: "mono", rows: 3, placeholder: "{\"x\": 2}" });
  const outputs = names.map((n) => ({
    name: n,
    area: h("textarea", { id: `out-${n}`, class: "mono", rows: 2, placeholder: "leave empty: run it (or reuse it, before the replay point)", dataset: { checkpoint: n } }),
  }));
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
      const cps = {};
      for (const o of outputs) {
        const v = parse(o.area.value, `Output of ${o.name}`);
        if (v !== undefined) cps[o.name] = { output: v };
      }
      if (Object.keys(cps).length) body.checkpoint_overrides = cps;
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
    h("p", { class: "hint" }, "Calls before the chosen checkpoint reuse their recorded outputs; it and later calls run again (a `kitaru worker` on this store runs the new execution)."),
    h("form", { class: "card replay", onsubmit: submit },
      h("div", { class: "field" }, h("label", { for: "replay-at" }, "Replay from checkpoint"), at),
      h("div", { class: "field" }, h("label", { for: "flow-overrides" }, "Flow input overrides (JSON object, optional)"), flowOverrides),
      h("fieldset", null, h("legend", null, "Checkpoint output overrides (JSON, optional)"),
        outputs.map((o) => h("div", { class: "field" }, h("label", { for: `out-${o.name}` }, o.name), o.area))),
      h("div", { class: "field" }, h("label", { for: "replay-tag" }, "Tag (optional)"), tag),
      h("button", { type: "submit", class: "primary", id: "replay-submit" }, "Start replay"),
      status));
  return null;
}
