// /admin/campaigns/new and /admin/campaigns/:id/edit: write a campaign with a live preview
// (POST /campaigns/preview as the admin types, shown in a sandboxed iframe), then save it as a
// draft, schedule it, send it now, or send a test mail.

import { admin, isAbort } from "../../api.js";
import { field, h, statusLine } from "../../dom.js";
import { campaignPath, confirmSending } from "./campaigns.js";
import { isoWithOffset, localInputValue, zoneDescription } from "./time.js";
import { badge, failure } from "./ui.js";

const PREVIEW_DELAY_MS = 400;
const EDITABLE = new Set(["draft", "scheduled"]);
const TEMPLATE_HINT = "Template fields: {{ name }}, {{ email }}, {{ unsubscribe_url }}, {{ sender_name }}, and in the content {{ subject }}.";
const FORMAT_HINTS = {
  markdown: "Markdown (CommonMark with tables); HTML in it is shown as text. The text version is the Markdown itself.",
  html: "HTML for the mail's body (the layout with the unsubscribe footer is added around it).",
};

function notEditable(campaign) {
  return h(
    "section",
    { class: "panel narrow" },
    h("h1", {}, "This campaign cannot be edited"),
    h("p", {}, "It is ", badge(campaign.status), ": only draft and scheduled campaigns can be changed."),
    h("p", {}, h("a", { href: campaignPath(campaign), "data-link": true }, "Go to the campaign")),
  );
}

/** The unsaved draft kept under key, or null. */
function readDraft(key) {
  try {
    const value = JSON.parse(sessionStorage.getItem(key) || "null");
    if (value && typeof value.subject === "string" && typeof value.content === "string") {
      return { subject: value.subject, content: value.content, format: String(value.format || ""), send_at: String(value.send_at || "") };
    }
  } catch (ignored) {
    // unreadable or unavailable storage: no draft
  }
  return null;
}

/** Keeps a draft (null forgets it); storage that is full or off only loses the convenience. */
function writeDraft(key, value) {
  try {
    if (value === null) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, JSON.stringify(value));
  } catch (ignored) {
    // nothing to do: the form still holds the text
  }
}

