// /admin/subscribers: search and list (q and status live in the URL), erase one (GDPR),
// import a CSV file, export every subscriber as one CSV file.

import { admin, isAbort } from "../../api.js";
import { announce, field, formatNumber, formatTime, h, replace, statusLine, uniqueId } from "../../dom.js";
import { confirmDialog } from "./dialog.js";
import { SUBSCRIBER_STATUSES } from "./figures.js";
import { badge, card, cards, cell, emptyRow, loadMore, table } from "./ui.js";

const PAGE = 50;
const MAX_IMPORT_BYTES = 1024 * 1024;
const COLUMNS = [
  { label: "Email" },
  { label: "Name" },
  { label: "Status" },
  { label: "Source" },
  { label: "Created" },
  { label: "Confirmed" },
  { label: "Actions" },
];

/** The list's filters from a query string: {q, status}. */
function filtersOf(query) {
  const status = query.get("status") || "";
  return { q: (query.get("q") || "").trim(), status: SUBSCRIBER_STATUSES.includes(status) ? status : "" };
}

function describe({ q, status }) {
  const parts = [];
  if (status) parts.push(`with status ${status}`);
  if (q) parts.push(`matching “${q}”`);
  return parts.length ? `Subscribers ${parts.join(" and ")}` : "All subscribers";
}

// ---------------------------------------------------------------- the list, erase

function listSection(ctx, searchInput) {
  const status = statusLine();
  const { wrap, body, table: tableNode } = table("All subscribers", COLUMNS);
  const caption = tableNode.querySelector("caption");
  let filters = filtersOf(ctx.query);
  let shown = 0;

  async function erase(subscriber, row) {
    const go = await confirmDialog({
      title: `Erase ${subscriber.email}?`,
      body: [
        h("p", {}, "This permanently deletes this person's personal data: the subscriber, and their address and name in every record of the mails sent to them."),
        h("p", {}, h("strong", {}, "It cannot be undone."), " The campaigns' counters stay as they are. To only stop mails, let them unsubscribe instead."),
      ],
      confirmLabel: "Erase permanently",
      cancelLabel: "Keep",
      danger: true,
      signal: ctx.signal,
    });
    if (!go) return;
    status.show(`Erasing ${subscriber.email}…`, "pending");
    try {
      await admin("DELETE", `/subscribers/${encodeURIComponent(subscriber.id)}`, { signal: ctx.signal });
    } catch (error) {
      if (isAbort(error)) return;
      status.show(`${subscriber.email} was not erased: ${error.message}`, "error");
      return;
    }
    // the focus moves to the next row's button (or the previous one's, or the search box)
    const neighbour = row.nextElementSibling || row.previousElementSibling;
    row.remove();
    shown -= 1;
    const text = `${subscriber.email} is erased.`;
    status.show(text, "success");
    announce(text);
    const button = neighbour && neighbour.querySelector("button");
    if (button) button.focus();
    else {
      replace(body, emptyRow(COLUMNS.length, "No subscribers here."));
      searchInput.focus();
    }
  }

  function rowOf(subscriber) {
    const eraseButton = h("button", { type: "button", class: "small", "aria-label": `Erase ${subscriber.email}` }, "Erase");
    const row = h(
      "tr",
      { "data-subscriber": subscriber.id },
      cell(subscriber.email),
      cell(subscriber.name),
      h("td", {}, badge(subscriber.status)),
      cell(subscriber.source),
      cell(formatTime(subscriber.created_at)),
      cell(formatTime(subscriber.confirmed_at)),
      h("td", {}, eraseButton),
    );
    eraseButton.addEventListener("click", () => erase(subscriber, row));
    return row;
  }

  async function fetchPage(cursor) {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (filters.q) query.set("q", filters.q);
    if (filters.status) query.set("status", filters.status);
    if (cursor) query.set("cursor", cursor);
    const answer = await admin("GET", `/subscribers?${query}`, { signal: ctx.signal });
    return { rows: answer.items.map(rowOf), next: answer.next_cursor };
  }

  function countText(next) {
    return `${formatNumber(shown)} ${shown === 1 ? "subscriber" : "subscribers"} shown${next ? "; there may be more" : ""}.`;
  }

  const more = loadMore(async (cursor) => {
    const { rows, next } = await fetchPage(cursor);
    if (rows.length) {
      const empty = body.querySelector("tr.empty");
      if (empty) empty.remove();
    }
    body.append(...rows);
    shown += rows.length;
    return next;
  }, status, { done: countText });

  /** Reads the first page for these filters (the table starts over). */
  async function search(next) {
    filters = next || filters;
    caption.textContent = describe(filters);
    status.show("Searching…", "pending");
    const page = await fetchPage(null);
    shown = page.rows.length;
    replace(body, page.rows.length ? page.rows : emptyRow(COLUMNS.length, page.next ? "None on the first page: load more to look further." : "No subscribers found."));
    more.setCursor(page.next);
    status.show(countText(page.next), "");
  }

  const node = h("section", { "aria-label": "Subscribers" }, wrap, more.node, status.node);
  return { node, search, status, filters: () => filters };
}

