// The dashboard's router: every page is a "#/..." fragment; each page module
// exports render(main, params, ctx) and may return a cleanup function.

import { api, session } from "./api.js";
import { h, replace, errorBox } from "./dom.js";
import * as login from "./pages/login.js";
import * as executions from "./pages/executions.js";
import * as execution from "./pages/execution.js";
import * as replay from "./pages/replay.js";
import * as compare from "./pages/compare.js";
import * as waits from "./pages/waits.js";
import * as flows from "./pages/flows.js";
import * as stacks from "./pages/stacks.js";

const ROUTES = [
  [/^\/login$/, login],
  [/^\/?$/, executions],
  [/^\/executions$/, executions],
  [/^\/executions\/([^/]+)$/, execution, ["id"]],
  [/^\/executions\/([^/]+)\/replay$/, replay, ["id"]],
  [/^\/compare\/([^/]+)\/([^/]+)$/, compare, ["a", "b"]],
  [/^\/waits$/, waits],
  [/^\/flows$/, flows],
  [/^\/stacks$/, stacks],
];

const ctx = { me: null };
let cleanup = null;

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/executions";
  const [path, search] = raw.split("?");
  return { path, search: new URLSearchParams(search || "") };
}

async function whoami() {
  if (!session.key) return null;
  try {
    return await api("/me");
  } catch (err) {
    if (err.status === 401) session.clear();
    return null;
  }
}

function renderWho() {
  const who = document.getElementById("who");
  const nav = document.getElementById("nav");
  nav.hidden = !ctx.me;
  if (!ctx.me) { replace(who); return; }
  replace(who,
    h("span", { class: "muted" }, `${ctx.me.service_account} / ${ctx.me.name} (${ctx.me.access})`),
    h("button", { type: "button", class: "link", id: "logout", onclick: logout }, "Log out"));
}

function logout() {
  session.clear();
  ctx.me = null;
  renderWho();
  location.hash = "#/login";
}

async function route() {
  if (cleanup) { try { cleanup(); } catch (_) { /* ignore */ } cleanup = null; }
  const main = document.getElementById("main");
  const { path, search } = parseHash();
  if (!ctx.me && path !== "/login") {
    ctx.me = await whoami();
    renderWho();
    if (!ctx.me) {
      sessionStorage.setItem("kitaru.next", location.hash || "#/executions");
      location.hash = "#/login";
      return;
    }
  }
  for (const link of document.querySelectorAll("#nav a")) {
    const current = path.startsWith(link.getAttribute("href").slice(1));
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const [pattern, page, names] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    const params = { search };
    (names || []).forEach((name, i) => { params[name] = decodeURIComponent(match[i + 1]); });
    replace(main, h("p", { class: "muted" }, "Loading…"));
    try {
      cleanup = (await page.render(main, params, ctx)) || null;
      const heading = main.querySelector("h1");
      document.title = heading ? `${heading.textContent.trim()} · Kitaru` : "Kitaru";
    } catch (err) {
      replace(main, errorBox(err));
    }
    return;
  }
  replace(main, h("h1", null, "Not found"), h("p", null, h("a", { href: "#/executions" }, "Executions")));
}

export function loggedIn(me) {
  ctx.me = me;
  renderWho();
  const next = sessionStorage.getItem("kitaru.next") || "#/executions";
  sessionStorage.removeItem("kitaru.next");
  location.hash = next === "#/login" ? "#/executions" : next;
}

window.addEventListener("kitaru:unauthorized", () => {
  if (parseHash().path !== "/login") logout();
});
window.addEventListener("hashchange", route);
route();
