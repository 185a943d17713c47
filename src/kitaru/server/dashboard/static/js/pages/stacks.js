import { api } from "../api.js";
import { h, replace } from "../dom.js";

export async function render(main) {
  const page = await api("/stacks");
  replace(main, h("h1", null, "Stacks"),
    h("table", { class: "list", id: "stacks" },
      h("thead", null, h("tr", null, ["Stack", "Kind", "Active", "Executions"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", null, page.items.map((s) => h("tr", null,
        h("th", { scope: "row" }, s.name), h("td", null, s.kind), h("td", null, s.is_active ? "✓ active" : ""),
        h("td", null, h("a", { href: `#/executions?stack=${encodeURIComponent(s.name)}` }, "show")))))));
  return null;
}