// ---------------------------------------------------------------- import

function reportList(title, items, describeItem) {
  if (!items || items.length === 0) return null;
  const { wrap, body } = table(title, [{ label: "Row", num: true }, { label: "Email" }, { label: "Detail" }]);
  body.append(...items.map((item) => h("tr", {}, cell(item.row, { num: true }), cell(item.email), cell(describeItem(item)))));
  return h("div", { class: "report-list" }, h("h4", {}, title), wrap);
}

function importReport(report) {
  const notAttempted = report.not_attempted || [];
  return h(
    "div",
    { class: "import-report", "data-testid": "import-report" },
    h("h3", { tabindex: "-1", class: "report-heading" }, "Import report"),
    report.complete
      ? h("p", { class: "notice", "data-testid": "import-complete" }, `Complete: every one of the ${formatNumber(report.rows)} rows was handled.`)
      : h("p", { class: "notice error", "data-testid": "import-complete" }, `Not complete: ${formatNumber(notAttempted.length)} rows were not started in time. Import the same file again to do the rest; rows already done then count as existing.`),
    cards([
      card("Imported", report.imported, { testid: "import-imported" }),
      card("Already there", (report.existing || []).length, { testid: "import-existing" }),
      card("Duplicates in the file", (report.duplicates || []).length, { testid: "import-duplicates" }),
      card("Rejected", (report.rejected || []).length, { testid: "import-rejected" }),
      card("Failed", (report.failed || []).length, { testid: "import-failed" }),
      card("Resumed", (report.resumed || []).length, { testid: "import-resumed" }),
    ]),
    h("p", {}, report.confirmed ? "Imported as subscribed (no mail was sent to them)." : "Each new address gets a confirmation mail and stays pending until it is confirmed."),
    reportList("Rejected rows", report.rejected, (item) => item.reason),
    reportList("Failed rows (import the file again)", report.failed, (item) => item.reason),
    reportList("Duplicates in the file", report.duplicates, (item) => `same address as row ${item.first_row}`),
    reportList("Already subscribed or pending", report.existing, () => "left as it was"),
    reportList("Resumed (a confirmation that an earlier import did not queue)", report.resumed, (item) => `confirmation ${item.seq} queued`),
    reportList("Not started", notAttempted, () => "import the file again"),
  );
}

function importSection(ctx, afterImport) {
  const file = field("CSV file", h("input", { type: "file", name: "file", accept: ".csv,text/csv" }), {
    hint: "UTF-8, a header row with an email column and optionally name (other columns are ignored); at most 5,000 rows and 1 MiB.",
  });
  const boxId = uniqueId("confirmed");
  const box = h("input", { type: "checkbox", id: boxId, name: "confirmed", "aria-describedby": `${boxId}-hint` });
  const confirmed = h(
    "div",
    { class: "field checkbox" },
    box,
    h("label", { for: boxId }, "Import as confirmed (they already opted in elsewhere)"),
    h("p", { class: "hint", id: `${boxId}-hint` }, "Ticked: they are subscribed at once and get no mail. Not ticked: each new address gets a confirmation mail first (double opt-in)."),
  );
  const button = h("button", { type: "submit" }, "Import");
  const status = statusLine();
  const result = h("div", {});

  async function submit(event) {
    event.preventDefault();
    file.setError("");
    const chosen = file.input.files && file.input.files[0];
    if (!chosen) {
      file.setError("Please choose a CSV file.");
      file.input.focus();
      return;
    }
    if (chosen.size > MAX_IMPORT_BYTES) {
      file.setError(`The file has ${formatNumber(chosen.size)} bytes; at most ${formatNumber(MAX_IMPORT_BYTES)} are accepted. Please split it.`);
      file.input.focus();
      return;
    }
    button.disabled = true;
    status.show(`Importing ${chosen.name}…`, "pending");
    try {
      // the file's bytes as they are: a file that is not UTF-8 gets the API's 400, never a
      // silent U+FFFD in every name (which File.text() would make of it)
      const report = await admin("POST", `/subscribers/import?confirmed=${box.checked ? "true" : "false"}`, {
        raw: chosen,
        contentType: "text/csv; charset=utf-8",
        signal: ctx.signal,
      });
      replace(result, importReport(report));
      status.show(`Imported ${formatNumber(report.imported)} of ${formatNumber(report.rows)} rows${report.complete ? "" : " (not complete)"}.`, report.complete ? "success" : "error");
      result.querySelector(".report-heading").focus();
      afterImport();
    } catch (error) {
      if (isAbort(error)) return;
      file.setError(error.message);
      status.show(`Nothing was imported: ${error.message}`, "error");
      file.input.focus();
    } finally {
      button.disabled = false;
    }
  }

  const node = h(
    "section",
    { "aria-labelledby": "import-heading", class: "import" },
    h("h2", { id: "import-heading" }, "Import"),
    h("form", { novalidate: true, "aria-label": "Import subscribers", onsubmit: submit }, file.wrapper, confirmed, h("div", { class: "actions" }, button)),
    status.node,
  );
  return { node, report: result };
}

