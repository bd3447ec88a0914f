// /admin/campaigns/:id: a campaign's live progress. Polls GET /campaigns/{id} every second
// while it is sending (every 5 s while scheduled; every 10 s for a while after the end, as
// SES feedback keeps arriving), computes the send rate over the last ~10 s and the ETA, and
// lists the recipients that failed (or were skipped, or are uncertain) with the reasons.

import { admin, isAbort } from "../../api.js";
import { announce, field, formatDuration, formatNumber, formatTime, h, replace, statusLine } from "../../dom.js";
import { campaignPath, confirmSending, resolvedOf } from "./campaigns.js";
import { confirmDialog } from "./dialog.js";
import { badge, card, cards, cell, emptyRow, failure, loadMore, mailRate, percent, poll, table } from "./ui.js";

const SENDING_POLL_MS = 1000;
const SCHEDULED_POLL_MS = 5000;
const FEEDBACK_POLL_MS = 10000;
const FEEDBACK_WINDOW_MS = 10 * 60 * 1000; // after the end, feedback is polled this long
const RATE_WINDOW_MS = 10000;
const PROBLEMS_EVERY = 5; // while sending, the problems table is read again every 5th poll
const COUNTERS = [
  ["recipients", "Recipients"],
  ["queued", "Queued"],
  ["sent", "Sent"],
  ["failed", "Failed"],
  ["skipped", "Skipped"],
  ["uncertain", "Uncertain"],
];
const FEEDBACK = [
  ["delivered", "Delivered"],
  ["bounced", "Bounced"],
  ["complained", "Complained"],
];
const PROBLEM_STATUSES = [
  ["failed", "Failed"],
  ["skipped", "Skipped"],
  ["uncertain", "Uncertain"],
];
const FINAL = new Set(["sent", "cancelled"]);

/**
 * The send rate over a sliding window: add(resolved) at each poll, rate() in mails per second
 * from the oldest and newest samples of the last RATE_WINDOW_MS (null until two samples
 * at least a second apart).
 */
export function rateMeter(windowMs = RATE_WINDOW_MS, now = () => performance.now()) {
  let samples = [];
  return {
    add(resolved) {
      const t = now();
      samples.push({ t, resolved });
      samples = samples.filter((sample) => t - sample.t <= windowMs);
    },
    rate() {
      if (samples.length < 2) return null;
      const first = samples[0];
      const last = samples[samples.length - 1];
      const seconds = (last.t - first.t) / 1000;
      if (seconds < 1) return null;
      return Math.max(0, (last.resolved - first.resolved) / seconds);
    },
    reset() {
      samples = [];
    },
  };
}

/** The failed / skipped / uncertain recipients, with a select for which. */
function problemsSection(ctx, campaignId) {
  const which = field(
    "Show recipients that",
    h("select", { name: "problem" }, PROBLEM_STATUSES.map(([value, label]) => h("option", { value }, label.toLowerCase()))),
  );
  const status = statusLine();
  const columns = [{ label: "Email" }, { label: "Status" }, { label: "Reason" }, { label: "When" }];
  const { wrap, body, table: tableNode } = table("Failed recipients and the reasons", columns);
  const caption = tableNode.querySelector("caption");
  const refresh = h("button", { type: "button" }, "Refresh");
  let pages = 0;
  let loading = null;

  /** One page of recipients as rows, and the next cursor. */
  async function fetchPage(cursor) {
    const query = new URLSearchParams({ status: which.input.value, limit: "50" });
    if (cursor) query.set("cursor", cursor);
    const answer = await admin("GET", `/campaigns/${encodeURIComponent(campaignId)}/recipients?${query}`, { signal: ctx.signal });
    const rows = answer.items.map((item) =>
      h(
        "tr",
        {},
        cell(item.email || "(erased)"),
        h("td", {}, badge(item.status)),
        cell(item.error),
        cell(formatTime(item.resolved_at || item.claimed_at)),
      ));
    return { rows, next: answer.next_cursor };
  }

  function showEmpty(next) {
    if (!body.querySelector("tr:not(.empty)") && !next) replace(body, emptyRow(columns.length, `No ${which.input.value} recipients.`));
  }

  const more = loadMore(async (cursor) => {
    const { rows, next } = await fetchPage(cursor);
    const empty = body.querySelector("tr.empty");
    if (empty && rows.length) empty.remove();
    body.append(...rows);
    pages += 1;
    showEmpty(next);
    return next;
  }, status);

  /** Reads the first page again; the rows are swapped when it arrives (no flicker). */
  function reload() {
    if (loading) return loading;
    const label = PROBLEM_STATUSES.find(([value]) => value === which.input.value)[1];
    caption.textContent = `${label} recipients${which.input.value === "failed" ? " and the reasons" : ""}`;
    loading = (async () => {
      try {
        const { rows, next } = await fetchPage(null);
        replace(body, rows);
        pages = 1;
        showEmpty(next);
        more.setCursor(next);
      } catch (error) {
        if (!isAbort(error)) status.show(error.message, "error");
      } finally {
        loading = null;
      }
    })();
    return loading;
  }

  which.input.addEventListener("change", reload);
  refresh.addEventListener("click", async () => {
    status.show("Refreshing…", "pending");
    await reload();
    if (!status.node.classList.contains("error")) status.show("Refreshed.", "");
  });
  const node = h(
    "section",
    { "aria-labelledby": "problems-heading" },
    h("h2", { id: "problems-heading" }, "Failures and other problems"),
    h("div", { class: "form-row" }, which.wrapper, h("div", { class: "field" }, refresh)),
    wrap,
    more.node,
    status.node,
  );
  return { node, reload, expanded: () => pages > 1 };
}

