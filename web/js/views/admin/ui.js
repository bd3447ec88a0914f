// Building blocks shared by the admin views: badges, cards, tables, "Load more", polling.

import { isAbort } from "../../api.js";
import { formatNumber, h, uniqueId } from "../../dom.js";

/** A status badge: the word itself is the text, the colour only repeats it. */
export function badge(status, attrs = {}) {
  return h("span", { class: `badge ${status || "unknown"}`, ...attrs }, status || "unknown");
}

/**
 * A figure card: <li class="card"><span class="label">…</span><span class="value">…</span></li>.
 * Returns {node, value, set(text)} so a polling view can change the value in place.
 * @param {string} label
 * @param {string|number|null} value  numbers are formatted
 * @param {{testid?: string, hint?: string}} [options]
 */
export function card(label, value, { testid, hint } = {}) {
  const valueNode = h("span", { class: "value", "data-testid": testid || null });
  const node = h("li", { class: "card" }, h("span", { class: "label" }, label), valueNode, hint ? h("span", { class: "hint" }, hint) : null);
  const set = (next) => {
    valueNode.textContent = typeof next === "number" ? formatNumber(next) : next === null || next === undefined ? "–" : String(next);
  };
  set(value);
  return { node, value: valueNode, set };
}

/** <ul class="cards"> of card() nodes (or nodes). */
export function cards(items, attrs = {}) {
  return h("ul", { class: "cards", ...attrs }, items.map((item) => (item && item.node ? item.node : item)));
}

/**
 * A table inside .table-wrap, with a caption.
 * columns: [{label, num?}]; returns {wrap, table, body} (body is the <tbody> to fill with rows()).
 * focusable: the wrapper is a Tab stop, a region named by the caption - for a wide table with
 * no link or button inside, so that the keyboard can scroll it on a narrow screen.
 */
export function table(caption, columns, attrs = {}, { focusable = false } = {}) {
  const body = h("tbody", {});
  const captionId = focusable ? uniqueId("caption") : null;
  const tableNode = h(
    "table",
    attrs,
    h("caption", { id: captionId }, caption),
    h("thead", {}, h("tr", {}, columns.map((column) => h("th", { scope: "col", class: column.num ? "num" : null }, column.label)))),
    body,
  );
  // the wrapper scrolls on narrow screens (browsers let the keyboard scroll it)
  const wrap = h("div", { class: "table-wrap", tabindex: focusable ? "0" : null, role: focusable ? "region" : null, "aria-labelledby": captionId }, tableNode);
  return { wrap, table: tableNode, body };
}

/** A <td>; numbers are formatted and right-aligned. */
export function cell(content, { num = false, attrs = {} } = {}) {
  const text = num && typeof content === "number" ? formatNumber(content) : content;
  return h("td", { class: num ? "num" : null, ...attrs }, text === null || text === undefined || text === "" ? "–" : text);
}

/** A row saying there is nothing to show, spanning the table. */
export function emptyRow(columns, text) {
  return h("tr", { class: "empty" }, h("td", { colspan: String(columns) }, text));
}

/**
 * A "Load more" button for cursor pagination. load(cursor) fetches a page and returns its
 * next_cursor; the button hides itself when there is none. done(next) -> the status text
 * after a page (default "More loaded.").
 * @returns {{node: HTMLElement, setCursor(cursor: string|null): void}}
 */
export function loadMore(load, status, { label = "Load more", done = () => "More loaded." } = {}) {
  let cursor = null;
  const button = h("button", { type: "button", hidden: true }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.show("Loading…", "pending");
    try {
      const next = await load(cursor);
      setCursor(next);
      status.show(done(next), "");
      // the button may be gone (the last page): keep the focus in the list
      if (button.hidden) {
        status.node.setAttribute("tabindex", "-1");
        status.node.focus();
      }
    } catch (error) {
      if (isAbort(error)) return;
      status.show(error.message, "error");
    } finally {
      button.disabled = false;
    }
  });
  function setCursor(next) {
    cursor = next || null;
    button.hidden = !cursor;
  }
  return { node: h("div", { class: "actions" }, button), setCursor };
}

/**
 * Runs step() again and again: step returns the delay in ms before the next run, or null to
 * stop. Chained setTimeout (never overlapping), stopped when signal aborts.
 */
export function poll(step, signal, firstDelay) {
  let timer = null;
  const stop = () => clearTimeout(timer);
  signal.addEventListener("abort", stop, { once: true });
  const run = async () => {
    if (signal.aborted) return;
    let delay = null;
    try {
      delay = await step();
    } catch (error) {
      if (isAbort(error) || signal.aborted) return;
      delay = 5000; // a failed read: try again a little later
    }
    if (delay !== null && delay !== undefined && !signal.aborted) timer = setTimeout(run, delay);
  };
  if (firstDelay === undefined) run();
  else timer = setTimeout(run, firstDelay);
  return stop;
}

/** Percent as a whole number that reaches 100 only when everything is done. */
export function percent(done, total) {
  if (!total) return 0;
  return Math.min(100, Math.floor((done * 100) / total));
}

/** A send rate as text: "2.5 mails/s" (one decimal below 10), "–" without one. */
export function mailRate(rate) {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return "–";
  return `${rate < 10 ? rate.toFixed(1) : formatNumber(Math.round(rate))} mails/s`;
}

/** A processing time in ms as text: "4.2 ms", "168 ms", "1,204 ms"; "–" without one. */
export function millis(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  return `${ms < 10 ? ms.toFixed(1) : formatNumber(Math.round(ms))} ms`;
}

/** A rate as text: "12.5 %" (one decimal), "–" without a base. */
export function ratio(part, whole) {
  if (!whole) return "–";
  return `${((part * 100) / whole).toFixed(1)}%`;
}

/** A page for a view whose data could not be loaded. */
export function failure(title, error) {
  return h("section", { class: "panel" }, h("h1", {}, title), h("p", { class: "notice error", role: "alert" }, error.message || String(error)));
}
