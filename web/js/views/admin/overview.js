// /admin: the monitoring figures. First the campaigns sending or started in the last day
// (done, rate, ETA) and the scheduled ones; then what the workers did in the last hour and
// day, per task type (tables); then cards: campaigns by status, campaign mails, delivery
// feedback, dead letters, subscribers. Where each figure comes from: figures.js.

import { isAbort } from "../../api.js";
import { formatDuration, formatNumber, formatTime, h, replace, statusLine } from "../../dom.js";
import { CAMPAIGN_STATUSES, DEAD_LETTER_QUEUES, ERROR_TYPES, SUBSCRIBER_STATUSES, gatherFigures } from "./figures.js";
import { badge, card, cards, cell, mailRate, millis, percent, table } from "./ui.js";

const MAIL_LABELS = { recipients: "Recipients", sent: "Sent", failed: "Failed", skipped: "Skipped", uncertain: "Uncertain", queued: "Queued" };

function capitalized(word) {
  return word.charAt(0).toUpperCase() + word.slice(1);
}

function rateText(rate) {
  return rate === null || rate === undefined ? "–" : `${(rate * 100).toFixed(2)}%`;
}

function unavailable() {
  return h("p", { class: "notice" }, "Not available right now.");
}

function section(title, id, ...content) {
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title), content);
}

function campaignSections(figures) {
  if (!figures.campaigns) return [section("Campaigns", "figures-campaigns", unavailable())];
  const { campaigns, mails, feedback } = figures;
  const note = campaigns.more ? `Counted over the newest ${formatNumber(campaigns.counted)} campaigns.` : null;
  return [
    section(
      "Campaigns",
      "figures-campaigns",
      cards(CAMPAIGN_STATUSES.map((status) => card(capitalized(status), campaigns.byStatus[status] || 0, { testid: `figure-campaigns-${status}` }))),
      note ? h("p", { class: "hint" }, note) : null,
    ),
    section(
      "Campaign mails",
      "figures-mails",
      cards(Object.entries(MAIL_LABELS).map(([key, label]) => card(label, mails[key], { testid: `figure-mails-${key}` }))),
      h("p", { class: "hint" }, "Since each campaign started, over the listed campaigns."),
    ),
    section(
      "Delivery feedback",
      "figures-feedback",
      cards([
        card("Delivered", feedback.delivered, { testid: "figure-feedback-delivered" }),
        card("Bounced", feedback.bounced, { testid: "figure-feedback-bounced" }),
        card("Complained", feedback.complained, { testid: "figure-feedback-complained" }),
        card("Bounce rate", rateText(feedback.bounceRate), { testid: "figure-bounce-rate", hint: "of sent mails" }),
        card("Complaint rate", rateText(feedback.complaintRate), { testid: "figure-complaint-rate", hint: "of sent mails" }),
      ]),
    ),
  ];
}

function deadLetterSection(figures) {
  const counts = figures.deadLetters;
  return section(
    "Dead letters",
    "figures-dead-letters",
    counts
      ? [
        cards(DEAD_LETTER_QUEUES.map((queue) => card(capitalized(queue), counts[queue] || 0, { testid: `figure-dead-letters-${queue}` }))),
        h("p", {}, h("a", { href: "/admin/dead-letters", "data-link": true }, "Look at the dead letters")),
      ]
      : unavailable(),
  );
}

function subscriberSection(figures) {
  const counts = figures.subscribers;
  return section(
    "Subscribers",
    "figures-subscribers",
    counts
      ? cards(
        SUBSCRIBER_STATUSES.map((status) => {
          const { count, more } = counts[status];
          return card(capitalized(status), more ? `${formatNumber(count)}+` : count, { testid: `figure-subscribers-${status}` });
        }),
      )
      : unavailable(),
  );
}

function clock(date) {
  return date ? date.toLocaleTimeString("en", { hour: "2-digit", minute: "2-digit" }) : "–";
}

