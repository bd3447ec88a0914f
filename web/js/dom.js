// Small DOM helpers: h() builds elements (text is always text, never HTML), announce() speaks.

/**
 * h("button", {type: "submit", onclick: fn, class: "primary"}, "Send") -> <button>.
 * Attributes: on* are listeners; true/false toggle boolean attributes; null/undefined skip.
 * Children: strings (as text nodes), nodes, arrays, null/false (skipped).
 */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, String(value));
    }
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/** Replaces a node's children. */
export function replace(node, ...children) {
  return append(clear(node), children);
}

/** Says something to screen readers (the page's polite live region). */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  // a new text node after a tick is announced even when the text repeats
  setTimeout(() => { region.textContent = text; }, 50);
}

let uid = 0;
/** A unique id for label/aria wiring. */
export function uniqueId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: {input, error, wrapper}; error messages are wired with aria-describedby. */
export function field(label, input, { hint, optional } = {}) {
  const id = input.id || uniqueId("field");
  input.id = id;
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const described = [`${id}-error`];
  let hintNode = null;
  if (hint) {
    hintNode = h("p", { class: "hint", id: `${id}-hint` }, hint);
    described.unshift(`${id}-hint`);
  }
  input.setAttribute("aria-describedby", described.join(" "));
  const wrapper = h(
    "div",
    { class: "field" },
    h("label", { for: id }, label, optional ? h("span", { class: "optional" }, " (optional)") : null),
    hintNode,
    input,
    error,
  );
  return {
    input,
    wrapper,
    setError(text) {
      error.textContent = text || "";
      error.hidden = !text;
      if (text) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    },
  };
}

/** A status line (role=status) whose text and kind (pending, success, error) change. */
export function statusLine(attrs = {}) {
  const node = h("div", { class: "status", role: "status", "aria-live": "polite", ...attrs });
  return {
    node,
    show(text, kind) {
      node.textContent = text || "";
      node.className = `status ${kind || ""}`.trim();
    },
  };
}

const numberFormat = new Intl.NumberFormat("en");
export function formatNumber(value) {
  return value === null || value === undefined ? "–" : numberFormat.format(value);
}

export function formatTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString("en", { dateStyle: "medium", timeStyle: "short" });
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