export async function compose(ctx) {
  let campaign = null;
  if (ctx.params.id) {
    try {
      campaign = await admin("GET", `/campaigns/${encodeURIComponent(ctx.params.id)}`, { signal: ctx.signal });
    } catch (error) {
      if (isAbort(error)) throw error;
      return failure("Edit campaign", error);
    }
    if (!EDITABLE.has(campaign.status)) return notEditable(campaign);
  }

  // ---- the form ----
  const subject = field("Subject", h("input", { type: "text", name: "subject", maxlength: "200", required: true, autocomplete: "off" }), {
    hint: "One line, at most 200 characters. It can use {{ name }}.",
  });
  const format = field(
    "Format",
    h("select", { name: "format" }, h("option", { value: "markdown" }, "Markdown"), h("option", { value: "html" }, "HTML")),
  );
  const content = field("Content", h("textarea", { name: "content", required: true, rows: "16", spellcheck: "true" }), { hint: TEMPLATE_HINT });
  const formatHint = h("p", { class: "hint" }, "");
  const schedule = field("Send at", h("input", { type: "datetime-local", name: "send_at" }), {
    optional: true,
    hint: `In your browser's time zone, ${zoneDescription()}. It goes out at the first run of the sending schedule at or after this time. "Save draft" keeps it unscheduled.`,
  });
  const fields = { subject, format, content, send_at: schedule };
  const status = statusLine();

  const saveButton = h("button", { type: "submit" }, "Save draft");
  const scheduleButton = h("button", { type: "button" }, "Schedule");
  const sendButton = h("button", { type: "button", class: "primary" }, "Send now");
  const buttons = [saveButton, scheduleButton, sendButton];

  // ---- the test mail ----
  const testEmail = field("Send a test to", h("input", { type: "email", name: "test_email", autocomplete: "email", inputmode: "email", spellcheck: "false" }), {
    hint: "The mail as this address would get it, subject prefixed [Test]. The campaign is saved first.",
  });
  const testButton = h("button", { type: "submit" }, "Send test");
  const testStatus = statusLine();
  buttons.push(testButton);

  // ---- the preview ----
  const frame = h("iframe", { sandbox: "", title: "Mail preview", class: "preview-frame", "data-testid": "preview-frame" });
  const previewTo = h("dd", { "data-testid": "preview-to" }, "–");
  const previewSubject = h("dd", { "data-testid": "preview-subject" }, "–");
  const previewText = h("pre", { class: "preview-text", "data-testid": "preview-text" }, "");
  const previewStatus = statusLine({ "data-testid": "preview-status" });

  if (campaign) {
    subject.input.value = campaign.subject;
    format.input.value = campaign.format || "markdown";
    content.input.value = campaign.content;
    schedule.input.value = localInputValue(campaign.send_at);
  }
  // Unsaved changes live in this tab's sessionStorage until they are saved: a reload, or a
  // sign-in that expired in the middle of writing (app.js), brings them back.
  const draftKey = `mailroom.draft.${campaign ? campaign.id : "new"}`;
  const restored = readDraft(draftKey);
  if (restored) {
    subject.input.value = restored.subject;
    format.input.value = restored.format === "html" ? "html" : "markdown";
    content.input.value = restored.content;
    schedule.input.value = restored.send_at;
  }
  function keepDraft() {
    writeDraft(draftKey, {
      subject: subject.input.value,
      format: format.input.value,
      content: content.input.value,
      send_at: schedule.input.value,
    });
  }
  formatHint.textContent = FORMAT_HINTS[format.input.value];
  format.wrapper.append(formatHint);

  function setBusy(busy) {
    for (const button of buttons) button.disabled = busy;
  }

  function clearErrors() {
    for (const entry of Object.values(fields)) entry.setError("");
    testEmail.setError("");
  }

  /** Shows an API error next to its field (error.field), else in the status line. */
  function showError(error, line = status, extra = {}) {
    const target = { ...fields, ...extra }[(error.field || "").split(".")[0]];
    if (target) {
      target.setError(error.message);
      target.input.focus();
    }
    line.show(error.message, "error");
  }

  /** Client-side checks before a save: true when the form can go. */
  function valid(needsTime) {
    clearErrors();
    const problems = [];
    if (!subject.input.value.trim()) problems.push([subject, "Please write a subject."]);
    if (!content.input.value.trim()) problems.push([content, "Please write the content."]);
    if (needsTime) {
      const when = isoWithOffset(schedule.input.value);
      if (!when) problems.push([schedule, "Please choose the date and time to send it."]);
      else if (new Date(when).getTime() <= Date.now()) problems.push([schedule, "This time has passed: please choose a time in the future."]);
    }
    for (const [entry, message] of problems) entry.setError(message);
    if (problems.length) {
      problems[0][0].input.focus();
      status.show(problems.length === 1 ? problems[0][1] : "Please correct the marked fields.", "error");
      return false;
    }
    return true;
  }

  /**
   * Saves the campaign: creates it (POST) the first time, then edits it (PATCH).
   * mode "draft" leaves it unscheduled, "schedule" sets send_at, "keep" leaves its schedule as is.
   */
  async function save(mode) {
    const body = { subject: subject.input.value, content: content.input.value, format: format.input.value };
    if (mode === "schedule") body.send_at = isoWithOffset(schedule.input.value);
    if (campaign) {
      if (mode === "draft" && campaign.status === "scheduled") body.send_at = null;
      campaign = await admin("PATCH", `/campaigns/${encodeURIComponent(campaign.id)}`, { body, signal: ctx.signal });
    } else {
      campaign = await admin("POST", "/campaigns", { body, signal: ctx.signal });
      // it exists now: a reload of this page edits it instead of creating another one
      history.replaceState(null, "", `${campaignPath(campaign)}/edit`);
    }
    writeDraft(draftKey, null); // saved: nothing left to restore
    return campaign;
  }

  async function act(mode) {
    if (!valid(mode === "schedule")) return;
    if (mode === "send") {
      if (!(await confirmSending(ctx.signal))) return;
    }
    setBusy(true);
    status.show(mode === "send" ? "Saving and starting…" : "Saving…", "pending");
    try {
      // sending keeps a scheduled campaign's send_at: if the send fails, it is still scheduled
      await save(mode === "schedule" ? "schedule" : mode === "send" ? "keep" : "draft");
      if (mode === "send") await admin("POST", `/campaigns/${encodeURIComponent(campaign.id)}/send`, { signal: ctx.signal });
      ctx.navigate(campaignPath(campaign));
    } catch (error) {
      if (isAbort(error)) return;
      showError(error);
      setBusy(false);
    }
  }

  async function sendTest(event) {
    event.preventDefault();
    testEmail.setError("");
    const address = testEmail.input.value.trim();
    if (!address || !testEmail.input.checkValidity()) {
      testEmail.setError(address ? "This does not look like an email address." : "Please enter the address to send the test to.");
      testEmail.input.focus();
      return;
    }
    if (!valid(false)) return;
    setBusy(true);
    testStatus.show("Saving and sending the test…", "pending");
    try {
      await save("keep");
      const sent = await admin("POST", `/campaigns/${encodeURIComponent(campaign.id)}/test`, { body: { email: address }, signal: ctx.signal });
      testStatus.show(`Test mail sent to ${sent.to || address}.`, "success");
    } catch (error) {
      if (isAbort(error)) return;
      showError(error, testStatus, { email: testEmail });
    } finally {
      setBusy(false);
    }
  }

  // ---- live preview: debounced, the newest request wins ----
  let timer = null;
  let inFlight = null;
  let previewErrorField = null;
  ctx.signal.addEventListener("abort", () => {
    clearTimeout(timer);
    if (inFlight) inFlight.abort();
  }, { once: true });

  function queuePreview() {
    clearTimeout(timer);
    timer = setTimeout(runPreview, PREVIEW_DELAY_MS);
  }

  async function runPreview() {
    if (ctx.signal.aborted) return;
    const body = { subject: subject.input.value, content: content.input.value, format: format.input.value };
    if (!body.subject.trim() || !body.content.trim()) {
      previewStatus.show("Write a subject and some content to see the preview.", "");
      return;
    }
    const address = testEmail.input.value.trim();
    if (address && testEmail.input.checkValidity()) body.email = address;
    if (inFlight) inFlight.abort();
    const controller = new AbortController();
    inFlight = controller;
    previewStatus.show("Updating the preview…", "pending");
    try {
      const preview = await admin("POST", "/campaigns/preview", { body, signal: controller.signal });
      if (previewErrorField) {
        fields[previewErrorField].setError("");
        previewErrorField = null;
      }
      frame.srcdoc = preview.html;
      previewTo.textContent = preview.to;
      previewSubject.textContent = preview.subject;
      previewText.textContent = preview.text;
      previewStatus.show("", "");
    } catch (error) {
      if (isAbort(error)) return;
      const name = (error.field || "").split(".")[0];
      if (name in fields) {
        if (previewErrorField && previewErrorField !== name) fields[previewErrorField].setError("");
        fields[name].setError(error.message);
        previewErrorField = name;
        previewStatus.show(`The preview shows the last version that rendered: ${error.message}`, "error");
      } else {
        previewStatus.show(`No preview: ${error.message}`, "error");
      }
    } finally {
      if (inFlight === controller) inFlight = null;
    }
  }

  for (const entry of [subject, content]) {
    entry.input.addEventListener("input", () => {
      if (previewErrorField !== entry.input.name) entry.setError("");
      keepDraft();
      queuePreview();
    });
  }
  format.input.addEventListener("change", () => {
    formatHint.textContent = FORMAT_HINTS[format.input.value];
    keepDraft();
    queuePreview();
  });
  schedule.input.addEventListener("input", () => {
    schedule.setError("");
    keepDraft();
  });
  testEmail.input.addEventListener("change", queuePreview);
  scheduleButton.addEventListener("click", () => act("schedule"));
  sendButton.addEventListener("click", () => act("send"));

  const form = h(
    "form",
    { novalidate: true, "aria-label": "Campaign", onsubmit: (event) => { event.preventDefault(); act("draft"); } },
    subject.wrapper,
    format.wrapper,
    content.wrapper,
    schedule.wrapper,
    h("div", { class: "actions" }, saveButton, scheduleButton, sendButton),
    status.node,
  );
  const testForm = h(
    "form",
    { novalidate: true, "aria-label": "Test mail", class: "test-form", onsubmit: sendTest },
    h("div", { class: "form-row" }, testEmail.wrapper, h("div", { class: "field" }, testButton)),
    testStatus.node,
  );
  const previewHeading = h("h2", { id: "preview-heading" }, "Preview");
  const preview = h(
    "section",
    { class: "preview", "aria-labelledby": "preview-heading" },
    previewHeading,
    h("dl", { class: "facts" }, h("dt", {}, "To"), previewTo, h("dt", {}, "Subject"), previewSubject),
    frame,
    h("details", { class: "text-version" }, h("summary", {}, "Text version"), previewText),
    previewStatus.node,
  );

  const title = campaign ? "Edit campaign" : "New campaign";
  const head = h("div", { class: "page-head" }, h("h1", {}, title), campaign ? h("span", {}, badge(campaign.status)) : null);
  if (restored) status.show("Your unsaved changes were restored.", "");
  if (campaign || restored) queuePreview();
  else previewStatus.show("Write a subject and some content to see the preview.", "");
  return h("section", { class: "panel" }, head, h("div", { class: "split compose" }, h("div", {}, form, testForm), preview));
}
