// /admin/dead-letters: the tasks that failed for good, per queue, with their reasons; redrive
// them (all, or one queue's) once the cause is fixed.

import { admin, isAbort } from "../../api.js";
import { announce, field, formatNumber, formatTime, h, replace, statusLine } from "../../dom.js";
import { confirmDialog } from "./dialog.js";
import { DEAD_LETTER_QUEUES } from "./figures.js";
import { card, cards, cell, emptyRow, failure, table } from "./ui.js";

const LIMIT = 100;
const QUEUE_LABELS = { welcome: "Welcome", newsletter: "Newsletter", fanout: "Fan-out" };
const COLUMNS = [{ label: "Queue" }, { label: "Task" }, { label: "Reason" }, { label: "Failed at" }, { label: "Receives", num: true }];

/** What the task was: its kind and ids (a campaign's links to the campaign). */
function taskCell(task) {
  const parts = [h("strong", {}, task.kind || "unreadable")];
  if (task.campaign_id) {
    parts.push(" · campaign ", h("a", { href: `/admin/campaigns/${encodeURIComponent(task.campaign_id)}`, "data-link": true }, task.campaign_id));
  }
  if (task.recipients !== undefined && task.recipients !== null) parts.push(` · ${formatNumber(task.recipients)} recipients`);
  if (task.segment !== undefined && task.segment !== null) parts.push(` · segment ${task.segment}`);
  if (task.subscriber_id) parts.push(` · subscriber ${task.subscriber_id}`);
  if (task.seq !== undefined && task.seq !== null) parts.push(` · confirmation ${task.seq}`);
  return h("td", {}, parts);
}

function total(counts) {
  return DEAD_LETTER_QUEUES.reduce((sum, queue) => sum + (counts[queue] || 0), 0);
}

function countsText(counts) {
  return DEAD_LETTER_QUEUES.map((queue) => `${QUEUE_LABELS[queue].toLowerCase()} ${formatNumber(counts[queue] || 0)}`).join(", ");
}

