// The detail of one checkpoint call: output, inputs, metadata, artifacts, attempts, logs.

import { api } from "./api.js";
import { h, replace, badge, fmtTime, fmtDuration, kv, shortId, errorBox } from "./dom.js";
import { artifactValue } from "./value.js";

export function callDetail(execution, call, _logList) {
  const output = (call.artifacts || []).filter((a) => a.role === "output");
  const inputs = call.inputs || [];
  const saved = (call.artifacts || []).filter((a) => a.role !== "output" && a.direction !== "input");
  const logs = h("ol", { class: "logs", "aria-label": `Logs of ${call.name}` }, h("li", { class: "muted" }, "Loading…"));
  api(`/executions/${encodeURIComponent(execution.exec_id)}/logs?checkpoint=${encodeURIComponent(call.name)}&limit=500`)
    .then((page) => {
      const mine = page.items.filter((l) => !l.call_id || l.call_id === call.call_id);
      replace(logs, mine.length ? mine.map((l) => h("li", { class: "log" }, h("span", { class: "ts" }, (l.timestamp || "").slice(11, 23)), h("span", { class: "msg" }, l.message)))
        : h("li", { class: "muted" }, "No output captured."));
    })
    .catch((err) => replace(logs, h("li", null, errorBox(err))));
  const attempts = call.attempts || [];
  return h("section", { class: "card call", "aria-label": `Call ${call.name}`, tabindex: "-1" },
    h("h2", null, `Call ${call.name} `, badge(call.call_status || call.status)),
    h("dl", { class: "facts" },
      [["Call id", h("span", { class: "mono" }, call.call_id)],
        ["Type", call.checkpoint_type || "—"],
        ["Runtime", call.runtime || "—"],
        ["Started", fmtTime(call.started_at)],
        ["Ended", fmtTime(call.ended_at)],
        ["Duration", fmtDuration(call.duration)],
        ["Attempts", String(attempts.length)],
        call.source_exec_id ? ["Output from", h("a", { href: `#/executions/${call.source_exec_id}`, class: "mono" }, shortId(call.source_exec_id))] : null,
        call.original_call_id ? ["Original call", h("span", { class: "mono" }, call.original_call_id)] : null,
      ].filter(Boolean).map(([k, v]) => [h("dt", null, k), h("dd", null, v)])),
    h("h3", null, "Output"),
    output.length ? output.map(artifactValue) : h("p", { class: "muted" }, call.status === "failed" ? "No output: the call failed." : "No output recorded."),
    h("h3", null, "Inputs"),
    h("div", { class: "inputs", "aria-label": `Inputs of ${call.name}` },
      inputs.length ? inputs.map(artifactValue) : h("p", { class: "muted" }, "No arguments recorded (the call took none, or it was recorded before Kitaru stored call inputs).")),
    h("h3", null, "Metadata"), kv(call.metadata),
    saved.length ? [h("h3", null, "Saved artifacts"), saved.map(artifactValue)] : null,
    h("h3", null, "Attempts"),
    attempts.length ? h("table", { class: "list attempts" },
      h("thead", null, h("tr", null, ["#", "Run", "Status", "Started", "Duration", "Error"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", null, attempts.map((a) => h("tr", null,
        h("td", null, String(a.attempt)), h("td", null, String(a.run)), h("td", null, badge(a.status)),
        h("td", null, fmtTime(a.started_at)),
        h("td", null, fmtDuration(a.started_at && a.ended_at ? (Date.parse(a.ended_at) - Date.parse(a.started_at)) / 1000 : null)),
        h("td", null, a.exception_type || a.message ? h("details", null,
          h("summary", null, `${a.exception_type || "Error"}: ${a.message || ""}`),
          a.traceback ? h("pre", { class: "traceback" }, a.traceback) : null) : "—")))))
      : h("p", { class: "muted" }, "No attempts recorded (cached or reused calls do not run)."),
    call.error && !attempts.some((a) => a.message) ? [h("h3", null, "Error"), kv(call.error)] : null,
    h("h3", null, "Logs"), logs);
}
