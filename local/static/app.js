// Sign-up form: POST /subscriptions as JSON, then show the answer or the API's error.
"use strict";

(function () {
  const form = document.getElementById("subscribe");
  const result = document.getElementById("result");
  const button = form.querySelector("button[type=submit]");
  const fields = { email: form.elements.email, name: form.elements.name };

  function clearErrors() {
    for (const [key, input] of Object.entries(fields)) {
      input.removeAttribute("aria-invalid");
      const message = document.getElementById(key + "-error");
      message.textContent = "";
      message.hidden = true;
    }
    result.className = "";
  }

  function show(text, kind) {
    result.textContent = text;
    result.className = kind;
  }

  function markField(field, text) {
    const key = (field || "").split(".")[0];
    const input = fields[key];
    if (!input) return false;
    const message = document.getElementById(key + "-error");
    input.setAttribute("aria-invalid", "true");
    message.textContent = text;
    message.hidden = false;
    input.focus();
    return true;
  }

  function errorText(status, data) {
    if (data && data.error && data.error.message) return data.error.message;
    if (data && data.message) return data.message;
    return "The request failed (HTTP " + status + ").";
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    clearErrors();
    const email = fields.email.value.trim();
    if (!email) {
      markField("email", "Please enter your email address.");
      show("Please enter your email address.", "error");
      return;
    }
    const payload = { email: email };
    const name = fields.name.value.trim();
    if (name) payload.name = name;

    button.disabled = true;
    show("Sending…", "pending");
    try {
      const response = await fetch("/subscriptions", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify(payload),
      });
      let data = null;
      try {
        data = await response.json();
      } catch (ignored) {
        data = null;
      }
      if (response.ok) {
        show("Thank you! Check " + email + " for a mail with a link to confirm your subscription.", "success");
        form.reset();
      } else {
        const text = errorText(response.status, data);
        if (data && data.error) markField(data.error.field, text);
        show(text, "error");
      }
    } catch (error) {
      show("Could not reach the server: " + error.message, "error");
    } finally {
      button.disabled = false;
    }
  });
})();