function campaignLink(campaign) {
  return h("a", { href: `/admin/campaigns/${encodeURIComponent(campaign.id)}`, "data-link": true }, campaign.subject);
}

/** "12 s (at 06:49 PM)" while sending, "done at …" once sent. */
function etaText(campaign, now) {
  if (campaign.status === "sent") return campaign.finishedAt ? `done at ${formatTime(campaign.finishedAt.toISOString())}` : "done";
  if (campaign.status === "cancelled") return "cancelled";
  if (campaign.status !== "sending") return "–";
  if (!campaign.fanoutDone) return "counting recipients";
  if (campaign.eta) return `${formatDuration((campaign.eta - now) / 1000)} (at ${clock(campaign.eta)})`;
  return "waiting for the first results";
}

function doneText(campaign) {
  const base = `${formatNumber(campaign.done)} of ${formatNumber(campaign.recipients)}`;
  return campaign.fanoutDone ? `${base} (${percent(campaign.done, campaign.recipients)}%)` : `${base} so far`;
}

const PROGRESS_COLUMNS = [
  { label: "Campaign" },
  { label: "Status" },
  { label: "Done", num: true },
  { label: "Sent", num: true },
  { label: "Failed", num: true },
  { label: "Rate (average)", num: true },
  { label: "Time left", num: true },
];

function progressTable(figures) {
  const progress = figures.progress;
  if (progress.length === 0) return h("p", {}, "No campaign is sending or was started in the last day.");
  const { wrap, body } = table("Campaigns sending now or started in the last day", PROGRESS_COLUMNS, { "data-testid": "campaign-progress" });
  for (const campaign of progress) {
    body.append(
      h(
        "tr",
        { "data-campaign": campaign.id },
        h("th", { scope: "row" }, campaignLink(campaign)),
        h("td", {}, badge(campaign.status)),
        cell(doneText(campaign), { num: true, attrs: { "data-testid": "progress-done" } }),
        cell(campaign.sent, { num: true, attrs: { "data-testid": "progress-sent" } }),
        cell(campaign.failed, { num: true, attrs: { "data-testid": "progress-failed" } }),
        cell(mailRate(campaign.rate), { num: true, attrs: { "data-testid": "progress-rate" } }),
        cell(etaText(campaign, figures.at), { num: true, attrs: { "data-testid": "progress-eta" } }),
      ),
    );
  }
  return wrap;
}

function scheduledList(campaigns) {
  return h(
    "ul",
    { class: "active-list" },
    campaigns.map((campaign) => {
      const counters = campaign.counters || {};
      const done = (counters.sent || 0) + (counters.failed || 0) + (counters.skipped || 0) + (counters.uncertain || 0);
      const detail = campaign.status === "sending"
        ? `${percent(done, counters.recipients)}% of ${formatNumber(counters.recipients)} recipients`
        : `sends at ${formatTime(campaign.send_at)}`;
      return h("li", {}, campaignLink(campaign), " ", badge(campaign.status), " ", h("span", { class: "hint" }, detail));
    }),
  );
}

/** The campaigns sending or started in the last day (GET /admin/metrics), and the scheduled ones. */
function activeSection(figures) {
  // without the metrics, the listing's sending campaigns stand in for the progress table
  const listed = figures.campaigns
    ? figures.campaigns.active.filter((campaign) => !figures.progress || campaign.status === "scheduled")
    : [];
  const nothing = (!figures.progress || figures.progress.length === 0) && listed.length === 0 && figures.campaigns;
  return section(
    "Campaigns in progress and recent",
    "figures-active",
    nothing
      ? h("p", {}, "No campaign is sending, scheduled or was started in the last day. ", h("a", { href: "/admin/campaigns/new", "data-link": true }, "Write a new one"), ".")
      : [
        figures.progress ? progressTable(figures) : unavailable(),
        listed.length ? [h("h3", {}, figures.progress ? "Scheduled" : "Sending or scheduled"), scheduledList(listed)] : null,
      ],
  );
}