export async function campaignPage(ctx) {
  let campaign;
  try {
    campaign = await admin("GET", `/campaigns/${encodeURIComponent(ctx.params.id)}`, { signal: ctx.signal });
  } catch (error) {
    if (isAbort(error)) throw error;
    return failure(error.status === 404 ? "Campaign not found" : "Campaign", error);
  }
  const id = campaign.id;
  const meter = rateMeter();
  const status = statusLine();

  // ---- head: subject, status, actions ----
  const heading = h("h1", {}, campaign.subject);
  const statusBadge = h("span", { class: "badge", "data-testid": "campaign-status" });
  const sendButton = h("button", { type: "button", class: "primary" }, "Send now");
  const editLink = h("a", { class: "button", href: `${campaignPath(campaign)}/edit`, "data-link": true }, "Edit");
  const cancelButton = h("button", { type: "button", class: "danger" }, "Cancel campaign");

  // ---- progress ----
  const bar = h("progress", { id: "campaign-progress", max: "1", value: "0" });
  const percentText = h("span", { class: "percent", "data-testid": "progress-percent" }, "0%");
  const progressDetail = h("span", { class: "hint", "data-testid": "progress-detail" }, "");
  const facts = {
    rate: h("dd", { "data-testid": "send-rate" }, "–"),
    eta: h("dd", { "data-testid": "eta" }, "–"),
    sendAt: h("dd", {}, "–"),
    started: h("dd", {}, "–"),
    finished: h("dd", {}, "–"),
    created: h("dd", {}, "–"),
  };
  const finishedLabel = h("dt", {}, "Finished");
  const counterCards = Object.fromEntries(COUNTERS.map(([key, label]) => [key, card(label, 0, { testid: `counter-${key}` })]));
  const feedbackCards = Object.fromEntries(FEEDBACK.map(([key, label]) => [key, card(label, 0, { testid: `counter-${key}` })]));
  const problems = problemsSection(ctx, id);

  let seenSending = campaign.status === "sending";
  let polls = 0;
  let polling = false;
  let pollFailed = false;

  /** Draws a campaign answer into the page (in place: focus and scroll stay). */
  function update(next) {
    const before = campaign.status;
    // A poll answered before a cancel (or the finish) can arrive after it: a campaign never
    // leaves sent or cancelled, so such an answer is old news.
    if (FINAL.has(before) && !FINAL.has(next.status)) return;
    campaign = next;
    const counters = campaign.counters || {};
    const feedback = campaign.feedback || {};
    const resolved = resolvedOf(counters);
    const recipients = counters.recipients || 0;

    heading.textContent = campaign.subject;
    statusBadge.className = `badge ${campaign.status}`;
    statusBadge.textContent = campaign.status;
    sendButton.hidden = !(campaign.status === "draft" || campaign.status === "scheduled");
    editLink.hidden = sendButton.hidden;
    cancelButton.hidden = !(campaign.status === "draft" || campaign.status === "scheduled" || campaign.status === "sending");

    // 100% only when every recipient has a final result; a campaign sent to nobody is done too
    const pct = campaign.status === "sent" && recipients === 0 ? 100 : percent(resolved, recipients);
    bar.max = Math.max(recipients, 1);
    bar.value = campaign.status === "sent" && recipients === 0 ? 1 : resolved;
    bar.setAttribute("aria-valuetext", `${pct}%`);
    percentText.textContent = `${pct}%`;
    if (campaign.status === "draft" || campaign.status === "scheduled") {
      progressDetail.textContent = "Not started yet.";
    } else {
      const counting = campaign.status === "sending" && !campaign.fanout_done ? " (recipients are still being counted)" : "";
      progressDetail.textContent = `${formatNumber(resolved)} of ${formatNumber(recipients)} recipients done${counting}.`;
    }

    for (const [key] of COUNTERS) counterCards[key].set(counters[key] || 0);
    for (const [key] of FEEDBACK) feedbackCards[key].set(feedback[key] || 0);

    if (campaign.status === "sending") {
      meter.add(resolved);
      const rate = meter.rate();
      facts.rate.textContent = mailRate(rate);
      const queued = counters.queued || 0;
      facts.eta.textContent = rate ? formatDuration(queued / rate) : queued ? "waiting for the first results" : "–";
    } else {
      meter.reset();
      const started = Date.parse(campaign.started_at);
      const finished = Date.parse(campaign.finished_at || campaign.cancelled_at);
      const seconds = (finished - started) / 1000;
      facts.rate.textContent = seconds > 0 && resolved ? `${mailRate(resolved / seconds)} on average` : "–";
      facts.eta.textContent = campaign.status === "sent" ? "done" : "–";
    }
    facts.sendAt.textContent = formatTime(campaign.send_at);
    facts.started.textContent = formatTime(campaign.started_at);
    finishedLabel.textContent = campaign.status === "cancelled" ? "Cancelled" : "Finished";
    facts.finished.textContent = formatTime(campaign.status === "cancelled" ? campaign.cancelled_at : campaign.finished_at);
    facts.created.textContent = formatTime(campaign.created_at);

    if (campaign.status === "sending") seenSending = true;
    if (before !== campaign.status && FINAL.has(campaign.status) && seenSending) {
      const text = campaign.status === "sent"
        ? `Campaign sent: ${formatNumber(counters.sent || 0)} sent, ${formatNumber(counters.failed || 0)} failed, ${formatNumber(counters.skipped || 0)} skipped, ${formatNumber(counters.uncertain || 0)} uncertain.`
        : `Campaign cancelled after ${formatNumber(resolved)} of ${formatNumber(recipients)} recipients.`;
      status.show(text, campaign.status === "sent" ? "success" : "");
      announce(text);
      problems.reload();
    }
  }

  /** The delay before the next poll for the campaign as it is now, or null to stop. */
  function nextDelay() {
    if (campaign.status === "sending") return SENDING_POLL_MS;
    if (campaign.status === "scheduled") return SCHEDULED_POLL_MS;
    if (campaign.status === "sent" && Date.now() - Date.parse(campaign.finished_at) < FEEDBACK_WINDOW_MS) return FEEDBACK_POLL_MS;
    return null;
  }

  function startPolling() {
    const delay = nextDelay();
    if (polling || delay === null) return;
    polling = true;
    poll(async () => {
      try {
        const next = await admin("GET", `/campaigns/${encodeURIComponent(id)}`, { signal: ctx.signal });
        if (pollFailed) status.show("", "");
        pollFailed = false;
        update(next);
        polls += 1;
        if (campaign.status === "sending" && polls % PROBLEMS_EVERY === 0 && !problems.expanded()) problems.reload();
      } catch (error) {
        if (isAbort(error)) throw error;
        pollFailed = true;
        status.show(`Could not refresh: ${error.message} Trying again…`, "error");
        throw error; // poll() tries again a little later
      }
      const delay = nextDelay();
      if (delay === null) polling = false;
      return delay;
    }, ctx.signal, delay);
  }

  /** After an action hides the button that had the focus, the page's heading takes it. */
  function focusHeading() {
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }

  sendButton.addEventListener("click", async () => {
    if (!(await confirmSending(ctx.signal))) return;
    sendButton.disabled = true;
    status.show("Starting…", "pending");
    try {
      update(await admin("POST", `/campaigns/${encodeURIComponent(id)}/send`, { signal: ctx.signal }));
      status.show("Sending started.", "success");
      startPolling();
      focusHeading();
    } catch (error) {
      if (isAbort(error)) return;
      status.show(error.message, "error");
    } finally {
      sendButton.disabled = false;
    }
  });

  cancelButton.addEventListener("click", async () => {
    const sending = campaign.status === "sending";
    const go = await confirmDialog({
      title: "Cancel this campaign?",
      body: sending
        ? [h("p", {}, "No more mails of it will be sent. Mails already sent stay sent."), h("p", {}, "A cancelled campaign cannot be started again.")]
        : [h("p", {}, "It will not be sent. A cancelled campaign cannot be started again.")],
      confirmLabel: "Cancel campaign",
      cancelLabel: "Keep it",
      danger: true,
      signal: ctx.signal,
    });
    if (!go) return;
    cancelButton.disabled = true;
    status.show("Cancelling…", "pending");
    try {
      update(await admin("POST", `/campaigns/${encodeURIComponent(id)}/cancel`, { signal: ctx.signal }));
      status.show("The campaign is cancelled.", "success");
      announce("The campaign is cancelled.");
      focusHeading();
    } catch (error) {
      if (isAbort(error)) return;
      status.show(error.message, "error");
    } finally {
      cancelButton.disabled = false;
    }
  });

  // ---- the mail itself, rendered on demand ----
  const mailFrame = h("iframe", { sandbox: "", title: "The campaign's mail", class: "preview-frame" });
  const mailStatus = statusLine();
  let mailLoaded = false;
  const mailDetails = h(
    "details",
    { class: "mail-details" },
    h("summary", {}, "The mail"),
    h("p", { class: "hint" }, "As the sample recipient would get it."),
    mailFrame,
    mailStatus.node,
  );
  mailDetails.addEventListener("toggle", async () => {
    if (!mailDetails.open || mailLoaded) return;
    mailLoaded = true;
    mailStatus.show("Rendering…", "pending");
    try {
      const preview = await admin("POST", `/campaigns/${encodeURIComponent(id)}/preview`, { body: {}, signal: ctx.signal });
      mailFrame.srcdoc = preview.html;
      mailStatus.show("", "");
    } catch (error) {
      if (isAbort(error)) return;
      mailLoaded = false;
      mailStatus.show(error.message, "error");
    }
  });

  update(campaign);
  await problems.reload();
  startPolling();

  return h(
    "section",
    { class: "panel campaign" },
    h("p", { class: "breadcrumb" }, h("a", { href: "/admin/campaigns", "data-link": true }, "Campaigns")),
    h("div", { class: "page-head" }, heading, statusBadge),
    h("div", { class: "actions" }, sendButton, editLink, cancelButton),
    status.node,
    h(
      "section",
      { class: "progress-region", "aria-labelledby": "progress-heading" },
      h("h2", { id: "progress-heading" }, "Progress"),
      h("label", { for: "campaign-progress" }, "Sending progress"),
      h("div", { class: "progress-line" }, bar, percentText),
      progressDetail,
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Send rate"), facts.rate,
        h("dt", {}, "Time left"), facts.eta,
        h("dt", {}, "Send at"), facts.sendAt,
        h("dt", {}, "Started"), facts.started,
        finishedLabel, facts.finished,
        h("dt", {}, "Created"), facts.created,
      ),
      h("h3", {}, "Mails"),
      cards(COUNTERS.map(([key]) => counterCards[key]), { "aria-label": "Mail counters" }),
      h("h3", {}, "Delivery feedback"),
      cards(FEEDBACK.map(([key]) => feedbackCards[key]), { "aria-label": "Delivery feedback" }),
    ),
    problems.node,
    mailDetails,
  );
}
