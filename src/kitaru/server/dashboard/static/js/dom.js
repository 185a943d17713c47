// Building DOM nodes. Every value from the store goes in as a text node or an
// attribute value, never parsed as HTML: a "<script>" in a log line stays text.

/** h("a", {href: "#/x", class: "c", onclick: fn}, "text", child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") {
        el.addEventListener(name.slice(2), value);
      } else if (name === "dataset") {
        Object.assign(el.dataset, value);
      } else if (name === "style" && typeof value === "object") {
        Object.assign(el.style, value);
      } else if (name === "value" || name === "checked" || name === "selected") {
        el[name] = value;
      } else {
        el.setAttribute(name, value === true ? "" : String(value));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  return append(el, children);
}

const STATUS_GLYPH = {
  completed: "✓", failed: "✕", running: "▶", waiting: "‖", cancelled: "⊘",
  cached: "◆", reused: "⇄",
};

/** A status badge: glyph + word, so it never relies on colour alone. */
export function badge(status) {
  const s = String(status || "unknown");
  return h("span", { class: `badge s-${s.replace(/[^a-z_]/g, "")}` }, `${STATUS_GLYPH[s] || "•"} ${s}`);
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : "";
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(undefined, { hour12: false });
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Number(seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} m`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Pretty JSON (or the text itself, for strings) in a <pre>. */
export function pretty(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return h("pre", { class: "value" }, text === undefined ? "undefined" : text);
}

/** Any JSON value as a nested definition list: unknown metadata renders generically. */
export function kv(obj) {
  if (obj === null || obj === undefined) return h("span", { class: "muted" }, "—");
  if (typeof obj !== "object") return h("span", null, String(obj));
  const entries = Array.isArray(obj) ? obj.map((v, i) => [String(i), v]) : Object.entries(obj);
  if (!entries.length) return h("span", { class: "muted" }, Array.isArray(obj) ? "[]" : "{}");
  return h("dl", { class: "kv" }, entries.map(([k, v]) => [
    h("dt", null, k),
    h("dd", null, v !== null && typeof v === "object" ? kv(v) : String(v)),
  ]));
}

export function errorBox(err) {
  const type = err && err.type ? `${err.type}: ` : "";
  return h("div", { class: "error", role: "alert" }, type + (err && err.message ? err.message : String(err)));
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", null, title), children);
}
