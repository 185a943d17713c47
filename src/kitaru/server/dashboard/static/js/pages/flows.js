import { api } from "../api.js";
import { h, replace, badge, shortId, fmtTime } from "../dom.js";

export async function render(main) {
  const page = await api("/flows?recent=5");
  replace(main, h("h1", null, "Flows"),
    h("table", { class: "list", id: "flows" },
      h("thead", null, h("tr", null, ["Flow", "Executions", "Success rate", "By status", "Last run", "Recent"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", null, page.items.map((f) => h("tr", { dataset: { flow: f.flow_name } },
        h("th", { scope: "row" }, h("a", { href: `#/executions?flow=${encodeURIComponent(f.flow_name)}` }, f.flow_name)),
        h("td", { class: "num" }, String(f.total)),
        h("td", { class: "num" }, f.success_rate === null ? "—" : h("span", null,
          h("meter", { min: 0, max: 1, value: f.success_rate, "aria-label": `success rate of ${f.flow_name}` }),
          ` ${Math.round(f.success_rate * 100)}%`)),
        h("td", null, Object.entries(f.by_status).map(([s, n]) => h("span", { class: "count" }, badge(s), ` ${n} `))),
        h("td", null, fmtTime(f.last_created_at)),
        h("td", null, f.recent.map((r) => h("a", { href: `#/executions/${r.exec_id}`, class: "recent", title: `${r.exec_id} ${r.status}` }, badge(r.status), " ", shortId(r.exec_id), " "))))))));
  return null;
}
