// Executions: filters kept in the URL fragment, keyset pages, live updates from /feed.

import { api, follow, query } from "../api.js";
import { h, replace, badge, shortId, fmtTime, fmtDuration, errorBox } from "../dom.js";

const STATUSES = ["running", "waiting", "completed", "failed", "cancelled"];
const PAGE = 50;

function toIso(local) {
  if (!local) return "";
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

function pageSize(text) {
  const n = Number(text);
  return Number.isInteger(n) && n >= 1 && n <= 500 ? n : "";
}

export async function render(main, { search }) {
  const state = {
    status: search.get("status") || "",
    flow: search.get("flow") || "",
    stack: search.get("stack") || "",
    q: search.get("q") || "",
    after: search.get("after") || "",
    before: search.get("before") || "",
    // Page size: ?limit=N in the fragment (1-500; the server caps it further), else PAGE.
    limit: pageSize(search.get("limit")),
  };
  const cursors = [];  // cursors of the pages before the current one
  let cursor = null;
  let nextCursor = null;

  const [flows, stacks] = await Promise.all([
    api("/flows?recent=0").catch(() => ({ items: [] })),
    api("/stacks").catch(() => ({ items: [] })),
  ]);

  const select = (id, label, options, value) => [
    h("label", { for: id }, label),
    h("select", { id, name: id, onchange: changed },
      h("option", { value: "" }, "All"),
      options.map((o) => h("option", { value: o, selected: o === value }, o))),
  ];
  const qInput = h("input", { id: "f-q", type: "search", value: state.q, placeholder: "id prefix or flow", oninput: debounce(changed, 300) });
  const form = h("form", { class: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); changed(); } },
    h("div", null, h("label", { for: "f-q" }, "Search"), qInput),
    h("div", null, select("f-status", "Status", STATUSES, state.status)),
    h("div", null, select("f-flow", "Flow", flows.items.map((f) => f.flow_name), state.flow)),
    h("div", null, select("f-stack", "Stack", stacks.items.map((s) => s.name), state.stack)),
    h("div", null, h("label", { for: "f-after" }, "Created after"),
      h("input", { id: "f-after", type: "datetime-local", value: state.after, onchange: changed })),
    h("div", null, h("label", { for: "f-before" }, "Created before"),
      h("input", { id: "f-before", type: "datetime-local", value: state.before, onchange: changed })));

  const tbody = h("tbody");
  const info = h("p", { class: "muted", id: "list-info", "aria-live": "polite" });
  const live = h("span", { class: "live", id: "live", title: "Live updates" }, "● live");
  const prev = h("button", { type: "button", id: "prev-page", onclick: () => { cursor = cursors.pop() || null; load(); } }, "← Newer");
  const next = h("button", { type: "button", id: "next-page", onclick: () => { cursors.push(cursor); cursor = nextCursor; load(); } }, "Older →");
  const table = h("table", { class: "list", id: "executions" },
    h("caption", { class: "sr-only" }, "Executions, newest first"),
    h("thead", null, h("tr", null,
      ["Status", "Execution", "Flow", "Stack", "Started", "Duration", "Checkpoints", "Wait", "Replay of"]
        .map((c) => h("th", { scope: "col" }, c)))),
    tbody);

  replace(main,
    h("div", { class: "title" }, h("h1", null, "Executions"), live),
    form, info, table, h("div", { class: "pager" }, prev, next));

  function changed() {
    state.q = qInput.value.trim();
    state.status = form.querySelector("#f-status").value;
    state.flow = form.querySelector("#f-flow").value;
    state.stack = form.querySelector("#f-stack").value;
    state.after = form.querySelector("#f-after").value;
    state.before = form.querySelector("#f-before").value;
    const params = query(state);
    history.replaceState(null, "", `#/executions${params}`);
    cursors.length = 0;
    cursor = null;
    load();
  }

  let loading = 0;
  async function load() {
    const ticket = ++loading;
    const params = query({
      status: state.status, flow: state.flow, stack: state.stack, q: state.q,
      created_after: toIso(state.after), created_before: toIso(state.before),
      limit: state.limit || PAGE, cursor,
    });
    let page;
    try {
      page = await api(`/executions${params}`);
    } catch (err) {
      replace(info, errorBox(err));
      return;
    }
    if (ticket !== loading) return;  // a newer load started meanwhile
    nextCursor = page.next_cursor;
    prev.disabled = cursor === null;
    next.disabled = !nextCursor;
    replace(info, page.count ? `Page ${cursors.length + 1}: ${page.count} executions` : "No executions match.");
    replace(tbody, page.items.map(row));
  }

  await load();

  // Live: any change refreshes the current page (debounced); keyset pages stay stable.
  const refresh = debounce(load, 400);
  let connected = false;
  const stop = follow("/feed", (event) => {
    // After a reconnect, changes made meanwhile were not sent: refresh once.
    if (event === "ready") { live.classList.add("on"); if (connected) refresh(); connected = true; }
    if (event === "change") { live.classList.add("on"); refresh(); }
  });
  return stop;
}

function row(e) {
  const done = e.checkpoints_done ?? e.checkpoint_count;
  return h("tr", { dataset: { exec: e.exec_id, status: e.status } },
    h("td", null, badge(e.status)),
    h("td", { class: "mono" }, h("a", { href: `#/executions/${e.exec_id}`, title: e.exec_id }, shortId(e.exec_id))),
    h("td", null, e.flow_name || "—"),
    h("td", null, e.stack_name || "—"),
    h("td", null, fmtTime(e.started_at || e.created_at)),
    h("td", { class: "num" }, fmtDuration(e.duration)),
    h("td", { class: "num" }, `${done}/${e.checkpoint_count}`),
    h("td", null, e.pending_wait ? h("span", { class: "wait-marker", title: e.pending_wait.question || "" }, `‖ ${e.pending_wait.name}`) : ""),
    h("td", { class: "mono" }, e.original_exec_id
      ? h("a", { href: `#/executions/${e.original_exec_id}`, title: e.original_exec_id }, `↩ ${shortId(e.original_exec_id)}`)
      : ""));
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
