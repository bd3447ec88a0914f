// Client-side routing with the History API. Each route is a pattern ("/admin/campaigns/:id")
// and a view: async (ctx) => Node. Leaving a page aborts ctx.signal, which stops its polling.

import { announce, clear, h } from "./dom.js";

const routes = [];
let current = null; // {controller}
let guard = null;
let rendered = false; // the first render is the page load: focus stays where the browser put it

/** route("/admin/campaigns/:id", view, {title, admin}) */
export function route(pattern, view, options = {}) {
  const names = [];
  const source = pattern
    .split("/")
    .map((part) => {
      if (part.startsWith(":")) {
        names.push(part.slice(1));
        return "([^/]+)";
      }
      return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    })
    .join("/");
  routes.push({ pattern, regex: new RegExp(`^${source}/?$`), names, view, options });
}

/** A function (path, options) -> redirect path or null, run before every view. */
export function setGuard(fn) {
  guard = fn;
}

function match(pathname) {
  for (const entry of routes) {
    const found = entry.regex.exec(pathname);
    if (found) {
      const params = {};
      try {
        entry.names.forEach((name, index) => {
          params[name] = decodeURIComponent(found[index + 1]);
        });
      } catch (malformed) {
        return null; // e.g. /admin/campaigns/%E0: no such page
      }
      return { entry, params };
    }
  }
  return null;
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  return render();
}

export async function render() {
  const main = document.getElementById("main");
  const url = new URL(location.href);
  if (current) current.controller.abort();
  const controller = new AbortController();
  current = { controller };
  let found = match(url.pathname);
  if (found && guard) {
    const redirect = guard(url, found.entry.options);
    if (redirect) {
      history.replaceState(null, "", redirect);
      return render();
    }
  }
  if (!found) found = match("/__not_found__");
  const { entry, params } = found;
  const ctx = {
    params,
    query: url.searchParams,
    signal: controller.signal,
    navigate,
    path: url.pathname,
  };
  document.body.dataset.area = entry.options.admin ? "admin" : "public";
  window.dispatchEvent(new CustomEvent("mailroom:route", { detail: { path: url.pathname, admin: !!entry.options.admin } }));
  let view;
  try {
    view = await entry.view(ctx);
  } catch (error) {
    if (controller.signal.aborted) return;
    view = h("section", { class: "panel" }, h("h1", {}, "Something went wrong"), h("p", { class: "error" }, String(error.message || error)));
  }
  if (controller.signal.aborted) return; // a newer navigation won
  clear(main);
  main.append(view);
  const heading = main.querySelector("h1");
  const title = (heading && heading.textContent.trim()) || entry.options.title || "Mailroom";
  document.title = `${title} · Mailroom`;
  if (rendered) {
    // A client-side navigation: move focus to the new page, as a page load would, and say where we are.
    main.focus({ preventScroll: true });
    window.scrollTo(0, 0);
    announce(title);
  }
  rendered = true;
}

/** Same-origin <a data-link> and <a> inside the app navigate without reloading. */
export function start() {
  document.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const link = event.target.closest("a[href]");
    if (!link || link.target || link.hasAttribute("download")) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith("/api/") || url.pathname.startsWith("/_local/")) return;
    event.preventDefault();
    if (url.href !== location.href) navigate(url.pathname + url.search + url.hash);
  });
  window.addEventListener("popstate", () => render());
  return render();
}
