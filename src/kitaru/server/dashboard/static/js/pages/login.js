import { api, session } from "../api.js";
import { h, replace, errorBox } from "../dom.js";
import { loggedIn } from "../main.js";

export function render(main) {
  const status = h("div", { "aria-live": "polite" });
  const input = h("input", {
    id: "api-key", name: "api-key", type: "password", autocomplete: "off", required: true,
    spellcheck: "false", size: 48,
  });
  async function submit(event) {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    session.set(key);
    try {
      const me = await api("/me");
      loggedIn(me);
    } catch (err) {
      session.clear();
      replace(status, errorBox(err));
      input.focus();
    }
  }
  replace(main,
    h("h1", null, "Log in"),
    h("form", { class: "card login", onsubmit: submit },
      h("label", { for: "api-key" }, "API key"),
      input,
      h("p", { class: "hint" },
        "Create one with `kitaru auth api-keys create ACCOUNT NAME`. It is kept in this tab only ",
        "(sessionStorage) and sent as a header, never in a URL."),
      h("button", { type: "submit", class: "primary" }, "Log in"),
      status));
  input.focus();
}
