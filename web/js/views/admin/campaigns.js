// /admin/campaigns: the campaigns, newest first, with their progress; "Load more" follows
// next_cursor.

import { admin, isAbort } from "../../api.js";
import { formatTime, h, statusLine } from "../../dom.js";
import { confirmDialog } from "./dialog.js";
import { badge, cell, emptyRow, failure, loadMore, percent, table } from "./ui.js";

const PAGE = 25;

/** Mails with a final result: sent, failed, skipped or uncertain. */
export function resolvedOf(counters) {
  const c = counters || {};
  return (c.sent || 0) + (c.failed || 0) + (c.skipped || 0) + (c.uncertain || 0);
}

/** Asks before a campaign is sent now (the compose page and the campaign's page): true to send. */
export function confirmSending(signal) {
  return confirmDialog({
    title: "Send this campaign now?",
    body: [
      h("p", {}, "It goes to every subscribed subscriber, starting at once."),
      h("p", {}, "You can cancel it while it is sending, but mails already sent stay sent."),
    ],
    confirmLabel: "Send now",
    signal,
  });
}

export function campaignPath(campaign) {
  return `/admin/campaigns/${encodeURIComponent(campaign.id)}`;
}

/** When: the send time of a scheduled campaign, the start of a started one, else its creation. */
function when(campaign) {
  if (campaign.status === "scheduled" && campaign.send_at) return `sends ${formatTime(campaign.send_at)}`;
  if (campaign.started_at) return `started ${formatTime(campaign.started_at)}`;
  return `created ${formatTime(campaign.created_at)}`;
}

function row(campaign) {
  const counters = campaign.counters || {};
  const started = campaign.status === "sending" || campaign.status === "sent" || (campaign.status === "cancelled" && campaign.started_at);
  return h(
    "tr",
    {},
    h("td", {}, h("a", { href: campaignPath(campaign), "data-link": true }, campaign.subject)),
    h("td", {}, badge(campaign.status)),
    cell(counters.recipients || 0, { num: true }),
    cell(counters.sent || 0, { num: true }),
    cell(counters.failed || 0, { num: true }),
    cell(started ? `${percent(resolvedOf(counters), counters.recipients)}%` : "–", { num: true }),
    cell(when(campaign)),
  );
}

const COLUMNS = [
  { label: "Subject" },
  { label: "Status" },
  { label: "Recipients", num: true },
  { label: "Sent", num: true },
  { label: "Failed", num: true },
  { label: "Progress", num: true },
  { label: "When" },
];

export async function campaignList(ctx) {
  const status = statusLine();
  const { wrap, body } = table("Campaigns, newest first", COLUMNS);

  async function load(cursor) {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (cursor) query.set("cursor", cursor);
    const answer = await admin("GET", `/campaigns?${query}`, { signal: ctx.signal });
    body.append(...answer.items.map(row));
    return answer.next_cursor;
  }

  const more = loadMore(load, status);
  try {
    more.setCursor(await load(null));
  } catch (error) {
    if (isAbort(error)) throw error;
    return failure("Campaigns", error);
  }
  if (!body.firstChild) body.append(emptyRow(COLUMNS.length, "No campaigns yet."));

  return h(
    "section",
    { class: "panel" },
    h("div", { class: "page-head" }, h("h1", {}, "Campaigns"), h("a", { class: "button primary", href: "/admin/campaigns/new", "data-link": true }, "New campaign")),
    wrap,
    more.node,
    status.node,
  );
}
