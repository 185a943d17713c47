// A form generated from a wait's JSON schema: booleans, numbers, strings, enums,
// nested objects and arrays; anything else (anyOf, ...) gets a raw JSON field,
// and the whole value can be edited as raw JSON. The server validates; its errors
// are shown next to the fields they name.

import { api } from "./api.js";
import { h, replace, errorBox } from "./dom.js";

let uid = 0;

function resolve(schema, root) {
  let s = schema || {};
  for (let i = 0; i < 10 && s.$ref; i += 1) {
    const path = s.$ref.replace(/^#\//, "").split("/");
    let target = root;
    for (const part of path) target = target ? target[part] : undefined;
    s = { ...(target || {}), ...Object.fromEntries(Object.entries(s).filter(([k]) => k !== "$ref")) };
  }
  // Optional[X] is anyOf [X, null]: edit X, with "null" when left empty.
  const variants = s.anyOf || s.oneOf;
  if (variants) {
    const nonNull = variants.filter((v) => v.type !== "null");
    if (nonNull.length === 1) return { ...resolve(nonNull[0], root), nullable: true, title: s.title, default: s.default, description: s.description };
  }
  return s;
}

/** A field: { el, get() -> value, path } registered in `fields` for error placement. */
function field(schema, root, path, label, fields, required) {
  const s = resolve(schema, root);
  const id = `wf-${(uid += 1)}`;
  const err = h("div", { class: "field-error", id: `${id}-err`, "aria-live": "polite" });
  const title = s.title || label;
  const help = s.description ? h("div", { class: "hint" }, s.description) : null;
  let get;
  let el;
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  if (Array.isArray(s.enum)) {
    const select = h("select", { id, name: path || "value", "aria-describedby": `${id}-err` },
      !required || s.nullable ? h("option", { value: "" }, "—") : null,
      s.enum.map((v, i) => h("option", { value: String(i), selected: s.default === v }, JSON.stringify(v))));
    get = () => (select.value === "" ? (s.nullable ? null : undefined) : s.enum[Number(select.value)]);
    el = h("div", { class: "field" }, h("label", { for: id }, title), select, help, err);
  } else if (type === "boolean") {
    const box = h("input", { id, type: "checkbox", name: path || "value", checked: s.default === true, "aria-describedby": `${id}-err` });
    get = () => box.checked;
    el = h("div", { class: "field check" }, box, h("label", { for: id }, title), help, err);
  } else if (type === "integer" || type === "number") {
    const input = h("input", { id, type: "number", name: path || "value", step: type === "integer" ? "1" : "any", value: s.default ?? "", "aria-describedby": `${id}-err`, required: required && !s.nullable });
    get = () => {
      if (input.value === "") return s.nullable ? null : undefined;
      const n = Number(input.value);
      return Number.isNaN(n) ? input.value : n;
    };
    el = h("div", { class: "field" }, h("label", { for: id }, title), input, help, err);
  } else if (type === "string") {
    const long = (s.maxLength || 0) > 200 || s.format === "textarea";
    const input = long
      ? h("textarea", { id, name: path || "value", rows: 3, "aria-describedby": `${id}-err` }, s.default ?? "")
      : h("input", { id, type: "text", name: path || "value", value: s.default ?? "", "aria-describedby": `${id}-err` });
    get = () => (input.value === "" && s.nullable ? null : input.value);
    el = h("div", { class: "field" }, h("label", { for: id }, title), input, help, err);
  } else if (type === "object" && s.properties) {
    const req = new Set(s.required || []);
    const children = Object.entries(s.properties).map(([name, sub]) => [name, field(sub, root, path ? `${path}/${name}` : name, name, fields, req.has(name))]);
    get = () => {
      const out = {};
      for (const [name, child] of children) {
        const v = child.get();
        if (v !== undefined) out[name] = v;
      }
      return out;
    };
    el = h("fieldset", { class: "field object" }, h("legend", null, title), help, children.map(([, c]) => c.el), err);
  } else if (type === "array" && s.items && !Array.isArray(s.items)) {
    const items = [];
    const list = h("div", { class: "array-items" });
    const add = () => {
      const index = items.length;
      const child = field(s.items, root, `${path ? `${path}/` : ""}${index}`, `${title} item ${index + 1}`, fields, true);
      const wrap = h("div", { class: "array-item" }, child.el,
        h("button", { type: "button", class: "link", onclick: () => { items.splice(items.indexOf(entry), 1); wrap.remove(); } }, `Remove item`));
      const entry = { child, wrap };
      items.push(entry);
      list.appendChild(wrap);
    };
    (Array.isArray(s.default) ? s.default : []).forEach(add);
    get = () => items.map((e) => e.child.get());
    el = h("fieldset", { class: "field array" }, h("legend", null, title), help, list,
      h("button", { type: "button", onclick: add }, `Add ${title} item`), err);
  } else {
    // No form control fits this schema: a JSON text field for just this part.
    const area = h("textarea", { id, name: path || "value", rows: 3, class: "mono", "aria-describedby": `${id}-err` },
      s.default !== undefined ? JSON.stringify(s.default) : "");
    get = () => {
      if (area.value.trim() === "") return s.nullable ? null : undefined;
      try { return JSON.parse(area.value); } catch (_) { throw new Error(`${title}: not valid JSON`); }
    };
    el = h("div", { class: "field" }, h("label", { for: id }, `${title} (JSON)`), area, help, err);
  }
  el.dataset.path = path;
  fields.set(path, err);
  return { el, get, path };
}

/** [fieldPath, text] pairs from the server's structured details of an invalid answer. */
export function fieldErrors(details) {
  return (details || []).map((d) => [(d.path || []).join("/"), d.message]);
}

export function waitForm(execId, wait, { canWrite, onDone }) {
  const fields = new Map();
  const box = h("div", { class: "wait card", id: `wait-${wait.wait_id}`, dataset: { wait: wait.wait_id } });
  const heading = h("h3", null, `‖ Waiting for input: ${wait.name || wait.wait_id}`);
  const question = wait.question ? h("p", { class: "question" }, wait.question) : null;
  if (!canWrite) {
    replace(box, heading, question, h("p", { class: "muted" }, "Your API key is read-only."));
    return box;
  }
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const schema = wait.schema;
  let root = null;
  let raw = null;
  const noValue = !schema && !wait.pickled_schema;
  if (schema) root = field(schema, schema, "", "Answer", fields, true);
  raw = h("textarea", { id: `raw-${wait.wait_id}`, class: "mono", rows: 6, "aria-label": "Answer as raw JSON" });
  const rawWrap = h("div", { class: "raw", hidden: !!schema || noValue },
    h("label", { for: `raw-${wait.wait_id}` }, "Answer as raw JSON"), raw);
  let useRaw = !schema && !noValue;
  const toggle = schema ? h("button", {
    type: "button", class: "link", onclick: () => {
      useRaw = !useRaw;
      if (useRaw) { try { raw.value = JSON.stringify(root.get(), null, 2); } catch (_) { /* keep */ } }
      rawWrap.hidden = !useRaw;
      root.el.hidden = useRaw;
      toggle.textContent = useRaw ? "Edit with the form" : "Edit as raw JSON";
    },
  }, "Edit as raw JSON") : null;

  async function send(abort) {
    for (const err of fields.values()) replace(err);
    replace(status);
    let value = null;
    if (!abort && !noValue) {
      try {
        value = useRaw ? JSON.parse(raw.value) : root.get();
      } catch (err) {
        replace(status, errorBox({ type: "Invalid JSON", message: err.message }));
        return;
      }
    }
    const path = abort ? "abort-wait" : "input";
    const body = abort ? { wait: wait.wait_id } : { wait: wait.wait_id, value };
    try {
      await api(`/executions/${encodeURIComponent(execId)}/${path}`, { method: "POST", body });
      const message = abort ? "Wait aborted." : "Answer sent; the execution continues.";
      replace(status, h("p", { class: "ok" }, message));
      if (onDone) onDone(message);
    } catch (err) {
      replace(status, errorBox(err));
      for (const [p, text] of fieldErrors(err.details)) {
        const target = fields.get(p) || fields.get("");
        if (target) target.appendChild(h("div", null, text));
      }
    }
  }
  const form = h("form", { class: "wait-form", novalidate: true, onsubmit: (e) => { e.preventDefault(); send(false); } },
    root ? root.el : null,
    noValue ? h("p", { class: "muted" }, "A plain continue gate: no value needed.") : null,
    wait.pickled_schema && !schema ? h("p", { class: "muted" }, "This wait's schema is a Python type the server cannot read; answer with raw JSON.") : null,
    rawWrap, toggle,
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, noValue ? "Continue" : "Submit answer"),
      h("button", { type: "button", class: "danger", onclick: () => send(true) }, "Abort wait")),
    status);
  replace(box, heading, question, form);
  return box;
}
