// Two executions side by side, checkpoint by checkpoint: status, duration, output.

import { api } from "../api.js";
import { h, replace, badge, shortId, fmtDuration, pretty } from "../dom.js";

async function outputOf(call) {
  const out = (call.artifacts || []).find((a) => a.role === "output");
  if (!out) return { text: null, shown: "—" };
  if (out.serializer === "pickle") return { text: `pickle:${out.sha256}`, shown: "⚠ pickled" };
  try {
    const p = await api(`/artifacts/${encodeURIComponent(out.artifact_id)}/preview`);
    if (!p.previewable) return { text: `sha:${out.sha256}`, shown: p.reason || "no preview" };
    return { text: JSON.stringify(p.value), value: p.value };
  } catch (_) {
    return { text: `sha:${out.sha256}`, shown: "unavailable" };
  }
}

export async function render(main, { a, b, search }) {
  const [left, right] = await Promise.all([
    api(`/executions/${encodeURIComponent(a)}`), api(`/executions/${encodeURIComponent(b)}`),
  ]);
  // Pair calls by call id (a replay keeps its source's call ids), then by name + order.
  const rightById = new Map((right.checkpoints || []).map((c) => [c.call_id, c]));
  const used = new Set();
  const pairs = [];
  const byName = (list, name) => list.filter((c) => c.name === name);
  for (const c of left.checkpoints || []) {
    let other = rightById.get(c.call_id);
    if (!other) {
      const index = byName(left.checkpoints, c.name).indexOf(c);
      other = byName(right.checkpoints || [], c.name).filter((x) => !used.has(x.call_id))[0];
      if (index < 0) other = undefined;
    }
    if (other) used.add(other.call_id);
    pairs.push([c, other]);
  }
  for (const c of right.checkpoints || []) if (!used.has(c.call_id)) pairs.push([undefined, c]);

  const relation = right.original_exec_id === left.exec_id ? `${shortId(right.exec_id)} is a replay of ${shortId(left.exec_id)}`
    : left.original_exec_id === right.exec_id ? `${shortId(left.exec_id)} is a replay of ${shortId(right.exec_id)}` : null;
  const head = (e) => h("div", { class: "card" },
    h("h2", null, h("a", { href: `#/executions/${e.exec_id}`, class: "mono" }, shortId(e.exec_id)), " ", badge(e.status)),
    h("p", null, `${e.flow_name} · ${fmtDuration(e.duration)} · ${(e.checkpoints || []).length} calls`),
    e.original_exec_id ? h("p", null, "Replay of ", h("a", { href: `#/executions/${e.original_exec_id}`, class: "mono" }, shortId(e.original_exec_id))) : null);
  const tbody = h("tbody");
  replace(main,
    h("h1", null, "Compare executions"),
    relation ? h("p", { class: "relation", id: "relation" }, `⇄ ${relation}`) : null,
    more(a, search),
    h("div", { class: "split" }, head(left), head(right)),
    h("table", { class: "list compare", id: "compare" },
      h("thead", null, h("tr", null, ["Checkpoint", "Left", "Right", "Output"].map((c) => h("th", { scope: "col" }, c)))),
      tbody));
  const cell = (c) => (c ? h("td", null, badge(c.call_status || c.status), " ", fmtDuration(c.duration)) : h("td", { class: "muted" }, "absent"));
  const rows = pairs.map(([l, r]) => {
    const diff = h("td", null, "…");
    const tr = h("tr", { dataset: { name: (l || r).name } }, h("th", { scope: "row" }, (l || r).name), cell(l), cell(r), diff);
    Promise.all([l ? outputOf(l) : null, r ? outputOf(r) : null]).then(([lo, ro]) => {
      if (!lo || !ro) { replace(diff, "—"); return; }
      if (lo.text === ro.text) { replace(diff, h("span", { class: "same" }, "= same"), lo.text !== null ? pretty(lo.value ?? lo.shown) : null); return; }
      tr.classList.add("row-differs");
      replace(diff, h("span", { class: "differs" }, "≠ differs"), h("div", { class: "split" },
        ro && lo ? [h("div", null, pretty(lo.value ?? lo.shown)), h("div", null, pretty(ro.value ?? ro.shown))] : null));
    });
    return tr;
  });
  replace(tbody, rows);
  return null;
}

// A link for more than two executions (kitaru.build_compare_url_for_executions) opens on
// the first two; the others are offered here, each against the first.
function more(a, search) {
  const others = (search && search.get("more") || "").split(",").map((x) => x.trim()).filter(Boolean);
  if (!others.length) return null;
  return h("p", { id: "compare-more" }, `Compare ${shortId(a)} also with: `,
    others.map((o, i) => [i ? ", " : null,
      h("a", { href: `#/compare/${encodeURIComponent(a)}/${encodeURIComponent(o)}`, class: "mono" }, shortId(o))]));
}