// ---------------------------------------------------------------- export

/** Every page of GET /subscribers/export joined into one CSV text (the header once). */
export async function exportCsv(status, signal, onPage) {
  const parts = [];
  let cursor = null;
  let pages = 0;
  do {
    const query = new URLSearchParams();
    if (status) query.set("status", status);
    if (cursor) query.set("cursor", cursor);
    const suffix = query.toString() ? `?${query}` : "";
    const { data, headers } = await admin("GET", `/subscribers/export${suffix}`, { withHeaders: true, accept: "text/csv", signal });
    const text = typeof data === "string" ? data : "";
    if (pages === 0) parts.push(text);
    else {
      const end = text.indexOf("\n");
      parts.push(end === -1 ? "" : text.slice(end + 1)); // every page repeats the header row
    }
    pages += 1;
    cursor = headers.get("X-Next-Cursor");
    if (onPage) onPage(pages);
  } while (cursor);
  const csv = parts.join("");
  const rows = csv.split("\n").filter((line) => line.trim() !== "").length - 1;
  return { csv, rows: Math.max(0, rows), pages };
}

/** Offers a text as a file download (a temporary <a download> with an object URL). */
function download(text, name, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function exportSection(ctx, currentStatus) {
  const button = h("button", { type: "button" }, "Export CSV");
  const status = statusLine({ "data-testid": "export-status" });
  button.addEventListener("click", async () => {
    const only = currentStatus();
    button.disabled = true;
    status.show("Exporting…", "pending");
    try {
      const result = await exportCsv(only, ctx.signal, (pages) => status.show(`Exporting… (page ${pages})`, "pending"));
      download(result.csv, "subscribers.csv", "text/csv;charset=utf-8");
      status.show(`Exported ${formatNumber(result.rows)} subscribers to subscribers.csv.`, "success");
    } catch (error) {
      if (isAbort(error)) return;
      status.show(`The export failed: ${error.message}`, "error");
    } finally {
      button.disabled = false;
    }
  });
  return h(
    "section",
    { "aria-labelledby": "export-heading", class: "export" },
    h("h2", { id: "export-heading" }, "Export"),
    h("p", {}, "Downloads every subscriber (with the status chosen above, if one is) as subscribers.csv: id, email, name, status, source and the times."),
    h("div", { class: "actions" }, button),
    status.node,
  );
}

// ---------------------------------------------------------------- the page

export async function subscribers(ctx) {
  const initial = filtersOf(ctx.query);
  const q = field("Search", h("input", { type: "search", name: "q", maxlength: "254", autocomplete: "off", spellcheck: "false" }), {
    hint: "A part of the address or of the name.",
  });
  q.input.value = initial.q;
  const statusSelect = field(
    "Status",
    h("select", { name: "status" }, h("option", { value: "" }, "Any"), SUBSCRIBER_STATUSES.map((status) => h("option", { value: status }, status))),
  );
  statusSelect.input.value = initial.status;
  const list = listSection(ctx, q.input);

  async function submit(event) {
    event.preventDefault();
    q.setError("");
    const next = { q: q.input.value.trim(), status: statusSelect.input.value };
    const query = new URLSearchParams();
    if (next.q) query.set("q", next.q);
    if (next.status) query.set("status", next.status);
    const url = `/admin/subscribers${query.toString() ? `?${query}` : ""}`;
    // like a GET form: the search is in the address (reload and back keep it), without leaving the page
    if (url !== location.pathname + location.search) history.pushState(null, "", url);
    try {
      await list.search(next);
    } catch (error) {
      if (isAbort(error)) return;
      if (error.field === "q") q.setError(error.message);
      list.status.show(error.message, "error");
    }
  }

  const searchForm = h(
    "form",
    { role: "search", "aria-label": "Find subscribers", novalidate: true, onsubmit: submit },
    h("div", { class: "form-row" }, q.wrapper, statusSelect.wrapper, h("div", { class: "field" }, h("button", { type: "submit", class: "primary" }, "Search"))),
  );

  const importer = importSection(ctx, () => list.search().catch(() => {}));
  try {
    await list.search(initial);
  } catch (error) {
    if (isAbort(error)) throw error;
    list.status.show(error.message, "error");
  }

  return h(
    "section",
    { class: "panel" },
    h("div", { class: "page-head" }, h("h1", {}, "Subscribers")),
    searchForm,
    list.node,
    h("div", { class: "split tools" }, importer.node, exportSection(ctx, () => list.filters().status)),
    importer.report,
  );
}
