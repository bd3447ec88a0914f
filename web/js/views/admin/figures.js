// The monitoring figures, gathered from the admin API as it is today: campaigns by status,
// mail and feedback totals over the listed campaigns, dead letters per queue, subscribers by
// status (counted page by page up to a cap).
//
// gatherFigures() is the one place that knows where figures come from. When the API gets a
// metrics route (issue #8), it can read GET /admin/metrics first and map its answer onto the
// same Figures shape; the views that show figures need not change.

import { admin } from "../../api.js";

export const CAMPAIGN_STATUSES = ["draft", "scheduled", "sending", "sent", "cancelled"];
export const SUBSCRIBER_STATUSES = ["pending", "subscribed", "unsubscribed", "suppressed"];
export const DEAD_LETTER_QUEUES = ["welcome", "newsletter", "fanout"];

const CAMPAIGN_PAGE = 100;
const CAMPAIGN_PAGES = 5; // the newest 500 campaigns
const SUBSCRIBER_PAGE = 200;
// per status: beyond 400 the count is shown as "400+". Each page is a filtered scan of the
// subscribers table, so the overview stays at 8 requests at most; issue #8 brings real counts.
const SUBSCRIBER_PAGES = 2;

/**
 * @typedef {{count: number, more: boolean}} Count  more: the cap was reached, count is a lower bound
 * @typedef {object} Figures
 * @property {string} source             where the figures came from ("api": computed from the listings)
 * @property {Date} at                   when they were gathered
 * @property {?{byStatus: Object<string, number>, counted: number, more: boolean, active: object[]}} campaigns
 * @property {?{recipients: number, queued: number, sent: number, failed: number, skipped: number, uncertain: number}} mails
 * @property {?{delivered: number, bounced: number, complained: number, bounceRate: ?number, complaintRate: ?number}} feedback
 * @property {?Object<string, number>} deadLetters  per queue
 * @property {?Object<string, Count>} subscribers   per status
 * @property {string[]} errors           the parts that could not be read (their figures are null)
 */

/** Every campaign of the newest pages: {items, more}. */
async function listCampaigns(signal) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < CAMPAIGN_PAGES; page += 1) {
    const query = new URLSearchParams({ limit: String(CAMPAIGN_PAGE) });
    if (cursor) query.set("cursor", cursor);
    const answer = await admin("GET", `/campaigns?${query}`, { signal });
    items.push(...answer.items);
    cursor = answer.next_cursor;
    if (!cursor) break;
  }
  return { items, more: Boolean(cursor) };
}

/** How many subscribers have this status, following the cursor up to SUBSCRIBER_PAGES pages. */
export async function countSubscribers(status, signal) {
  let count = 0;
  let cursor = null;
  for (let page = 0; page < SUBSCRIBER_PAGES; page += 1) {
    const query = new URLSearchParams({ status, limit: String(SUBSCRIBER_PAGE) });
    if (cursor) query.set("cursor", cursor);
    const answer = await admin("GET", `/subscribers?${query}`, { signal });
    count += answer.items.length;
    cursor = answer.next_cursor;
    if (!cursor) break;
  }
  return { count, more: Boolean(cursor) };
}

/** Campaign figures from a list of campaigns (pure: also usable on any list). */
export function summarizeCampaigns(items) {
  const byStatus = Object.fromEntries(CAMPAIGN_STATUSES.map((status) => [status, 0]));
  const mails = { recipients: 0, queued: 0, sent: 0, failed: 0, skipped: 0, uncertain: 0 };
  const feedback = { delivered: 0, bounced: 0, complained: 0 };
  for (const campaign of items) {
    byStatus[campaign.status] = (byStatus[campaign.status] || 0) + 1;
    const counters = campaign.counters || {};
    for (const key of Object.keys(mails)) mails[key] += counters[key] || 0;
    const seen = campaign.feedback || {};
    for (const key of Object.keys(feedback)) feedback[key] += seen[key] || 0;
  }
  const rate = (part) => (mails.sent ? part / mails.sent : null);
  return {
    byStatus,
    mails,
    feedback: { ...feedback, bounceRate: rate(feedback.bounced), complaintRate: rate(feedback.complained) },
    active: items.filter((campaign) => campaign.status === "sending" || campaign.status === "scheduled"),
  };
}

/**
 * Gathers every figure; a part that fails is null and named in errors (the others still show).
 * @param {{signal?: AbortSignal}} [options]
 * @returns {Promise<Figures>}
 */
export async function gatherFigures({ signal } = {}) {
  const [campaigns, deadLetters, ...subscribers] = await Promise.allSettled([
    listCampaigns(signal),
    admin("GET", "/dead-letters?limit=1", { signal }),
    ...SUBSCRIBER_STATUSES.map((status) => countSubscribers(status, signal)),
  ]);
  if (signal && signal.aborted) throw new DOMException("The page was left.", "AbortError");
  const errors = [];
  const figures = { source: "api", at: new Date(), campaigns: null, mails: null, feedback: null, deadLetters: null, subscribers: null, errors };
  if (campaigns.status === "fulfilled") {
    const summary = summarizeCampaigns(campaigns.value.items);
    figures.campaigns = { byStatus: summary.byStatus, counted: campaigns.value.items.length, more: campaigns.value.more, active: summary.active };
    figures.mails = summary.mails;
    figures.feedback = summary.feedback;
  } else {
    errors.push(`campaigns: ${campaigns.reason.message}`);
  }
  if (deadLetters.status === "fulfilled") figures.deadLetters = deadLetters.value.counts;
  else errors.push(`dead letters: ${deadLetters.reason.message}`);
  if (subscribers.every((part) => part.status === "fulfilled")) {
    figures.subscribers = Object.fromEntries(SUBSCRIBER_STATUSES.map((status, index) => [status, subscribers[index].value]));
  } else {
    errors.push(`subscribers: ${subscribers.find((part) => part.status === "rejected").reason.message}`);
  }
  return figures;
}
