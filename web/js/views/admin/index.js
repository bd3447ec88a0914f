// The admin console's routes. Every view is async (ctx) => Node (see ../../router.js).

import { campaignList } from "./campaigns.js";
import { compose } from "./compose.js";
import { deadLetters } from "./deadletters.js";
import { overview } from "./overview.js";
import { campaignPage } from "./progress.js";
import { signIn } from "./signin.js";
import { subscribers } from "./subscribers.js";

export function routes(route) {
  route("/admin/sign-in", signIn, { title: "Sign in", admin: true, open: true });
  route("/admin", overview, { title: "Overview", admin: true });
  route("/admin/campaigns", campaignList, { title: "Campaigns", admin: true });
  // before /admin/campaigns/:id, which would take "new" for an id
  route("/admin/campaigns/new", compose, { title: "New campaign", admin: true });
  route("/admin/campaigns/:id/edit", compose, { title: "Edit campaign", admin: true });
  route("/admin/campaigns/:id", campaignPage, { title: "Campaign", admin: true });
  route("/admin/subscribers", subscribers, { title: "Subscribers", admin: true });
  route("/admin/dead-letters", deadLetters, { title: "Dead letters", admin: true });
}
