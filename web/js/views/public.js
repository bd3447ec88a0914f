// Public pages: sign up, check your inbox, confirm (from the mail's link), unsubscribe
// (from the mail's link: one button), and "page not found".

import { api, isAbort } from "../api.js";
import { field, h, statusLine } from "../dom.js";

export const CONSENT_TEXT =
  "I agree to receive the Mailroom newsletter by email. I can unsubscribe at any time with the link in every mail.";

export function signUp(ctx) {
  const email = field(
    "Email address",
    h("input", { type: "email", name: "email", autocomplete: "email", inputmode: "email", required: true, spellcheck: "false" }),
  );
  const name = field("Name", h("input", { type: "text", name: "name", autocomplete: "name", maxlength: "100" }), { optional: true });
  const consentBox = h("input", { type: "checkbox", id: "consent", name: "consent", required: true, "aria-describedby": "consent-error" });
  const consentError = h("p", { class: "field-error", id: "consent-error", hidden: true });
  const consent = h(
    "div",
    { class: "field checkbox" },
    consentBox,
    h("label", { for: "consent" }, CONSENT_TEXT),
    consentError,
  );
  // The honeypot (docs/abuse.md): a field people never see or reach (off screen, out of the
  // tab order, hidden from assistive technology). A bot that fills in every field fills it
  // too; the API answers such a sign-up like any other and does nothing.
  const trapInput = h("input", { type: "text", id: "website", name: "website", tabindex: "-1", autocomplete: "off" });
  const trap = h("div", { class: "trap", "aria-hidden": "true" }, h("label", { for: "website" }, "Leave this empty"), trapInput);
  const button = h("button", { type: "submit", class: "primary" }, "Subscribe");
  const status = statusLine();
  const fields = { email, name };

  function setConsentError(text) {
    consentError.textContent = text || "";
    consentError.hidden = !text;
    if (text) consentBox.setAttribute("aria-invalid", "true");
    else consentBox.removeAttribute("aria-invalid");
  }

  async function submit(event) {
    event.preventDefault();
    email.setError("");
    name.setError("");
    setConsentError("");
    status.show("", "");
    const address = email.input.value.trim();
    if (!address) {
      email.setError("Please enter your email address.");
      email.input.focus();
      return;
    }
    if (!email.input.checkValidity()) {
      email.setError("This does not look like an email address (for example ada@example.com).");
      email.input.focus();
      return;
    }
    if (!consentBox.checked) {
      setConsentError("Please agree to receive the newsletter, or we cannot send it to you.");
      consentBox.focus();
      return;
    }
    const body = { email: address, consent: CONSENT_TEXT };
    const person = name.input.value.trim();
    if (person) body.name = person;
    if (trapInput.value) body.website = trapInput.value;
    button.disabled = true;
    status.show("Sending…", "pending");
    try {
      await api("POST", "/subscriptions", { body, signal: ctx.signal });
      sessionStorage.setItem("mailroom.signup.email", address);
      ctx.navigate("/check-inbox");
    } catch (error) {
      if (isAbort(error)) return;
      const target = fields[(error.field || "").split(".")[0]];
      if (target) {
        target.setError(error.message);
        target.input.focus();
      }
      status.show(error.message, "error");
    } finally {
      button.disabled = false;
    }
  }

  return h(
    "section",
    { class: "panel narrow" },
    h("h1", {}, "Subscribe to the newsletter"),
    h("p", { class: "lead" }, "One mail a week at most. We ask you to confirm your address first, and you can leave with one click."),
    h("form", { novalidate: true, onsubmit: submit, "aria-label": "Subscribe" }, email.wrapper, name.wrapper, consent, trap, button),
    status.node,
  );
}

