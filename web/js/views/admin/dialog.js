// A confirmation dialog: a native <dialog> opened with showModal() (the browser keeps focus
// inside and Escape cancels), labelled by its heading, described by its text; focus goes
// back to whatever opened it.

import { h, uniqueId } from "../../dom.js";

/**
 * Asks for a confirmation. Resolves true when the admin confirms, false on cancel or Escape.
 * signal (the page's ctx.signal) closes it as cancelled when the admin leaves the page.
 * @param {{title: string, body: (string|Node|Array), confirmLabel?: string, cancelLabel?: string, danger?: boolean, signal?: AbortSignal}} options
 * @returns {Promise<boolean>}
 */
export function confirmDialog({ title, body, confirmLabel = "Confirm", cancelLabel = "Cancel", danger = false, signal }) {
  const opener = document.activeElement;
  const titleId = uniqueId("dialog-title");
  const bodyId = uniqueId("dialog-body");
  const cancel = h("button", { type: "button", value: "cancel" }, cancelLabel);
  const confirm = h("button", { type: "submit", value: "confirm", class: danger ? "danger" : "primary" }, confirmLabel);
  const dialog = h(
    "dialog",
    { class: "dialog", "aria-labelledby": titleId, "aria-describedby": bodyId },
    h(
      "form",
      { method: "dialog" },
      h("h2", { id: titleId }, title),
      h("div", { id: bodyId, class: "dialog-body" }, Array.isArray(body) ? body : [body]),
      h("div", { class: "actions" }, cancel, confirm),
    ),
  );
  cancel.addEventListener("click", () => dialog.close("cancel"));
  document.body.append(dialog);
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        const confirmed = dialog.returnValue === "confirm";
        dialog.remove();
        if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
        resolve(confirmed);
      },
      { once: true },
    );
    dialog.returnValue = "";
    dialog.showModal();
    if (signal) signal.addEventListener("abort", () => dialog.open && dialog.close("cancel"), { once: true });
    // the safe choice has the focus: Enter alone never erases or sends
    cancel.focus();
  });
}
