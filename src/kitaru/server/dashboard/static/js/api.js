// The server's /api/v1, with the API key from this tab's sessionStorage as a
// Bearer header. The key is never put in a URL; closing the tab forgets it.

const KEY = "kitaru.apiKey";
export const BASE = "/api/v1";

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set(key) { sessionStorage.setItem(KEY, key); },
  clear() { sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  constructor(status, type, message, details = []) {
    super(message);
    this.status = status;
    this.type = type;
    this.details = details; // [{path, message}] for an invalid wait answer
  }
}

function headers(extra) {
  const out = { Accept: "application/json", ...extra };
  if (session.key) out.Authorization = `Bearer ${session.key}`;
  return out;
}

async function failure(response) {
  let type = `HTTP ${response.status}`;
  let message = response.statusText || "Request failed";
  let details = [];
  try {
    const body = await response.json();
    if (body && body.error) {
      type = body.error.type || type;
      message = body.error.message || message;
      if (Array.isArray(body.error.details)) details = body.error.details;
    } else if (body && body.detail) {
      message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
  } catch (_) { /* not JSON */ }
  if (response.status === 401) window.dispatchEvent(new CustomEvent("kitaru:unauthorized"));
  return new ApiError(response.status, type, message, details);
}

/** GET/POST/DELETE a JSON route; throws ApiError with the server's typed error. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(BASE + path, init);
  if (!response.ok) throw await failure(response);
  return response.json();
}

/** The raw bytes of a route (artifact download), as a Blob. */
export async function blob(path) {
  const response = await fetch(BASE + path, { headers: headers({ Accept: "*/*" }) });
  if (!response.ok) throw await failure(response);
  return response.blob();
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v)) v.forEach((item) => q.append(k, item));
    else q.set(k, v);
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

/**
 * Follow a server-sent-events route. EventSource cannot send an Authorization
 * header, so this reads the stream with fetch and parses it; it reconnects with
 * Last-Event-ID after a dropped connection. Returns a function that stops it.
 */
export function follow(path, onMessage, { onEnd } = {}) {
  const controller = new AbortController();
  let lastId = null;
  let retry = 1000;
  let stopped = false;

  async function run() {
    while (!stopped) {
      try {
        const h = headers({ Accept: "text/event-stream" });
        if (lastId) h["Last-Event-ID"] = lastId;
        const response = await fetch(BASE + path, { headers: h, signal: controller.signal });
        if (!response.ok) throw await failure(response);
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let event = "message";
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith(":")) continue;
              const colon = line.indexOf(":");
              const field = colon < 0 ? line : line.slice(0, colon);
              const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              if (field === "event") event = val;
              else if (field === "data") data.push(val);
              else if (field === "id") lastId = val;
              else if (field === "retry") retry = Number(val) || retry;
            }
            if (!data.length) continue;
            let parsed;
            try { parsed = JSON.parse(data.join("\n")); } catch (_) { parsed = data.join("\n"); }
            onMessage(event, parsed);
            if (event === "end") {
              stopped = true;
              if (onEnd) onEnd(parsed);
              controller.abort();
              return;
            }
          }
        }
      } catch (err) {
        if (stopped || controller.signal.aborted) return;
        if (err instanceof ApiError && err.status < 500) return;  // 401/403/404: give up
      }
      if (stopped) return;
      await new Promise((resolve) => setTimeout(resolve, retry));
    }
  }
  run();
  return () => { stopped = true; controller.abort(); };
}
