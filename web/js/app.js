// Mailroom's single-page app: public pages (sign-up, confirm, unsubscribe) and the admin console.

import { signedIn, signOut } from "./auth.js";
import { h, replace } from "./dom.js";
import { navigate, route, setGuard, start } from "./router.js";
import * as pub from "./views/public.js";
import * as admin from "./views/admin/index.js";

route("/", pub.signUp, { title: "Subscribe" });
route("/check-inbox", pub.checkInbox, { title: "Check your inbox" });
route("/confirm", pub.confirm, { title: "Confirm your subscription" });
route("/unsubscribe", pub.unsubscribe, { title: "Unsubscribe" });
admin.routes(route);
route("/__not_found__", pub.notFound, { title: "Page not found" });

setGuard((url, options) => {
  if (options.admin && !options.open && !signedIn()) {
    return `/admin/sign-in?next=${encodeURIComponent(url.pathname + url.search)}`;
  }
  return null;
});

function drawNav(isAdmin) {
  const nav = document.getElementById("nav");
  const here = location.pathname;
  const link = (href, text, exact) => {
    const active = exact ? here === href : here === href || here.startsWith(`${href}/`);
    return h("a", { href, "data-link": true, "aria-current": active ? "page" : null }, text);
  };
  if (!isAdmin) {
    replace(nav, h("ul", {}, h("li", {}, link("/", "Subscribe", true))));
    return;
  }
  if (!signedIn()) {
    replace(nav, h("ul", {}, h("li", {}, link("/admin/sign-in", "Sign in", true))));
    return;
  }
  replace(
    nav,
    h(
      "ul",
      {},
      h("li", {}, link("/admin", "Overview", true)),
      h("li", {}, link("/admin/campaigns", "Campaigns")),
      h("li", {}, link("/admin/subscribers", "Subscribers")),
      h("li", {}, link("/admin/dead-letters", "Dead letters")),
      h(
        "li",
        {},
        h("button", { type: "button", class: "link-button", onclick: () => { signOut(); navigate("/admin/sign-in"); } }, "Sign out"),
      ),
    ),
  );
}

window.addEventListener("mailroom:route", (event) => drawNav(event.detail.admin));
// An admin call answered 401: the token expired or was revoked. Sign out and ask again, then
// come back here (a draft being written is kept by the compose page, see compose.js). Several
// calls failing at once redirect once; the sign-in page is never its own "next".
window.addEventListener("mailroom:unauthorized", () => {
  signOut();
  if (location.pathname.startsWith("/admin/sign-in")) return;
  navigate(`/admin/sign-in?next=${encodeURIComponent(location.pathname + location.search)}&expired=1`, { replace: true });
});

start();