export async function deadLetters(ctx) {
  const chosen = DEAD_LETTER_QUEUES.includes(ctx.query.get("queue")) ? ctx.query.get("queue") : "";
  const queue = field(
    "Queue",
    h("select", { name: "queue" }, h("option", { value: "" }, "All queues"), DEAD_LETTER_QUEUES.map((name) => h("option", { value: name }, QUEUE_LABELS[name]))),
  );
  queue.input.value = chosen;
  const status = statusLine();
  const result = h("div", { class: "redrive-result", "data-testid": "redrive-result" });
  const countCards = Object.fromEntries(DEAD_LETTER_QUEUES.map((name) => [name, card(QUEUE_LABELS[name], 0, { testid: `dead-letters-${name}` })]));
  const { wrap, body, table: tableNode } = table("Dead letters", COLUMNS);
  const caption = tableNode.querySelector("caption");
  const empty = h("p", { class: "notice", "data-testid": "dead-letters-empty", hidden: true }, "No dead letters. Nothing is stuck.");
  const refresh = h("button", { type: "button" }, "Refresh");
  const redriveAll = h("button", { type: "button", class: "primary" }, "Redrive all");
  const redriveOne = Object.fromEntries(
    DEAD_LETTER_QUEUES.map((name) => [name, h("button", { type: "button" }, `Redrive ${QUEUE_LABELS[name].toLowerCase()}`)]),
  );
  const filterRow = h("div", { class: "form-row filter" }, queue.wrapper);
  let counts = Object.fromEntries(DEAD_LETTER_QUEUES.map((name) => [name, 0]));

  async function load() {
    const query = new URLSearchParams({ limit: String(LIMIT) });
    if (queue.input.value) query.set("queue", queue.input.value);
    const answer = await admin("GET", `/dead-letters?${query}`, { signal: ctx.signal });
    counts = answer.counts || counts;
    for (const name of DEAD_LETTER_QUEUES) {
      countCards[name].set(counts[name] || 0);
      redriveOne[name].disabled = !counts[name];
    }
    redriveAll.disabled = total(counts) === 0;
    const where = queue.input.value ? `in the ${QUEUE_LABELS[queue.input.value].toLowerCase()} queue` : "in every queue";
    caption.textContent = `Dead letters ${where}${answer.items.length >= LIMIT ? ` (the first ${LIMIT})` : ""}`;
    const nothing = total(counts) === 0 && answer.items.length === 0;
    empty.hidden = !nothing;
    wrap.hidden = nothing;
    filterRow.hidden = nothing;
    replace(
      body,
      answer.items.length
        ? answer.items.map((item) =>
          h(
            "tr",
            {},
            cell(QUEUE_LABELS[item.queue] || item.queue),
            taskCell(item.task || {}),
            cell(item.reason),
            cell(formatTime(item.failed_at)),
            cell(item.receive_count, { num: true }),
          ))
        : emptyRow(COLUMNS.length, "No dead letters here."),
    );
    return answer;
  }

  async function reload(message) {
    status.show("Loading…", "pending");
    try {
      await load();
      status.show(message || `Dead letters: ${countsText(counts)}.`, "");
    } catch (error) {
      if (isAbort(error)) return;
      status.show(error.message, "error");
    }
  }

  async function redrive(name) {
    const howMany = name ? counts[name] || 0 : total(counts);
    const go = await confirmDialog({
      title: name ? `Redrive the ${QUEUE_LABELS[name].toLowerCase()} dead letters?` : "Redrive every dead letter?",
      body: [
        h("p", {}, `${formatNumber(howMany)} ${howMany === 1 ? "task goes" : "tasks go"} back to ${name ? "its queue" : "their queues"} and ${howMany === 1 ? "is" : "are"} tried again.`),
        h("p", {}, "Do it once the cause of the failures is fixed, or they fail again. A redriven task mails nobody twice."),
      ],
      confirmLabel: "Redrive",
      signal: ctx.signal,
    });
    if (!go) return;
    const buttons = [redriveAll, ...Object.values(redriveOne)];
    for (const button of buttons) button.disabled = true;
    status.show("Redriving…", "pending");
    try {
      const answer = await admin("POST", "/dead-letters/redrive", { body: name ? { queue: name } : {}, signal: ctx.signal });
      const moved = Object.values(answer.redriven || {}).reduce((sum, n) => sum + n, 0);
      const left = total(answer.remaining || {});
      replace(
        result,
        h("h3", {}, "Redrive result"),
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Redriven"),
          h("dd", { "data-testid": "redriven" }, `${formatNumber(moved)} (${countsText({ ...Object.fromEntries(DEAD_LETTER_QUEUES.map((q) => [q, 0])), ...answer.redriven })})`),
          h("dt", {}, "Remaining"),
          h("dd", { "data-testid": "remaining" }, `${formatNumber(left)} (${countsText(answer.remaining || {})})`),
        ),
        left ? h("p", { class: "hint" }, "Some are left: the call stops in time to answer, and new ones may have arrived. Redrive again to move the rest.") : null,
      );
      const text = `Redriven ${formatNumber(moved)}; ${formatNumber(left)} remaining.`;
      announce(text);
      await reload(text);
    } catch (error) {
      if (isAbort(error)) return;
      status.show(`Nothing was redriven: ${error.message}`, "error");
      for (const button of buttons) button.disabled = false;
    }
  }

  queue.input.addEventListener("change", () => {
    const url = `/admin/dead-letters${queue.input.value ? `?queue=${encodeURIComponent(queue.input.value)}` : ""}`;
    history.replaceState(null, "", url);
    reload();
  });
  refresh.addEventListener("click", () => reload());
  redriveAll.addEventListener("click", () => redrive(null));
  for (const name of DEAD_LETTER_QUEUES) redriveOne[name].addEventListener("click", () => redrive(name));

  try {
    await load();
  } catch (error) {
    if (isAbort(error)) throw error;
    return failure("Dead letters", error);
  }
  status.show(`Dead letters: ${countsText(counts)}.`, "");

  return h(
    "section",
    { class: "panel" },
    h("div", { class: "page-head" }, h("h1", {}, "Dead letters"), h("div", { class: "actions" }, refresh)),
    h("p", {}, "Tasks that failed every retry land here with the reason of their last failure. Fix the cause, then redrive them."),
    cards(DEAD_LETTER_QUEUES.map((name) => countCards[name]), { "aria-label": "Dead letter counts" }),
    h("div", { class: "actions" }, redriveAll, DEAD_LETTER_QUEUES.map((name) => redriveOne[name])),
    result,
    status.node,
    empty,
    filterRow,
    wrap,
  );
}