export function checkInbox() {
  let address = "";
  try {
    address = sessionStorage.getItem("mailroom.signup.email") || "";
  } catch (ignored) {
    address = "";
  }
  return h(
    "section",
    { class: "panel narrow" },
    h("h1", {}, "Check your inbox"),
    h(
      "p",
      { class: "lead" },
      address ? ["We sent a mail to ", h("strong", {}, address), " with a link to confirm your subscription."] : "We sent you a mail with a link to confirm your subscription.",
    ),
    h("p", {}, "The link expires after a few days. Nothing arrived? Look in your spam folder, or ", h("a", { href: "/", "data-link": true }, "sign up again"), " to get a new link."),
  );
}

function tokenOf(ctx) {
  return (ctx.query.get("token") || "").trim();
}

function result(title, message, kind, extra) {
  return h(
    "section",
    { class: `panel narrow result ${kind}` },
    h("h1", {}, title),
    h("p", { class: "lead", "data-result": kind }, message),
    extra || null,
  );
}

export async function confirm(ctx) {
  const token = tokenOf(ctx);
  if (!token) return result("Invalid link", "This link has no token. Please use the link from the mail as it is.", "error");
  try {
    const answer = await api("GET", `/subscriptions/confirm?token=${encodeURIComponent(token)}`, { signal: ctx.signal });
    if (answer.status === "confirmed") {
      return result("Subscription confirmed", "Thank you: your subscription is confirmed.", "success");
    }
    return result("Not subscribed", answer.message || "This address is not subscribed; nothing was changed.", "info");
  } catch (error) {
    if (isAbort(error)) throw error;
    if (error.status === 404) {
      return result("Link expired", "This confirmation link has expired.", "error", h("p", {}, h("a", { href: "/", "data-link": true }, "Sign up again"), " to get a new one."));
    }
    if (error.code === "invalid_link") {
      return result("Invalid link", "This link is invalid or has expired. Please use the link from the mail as it is.", "error");
    }
    return result("Could not confirm", error.message, "error", h("p", {}, "Please open the link again in a moment."));
  }
}

export async function unsubscribe(ctx) {
  const token = tokenOf(ctx);
  if (!token) return result("Invalid link", "This link has no token. Please use the link from the mail as it is.", "error");
  const path = `/unsubscribe?token=${encodeURIComponent(token)}`;
  try {
    await api("GET", path, { signal: ctx.signal }); // checks the link; a GET never unsubscribes
  } catch (error) {
    if (isAbort(error)) throw error;
    if (error.code === "invalid_link") return result("Invalid link", "This unsubscribe link is invalid. Please use the link from the mail as it is.", "error");
    return result("Could not load", error.message, "error");
  }
  const status = statusLine();
  const button = h("button", { type: "submit", class: "primary danger" }, "Unsubscribe");
  const section = h(
    "section",
    { class: "panel narrow" },
    h("h1", {}, "Unsubscribe"),
    h("p", { class: "lead" }, "Press the button to receive no more mails from this newsletter."),
    h(
      "form",
      {
        "aria-label": "Unsubscribe",
        onsubmit: async (event) => {
          event.preventDefault();
          button.disabled = true;
          status.show("Unsubscribing…", "pending");
          try {
            await api("POST", path, { raw: "List-Unsubscribe=One-Click", contentType: "application/x-www-form-urlencoded", signal: ctx.signal });
            section.replaceWith(
              result("You are unsubscribed", "You will receive no more newsletters. Changed your mind? You can subscribe again at any time.", "success",
                h("p", {}, h("a", { href: "/", "data-link": true }, "Subscribe again"))),
            );
            const heading = document.querySelector("#main h1");
            if (heading) {
              document.title = `${heading.textContent} · Mailroom`;
              heading.setAttribute("tabindex", "-1");
              heading.focus();
            }
          } catch (error) {
            if (isAbort(error)) return;
            status.show(error.message, "error");
            button.disabled = false;
          }
        },
      },
      button,
    ),
    status.node,
  );
  return section;
}

export function notFound() {
  return h(
    "section",
    { class: "panel narrow" },
    h("h1", {}, "Page not found"),
    h("p", {}, "There is no page at this address. ", h("a", { href: "/", "data-link": true }, "Go to the sign-up page"), "."),
  );
}
