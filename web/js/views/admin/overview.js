// /admin: the monitoring figures as cards, and the campaigns that are sending or scheduled.

import { isAbort } from "../../api.js";
import { formatNumber, formatTime, h, replace, statusLine } from "../../dom.js";
import { CAMPAIGN_STATUSES, DEAD_LETTER_QUEUES, SUBSCRIBER_STATUSES, gatherFigures } from "./figures.js";
import { badge, card, cards, percent } from "./ui.js";

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
      "Mails",
      "figures-mails",
      cards(Object.entries(MAIL_LABELS).map(([key, label]) => card(label, mails[key], { testid: `figure-mails-${key}` }))),
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

function activeList(figures) {
  if (!figures.campaigns) return null;
  const active = figures.campaigns.active;
  return section(
    "Active campaigns",
    "figures-active",
    active.length === 0
      ? h("p", {}, "No campaign is sending or scheduled. ", h("a", { href: "/admin/campaigns/new", "data-link": true }, "Write a new one"), ".")
      : h(
        "ul",
        { class: "active-list" },
        active.map((campaign) => {
          const counters = campaign.counters || {};
          const done = (counters.sent || 0) + (counters.failed || 0) + (counters.skipped || 0) + (counters.uncertain || 0);
          const detail = campaign.status === "sending"
            ? `${percent(done, counters.recipients)}% of ${formatNumber(counters.recipients)} recipients`
            : `sends at ${formatTime(campaign.send_at)}`;
          return h(
            "li",
            {},
            h("a", { href: `/admin/campaigns/${encodeURIComponent(campaign.id)}`, "data-link": true }, campaign.subject),
            " ",
            badge(campaign.status),
            " ",
            h("span", { class: "hint" }, detail),
          );
        }),
      ),
  );
}

export async function overview(ctx) {
  const status = statusLine();
  const body = h("div", {});
  const refresh = h("button", { type: "button" }, "Refresh");

  function draw(figures) {
    replace(
      body,
      figures.errors.length ? h("p", { class: "notice error" }, `Some figures could not be read (${figures.errors.join("; ")}).`) : null,
      activeList(figures),
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
