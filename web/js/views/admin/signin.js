// Sign in with the admin's email and password (the admins' Cognito user pool, through
// POST /api/auth/sign-in). The ID token it returns is kept for this tab and sent with every
// admin call; API Gateway's authorizer checks it. An admin's first sign-in, with the
// temporary password Cognito mailed, asks for a password of their own.

import { api, isAbort } from "../../api.js";
import { setToken } from "../../auth.js";
import { append, field, h, statusLine } from "../../dom.js";

export function signIn(ctx) {
  const email = field(
    "Email",
    h("input", { type: "email", name: "email", autocomplete: "username", required: true, spellcheck: "false" }),
  );
  const password = field(
    "Password",
    h("input", { type: "password", name: "password", autocomplete: "current-password", required: true }),
  );
  const status = statusLine();
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const next = ctx.query.get("next");
  const target = next && next.startsWith("/admin") && !next.startsWith("/admin/sign-in") ? next : "/admin";
  const panel = h("section", { class: "panel narrow" });

  function signedIn(result) {
    setToken(result.id_token);
    ctx.navigate(target, { replace: true });
  }

  function refused(error, at) {
    const message =
      error.code === "wrong_credentials" ? "Wrong email or password." : error.message || "The sign-in failed.";
    at.setError(message);
    status.show(message, "error");
    at.input.focus();
  }

  async function submit(event) {
    event.preventDefault();
    email.setError("");
    password.setError("");
    if (!email.input.value.trim()) {
      email.setError("Please enter your email address.");
      email.input.focus();
      return;
    }
    if (!password.input.value) {
      password.setError("Please enter your password.");
      password.input.focus();
      return;
    }
    button.disabled = true;
    status.show("Signing in…", "pending");
    try {
      const result = await api("POST", "/auth/sign-in", {
        body: { email: email.input.value.trim(), password: password.input.value },
        signal: ctx.signal,
      });
      if (result.challenge === "NEW_PASSWORD_REQUIRED") {
        choosePassword(email.input.value.trim(), result.session);
        return;
      }
      signedIn(result);
    } catch (error) {
      if (isAbort(error)) return;
      refused(error, error.field === "email" ? email : password);
    } finally {
      button.disabled = false;
    }
  }

  // The first sign-in: Cognito wants a new password before it issues tokens.
  function choosePassword(address, session) {
    const chosen = field(
      "New password",
      h("input", { type: "password", name: "new-password", autocomplete: "new-password", required: true }),
      { hint: "At least 12 characters, with upper and lower case letters and a digit." },
    );
    const again = field(
      "Repeat the new password",
      h("input", { type: "password", name: "new-password-again", autocomplete: "new-password", required: true }),
    );
    const save = h("button", { type: "submit", class: "primary" }, "Set password and sign in");
    async function submitPassword(event) {
      event.preventDefault();
      chosen.setError("");
      again.setError("");
      if (chosen.input.value !== again.input.value) {
        again.setError("The two passwords differ.");
        again.input.focus();
        return;
      }
      save.disabled = true;
      status.show("Setting your password…", "pending");
      try {
        signedIn(
          await api("POST", "/auth/new-password", {
            body: { email: address, session, new_password: chosen.input.value },
            signal: ctx.signal,
          }),
        );
      } catch (error) {
        if (isAbort(error)) return;
        refused(error, chosen);
      } finally {
        save.disabled = false;
      }
    }
    panel.replaceChildren(
      h("h1", {}, "Choose your password"),
      h("p", {}, "This is your first sign-in: please replace the temporary password you were sent."),
      h(
        "form",
        { novalidate: true, onsubmit: submitPassword, "aria-label": "Choose your password" },
        chosen.wrapper,
        again.wrapper,
        save,
      ),
      status.node,
    );
    status.show("", "");
    chosen.input.focus();
  }

  append(panel, [
    h("h1", {}, "Sign in to the admin console"),
    ctx.query.get("expired") ? h("p", { class: "notice" }, "Your sign-in has expired. Please sign in again.") : null,
    h("form", { novalidate: true, onsubmit: submit, "aria-label": "Sign in" }, email.wrapper, password.wrapper, button),
    status.node,
  ]);
  return panel;
}
