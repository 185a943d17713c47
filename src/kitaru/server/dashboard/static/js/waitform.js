// A form generated from a wait's JSON schema: booleans, numbers, strings, enums,
// nested objects and arrays; anything else (anyOf, ...) gets a raw JSON field,
// and the whole value can be edited as raw JSON. A field that may be left without
// a value (Optional[...], or not required) can be: empty, "—", or a "Set" box.
// The server validates; its errors are shown next to the fields they name (or
// with the raw JSON, when that is what was sent).

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
  if (Array.isArray(s.type) && s.type.includes("null")) return { ...s, nullable: true };
  return s;
}

// A property's schema with the default its object gives it (an object's default
// fills its fields; `$ref` siblings win over the target in resolve()).
function withDefault(sub, parentDefault, name) {
  const given = parentDefault && typeof parentDefault === "object" && name in parentDefault;
  return given ? { ...sub, default: parentDefault[name] } : sub;
}

/**
 * A "Set <title>" box for an object or array that may be left without a value: the
 * form cannot build "no value" from its fields (an empty object or list is a
 * value). Unchecked, its fields are hidden and it is sent as null (Optional) or
 * left out (not required: the schema's default applies). It starts as the schema's
 * default: checked only when that is a value.
 */
function unsetToggle(s, id, title, body) {
  const given = s.default !== undefined && s.default !== null;
  const box = h("input", { id: `${id}-set`, type: "checkbox", checked: given,
    onchange: () => { body.hidden = !box.checked; } });
  body.hidden = !given;
  const meaning = s.nullable ? "unchecked: none (null)" : "unchecked: left out, its default applies";
  const el = h("span", { class: "set-toggle" }, box, h("label", { for: `${id}-set` }, `Set ${title}`),
    h("span", { class: "hint" }, ` (${meaning})`));
  return { el, isSet: () => box.checked, unset: () => (s.nullable ? null : undefined) };
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
  } else if (type === "boolean" && s.nullable) {
    // Optional[bool]: a checkbox cannot say "none", a select can.
    const select = h("select", { id, name: path || "value", "aria-describedby": `${id}-err` },
      h("option", { value: "" }, "—"),
      [true, false].map((v) => h("option", { value: String(v), selected: s.default === v }, String(v))));
    get = () => (select.value === "" ? null : select.value === "true");
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
    const children = Object.entries(s.properties).map(([name, sub]) => [name,
      field(withDefault(sub, s.default, name), root, path ? `${path}/${name}` : name, name, fields, req.has(name))]);
    const body = h("div", { class: "object-fields" }, children.map(([, c]) => c.el));
    const toggle = s.nullable || !required ? unsetToggle(s, id, title, body) : null;
    get = () => {
      if (toggle && !toggle.isSet()) return toggle.unset();
      const out = {};
      for (const [name, child] of children) {
        const v = child.get();
        if (v !== undefined) out[name] = v;
      }
      return out;
    };
    el = h("fieldset", { class: "field object" }, h("legend", null, title), toggle && toggle.el, help, body, err);
  } else if (type === "array" && s.items && !Array.isArray(s.items)) {
    const items = [];
    const list = h("div", { class: "array-items" });
    const add = (value) => {
      const index = items.length;
      const itemSchema = value === undefined ? s.items : { ...s.items, default: value };
      const child = field(itemSchema, root, `${path ? `${path}/` : ""}${index}`, `${title} item ${index + 1}`, fields, true);
      const wrap = h("div", { class: "array-item" }, child.el,
        h("button", { type: "button", class: "link", onclick: () => { items.splice(items.indexOf(entry), 1); wrap.remove(); } }, `Remove item`));
      const entry = { child, wrap };
      items.push(entry);
      list.appendChild(wrap);
    };
    (Array.isArray(s.default) ? s.default : []).forEach((value) => add(value));
    // A list left out is an empty one unless it is Optional: only then can it be unset.
    const body = h("div", { class: "array-body" }, list,
      h("button", { type: "button", onclick: () => add() }, `Add ${title} item`));
    const toggle = s.nullable ? unsetToggle(s, id, title, body) : null;
    get = () => (toggle && !toggle.isSet() ? toggle.unset() : items.map((e) => e.child.get()));
    el = h("fieldset", { class: "field array" }, h("legend", null, title), toggle && toggle.el, help, body, err);
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

/** The problems of a raw answer, each with where in the JSON it is. */
function rawErrorList(details) {
  const rows = fieldErrors(details);
  if (!rows.length) return null;
  return h("ul", { class: "field-error" }, rows.map(([p, text]) =>
    h("li", null, p ? h("code", null, p) : "the answer", `: ${text}`)));
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
  // A raw answer's errors go with the raw JSON: the form's fields hold another value.
  const rawErrors = h("div", { class: "raw-errors", id: `raw-${wait.wait_id}-err`, "aria-live": "polite" });
  raw = h("textarea", { id: `raw-${wait.wait_id}`, class: "mono", rows: 6, "aria-label": "Answer as raw JSON", "aria-describedby": rawErrors.id });
  const rawWrap = h("div", { class: "raw", hidden: !!schema || noValue },
    h("label", { for: `raw-${wait.wait_id}` }, "Answer as raw JSON"), raw, rawErrors);
  let useRaw = !schema && !noValue;
  function clearErrors() {
    for (const err of fields.values()) replace(err);
    replace(rawErrors);
    replace(status);
  }
  const toggle = schema ? h("button", {
    type: "button", class: "link", onclick: () => {
      clearErrors();  // they were about the answer the other editor holds
      useRaw = !useRaw;
      if (useRaw) { try { raw.value = JSON.stringify(root.get(), null, 2); } catch (_) { /* keep */ } }
      rawWrap.hidden = !useRaw;
      root.el.hidden = useRaw;
      toggle.textContent = useRaw ? "Edit with the form" : "Edit as raw JSON";
    },
  }, "Edit as raw JSON") : null;

  async function send(abort) {
    clearErrors();
    const sentRaw = useRaw && !abort && !noValue;
    let value = null;
    if (!abort && !noValue) {
      try {
        value = useRaw ? JSON.parse(raw.value) : root.get();
      } catch (err) {
        replace(sentRaw ? rawErrors : status, errorBox({ type: "Invalid JSON", message: err.message }));
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
      if (sentRaw) {
        replace(rawErrors, errorBox(err), rawErrorList(err.details));
        return;
      }
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
