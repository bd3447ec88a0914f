// The monitoring figures. GET /admin/metrics gives the task figures of the last hour and day
// (per task type: processed, mails, p50/p95 processing time, errors by type; from the
// functions' metrics in CloudWatch) and the recent campaigns' progress (rate, ETA). What it
// does not give still comes from the listings: campaigns by status, mail and feedback totals
// over the listed campaigns, dead letters per queue, subscribers by status (counted page by
// page up to a cap).
//
// gatherFigures() is the one place that knows where figures come from and maps each answer
// onto the Figures shape below; the views that show figures know only that shape.

import { admin } from "../../api.js";

export const CAMPAIGN_STATUSES = ["draft", "scheduled", "sending", "sent", "cancelled"];
export const SUBSCRIBER_STATUSES = ["pending", "subscribed", "unsubscribed", "suppressed"];
export const DEAD_LETTER_QUEUES = ["welcome", "newsletter", "fanout"];
// The task types of GET /admin/metrics, in the order the overview lists them.
export const TASK_TYPES = [
  ["confirmation", "Confirmation"],
  ["welcome", "Welcome"],
  ["newsletter", "Newsletter send"],
  ["newsletter_fanout", "Newsletter fan-out"],
  ["newsletter_dispatch", "Dispatcher"],
  ["ses_event", "SES events"],
];
// The errors by type: every task type has the first two, the mail task types all of them.
export const ERROR_TYPES = [
  ["task_errors", "Task errors"],
  ["dead_lettered", "Dead-lettered"],
  ["failed", "Mails failed"],
  ["retried", "Retried"],
  ["throttled", "Throttled"],
  ["uncertain", "Uncertain"],
];
export const WINDOWS = [
  ["hour", "Last hour"],
  ["day", "Last day"],
];

const CAMPAIGN_PAGE = 100;
const CAMPAIGN_PAGES = 5; // the newest 500 campaigns
const SUBSCRIBER_PAGE = 200;
// per status: beyond 400 the count is shown as "400+". Each page is a filtered scan of the
// subscribers table, so the overview stays at 8 requests at most; issue #8 brings real counts.
const SUBSCRIBER_PAGES = 2;

/**
 * @typedef {{count: number, more: boolean}} Count  more: the cap was reached, count is a lower bound
 * @typedef {object} TaskRow  one task type's figures in a window (or the window's totals)
 * @property {string} type              the API's task type ("total" for the totals)
 * @property {string} label
 * @property {number} processed
 * @property {?number} mailsSent        null: the task type sends no mail itself
 * @property {?number} p50              processing time in ms; null without samples (and for totals)
 * @property {?number} p95
 * @property {Object<string, ?number>} errors  per ERROR_TYPES key; null: the type cannot have it
 * @typedef {{key: string, label: string, start: Date, end: Date, rows: TaskRow[], totals: TaskRow}} TaskWindow
 * @typedef {object} CampaignProgress  a campaign sending now or started in the last day
 * @property {string} id
 * @property {string} subject
 * @property {string} status
 * @property {?Date} startedAt
 * @property {?Date} finishedAt
 * @property {boolean} fanoutDone       every recipient counted (recipients is final)
 * @property {number} recipients
 * @property {number} done              sent + failed + skipped + uncertain
 * @property {number} sent
 * @property {number} failed
 * @property {?number} remaining        null until the fan-out has counted everyone
 * @property {?number} rate             mails per second on average since it started
 * @property {?Date} eta                when it should be done (only while sending)
 * @typedef {object} Figures
 * @property {string} source             where the figures came from ("metrics": GET /admin/metrics and the listings; "listings": the listings alone)
 * @property {Date} at                   when they were gathered (the metrics' generated_at if there are metrics)
 * @property {?TaskWindow[]} tasks       the last hour and day; null when unavailable or not read
 * @property {?string} tasksUnavailable  why CloudWatch's figures are missing (the API's message)
 * @property {?CampaignProgress[]} progress  null when GET /admin/metrics could not be read
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

function dateOrNull(iso) {
  if (!iso) return null;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? null : date;
}

function taskRow(type, label, figures) {
  const errors = figures.errors || {};
  return {
    type,
    label,
    processed: figures.processed || 0,
    mailsSent: figures.mails ? figures.mails.sent : null,
    p50: figures.processing_ms ? figures.processing_ms.p50 : null,
    p95: figures.processing_ms ? figures.processing_ms.p95 : null,
    errors: Object.fromEntries(ERROR_TYPES.map(([key]) => [key, key in errors ? errors[key] : null])),
  };
}

/** GET /admin/metrics' windows -> TaskWindow[] (pure). */
export function mapWindows(windows) {
  return WINDOWS.map(([key, label]) => {
    const window = windows[key];
    const types = window.task_types || {};
    const totals = window.totals || {};
    return {
      key,
      label,
      start: dateOrNull(window.start),
      end: dateOrNull(window.end),
      rows: TASK_TYPES.map(([type, typeLabel]) => taskRow(type, typeLabel, types[type] || {})),
      totals: {
        type: "total",
        label: "All task types",
        processed: totals.processed || 0,
        mailsSent: totals.mails_sent || 0,
        p50: null,
        p95: null,
        errors: Object.fromEntries(ERROR_TYPES.map(([key]) => [key, (totals.errors || {})[key] || 0])),
      },
    };
  });
}

/** GET /admin/metrics' campaigns -> CampaignProgress[] (pure). */
export function mapProgress(campaigns) {
  return campaigns.map((campaign) => ({
    id: campaign.id,
    subject: campaign.subject,
    status: campaign.status,
    startedAt: dateOrNull(campaign.started_at),
    finishedAt: dateOrNull(campaign.finished_at),
    fanoutDone: Boolean(campaign.fanout_done),
    recipients: campaign.recipients || 0,
    done: campaign.done || 0,
    sent: campaign.sent || 0,
    failed: campaign.failed || 0,
    remaining: campaign.remaining ?? null,
    rate: campaign.rate_per_second ?? null,
    eta: dateOrNull(campaign.eta),
  }));
}

/**
 * Gathers every figure; a part that fails is null and named in errors (the others still show).
 * @param {{signal?: AbortSignal}} [options]
 * @returns {Promise<Figures>}
 */
export async function gatherFigures({ signal } = {}) {
  const [metrics, campaigns, deadLetters, ...subscribers] = await Promise.allSettled([
    admin("GET", "/metrics", { signal }),
    listCampaigns(signal),
    admin("GET", "/dead-letters?limit=1", { signal }),
    ...SUBSCRIBER_STATUSES.map((status) => countSubscribers(status, signal)),
  ]);
  if (signal && signal.aborted) throw new DOMException("The page was left.", "AbortError");
  const errors = [];
  const figures = {
    source: "listings",
    at: new Date(),
    tasks: null,
    tasksUnavailable: null,
    progress: null,
    campaigns: null,
    mails: null,
    feedback: null,
    deadLetters: null,
    subscribers: null,
    errors,
  };
  if (metrics.status === "fulfilled") {
    const answer = metrics.value;
    figures.source = "metrics";
    figures.at = dateOrNull(answer.generated_at) || figures.at;
    // CloudWatch could not be read: its message takes the task figures' place, not an error
    if (answer.windows) figures.tasks = mapWindows(answer.windows);
    else figures.tasksUnavailable = answer.unavailable || "The task figures are not available right now.";
    figures.progress = mapProgress(answer.campaigns || []);
  } else {
    errors.push(`metrics: ${metrics.reason.message}`);
  }
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