const TASK_COLUMNS = [
  { label: "Task type" },
  { label: "Processed", num: true },
  { label: "Mails sent", num: true },
  { label: "p50 time", num: true },
  { label: "p95 time", num: true },
  ...ERROR_TYPES.map(([, label]) => ({ label, num: true })),
];

/** One error count: "–" where the task type cannot have it, zero muted, anything else stands out. */
function errorCell(value, testid) {
  if (value === null || value === undefined) return cell(null, { num: true, attrs: { "data-testid": testid } });
  if (value === 0) return cell(0, { num: true, attrs: { class: "num zero", "data-testid": testid } });
  return h("td", { class: "num nonzero", "data-testid": testid }, h("strong", {}, formatNumber(value)));
}

function taskRow(window, row) {
  const id = (what) => `tasks-${window.key}-${row.type}-${what}`;
  return h(
    "tr",
    { class: row.type === "total" ? "total" : null },
    h("th", { scope: "row" }, row.label),
    cell(row.processed, { num: true, attrs: { "data-testid": id("processed") } }),
    cell(row.mailsSent, { num: true, attrs: { "data-testid": id("mails-sent") } }),
    cell(millis(row.p50), { num: true, attrs: { "data-testid": id("p50") } }),
    cell(millis(row.p95), { num: true, attrs: { "data-testid": id("p95") } }),
    ERROR_TYPES.map(([key]) => errorCell(row.errors[key], id(key.replace("_", "-")))),
  );
}

function taskTable(window) {
  // the hour within a day: its clock times; the day: its first moment with the date
  const from = window.key === "hour" ? clock(window.start) : formatTime(window.start && window.start.toISOString());
  const caption = `${window.label}: tasks from ${from} to ${clock(window.end)}, per task type (times: the processing time of one task)`;
  const { wrap, table: node, body } = table(caption, TASK_COLUMNS, { class: "tasks", "data-testid": `tasks-${window.key}` }, { focusable: true });
  for (const row of window.rows) body.append(taskRow(window, row));
  node.append(h("tfoot", {}, taskRow(window, window.totals)));
  return wrap;
}

/** What the workers did in the last hour and day (GET /admin/metrics' windows). */
function taskSection(figures) {
  let content;
  if (figures.tasks) content = figures.tasks.map((window) => [h("h3", {}, window.label), taskTable(window)]);
  else if (figures.tasksUnavailable) content = h("p", { class: "notice", "data-testid": "tasks-unavailable" }, figures.tasksUnavailable);
  else content = unavailable();
  return section("Last hour and last day", "figures-tasks", content);
}

export async function overview(ctx) {
  const status = statusLine();
  const body = h("div", {});
  const refresh = h("button", { type: "button" }, "Refresh");

  function draw(figures) {
    replace(
      body,
      figures.errors.length ? h("p", { class: "notice error" }, `Some figures could not be read (${figures.errors.join("; ")}).`) : null,
      activeSection(figures),
      taskSection(figures),
      campaignSections(figures),
      deadLetterSection(figures),
      subscriberSection(figures),
    );
  }

  async function load() {
    refresh.disabled = true;
    status.show("Gathering figures…", "pending");
    try {
      const figures = await gatherFigures({ signal: ctx.signal });
      draw(figures);
      status.show(`Figures as of ${figures.at.toLocaleTimeString("en")}.`, "");
    } catch (error) {
      if (isAbort(error)) return;
      status.show(error.message, "error");
    } finally {
      refresh.disabled = false;
    }
  }

  refresh.addEventListener("click", load);
  await load();
  return h(
    "section",
    { class: "panel" },
    h("div", { class: "page-head" }, h("h1", {}, "Overview"), h("div", { class: "actions" }, refresh, h("a", { class: "button primary", href: "/admin/campaigns/new", "data-link": true }, "New campaign"))),
    status.node,
    body,
  );
}
