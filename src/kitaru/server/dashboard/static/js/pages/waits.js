// All pending waits, across executions; each can be answered right here.

import { api } from "../api.js";
import { h, replace, shortId, fmtTime } from "../dom.js";
import { waitForm } from "../waitform.js";

export async function render(main, _params, ctx, notice) {
  const page = await api("/waits");
  const list = h("div", { id: "pending-waits" });
  replace(main, h("h1", null, "Pending waits"),
    notice ? h("p", { class: "ok", id: "waits-status", role: "status" }, notice) : null,
    page.count ? null : h("p", { class: "muted" }, "No execution is waiting for input."), list);
  for (const w of page.items) {
    list.appendChild(h("div", { class: "pending", dataset: { exec: w.exec_id } },
      h("p", null, h("strong", null, w.flow_name), " · ",
        h("a", { href: `#/executions/${w.exec_id}`, class: "mono" }, shortId(w.exec_id)),
        ` · waiting since ${fmtTime(w.entered_waiting_at)}`),
      waitForm(w.exec_id, w, { canWrite: !!(ctx.me && ctx.me.can_write), onDone: (message) => render(main, _params, ctx, message) })));
  }
  return null;
}
