// Sign in: the admin's bearer token. The API verifies it (issue #7: Cognito); here the console
// checks it with one admin call before keeping it for this tab.

import { admin, isAbort } from "../../api.js";
import { setToken, signOut } from "../../auth.js";
import { field, h, statusLine } from "../../dom.js";

export function signIn(ctx) {
  const token = field(
    "Admin token",
    h("input", { type: "password", name: "token", autocomplete: "current-password", required: true, spellcheck: "false" }),
    { hint: "A bearer token for the admin API. It is kept in this tab only and sent with each admin request." },
  );
  const status = statusLine();
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const next = ctx.query.get("next");
  const target = next && next.startsWith("/admin") && !next.startsWith("/admin/sign-in") ? next : "/admin";

  async function submit(event) {
    event.preventDefault();
    token.setError("");
    const value = token.input.value.trim();
    if (!value) {
      token.setError("Please enter your admin token.");
      token.input.focus();
      return;
    }
    button.disabled = true;
    status.show("Checking…", "pending");
    setToken(value);
    try {
      await admin("GET", "/campaigns?limit=1", { signal: ctx.signal, signOutOn401: false });
      ctx.navigate(target, { replace: true });
    } catch (error) {
      if (isAbort(error)) return;
      signOut();
      const message = error.status === 401 || error.status === 403 ? "This token was not accepted." : error.message;
      token.setError(message);
      status.show(message, "error");
      token.input.focus();
    } finally {
      button.disabled = false;
    }
  }

  return h(
    "section",
    { class: "panel narrow" },
    h("h1", {}, "Sign in to the admin console"),
    ctx.query.get("expired") ? h("p", { class: "notice" }, "Your sign-in has expired. Please sign in again.") : null,
    h("form", { novalidate: true, onsubmit: submit, "aria-label": "Sign in" }, token.wrapper, button),
    status.node,
  );
}
