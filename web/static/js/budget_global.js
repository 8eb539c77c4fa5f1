// [budget-ui] The gateway's global budget on the System page: today's and this month's spend of
// every client together against its limits; admins change it (PUT /api/budgets/global).

import { get, put } from "./api.js";
import { followBudgets, refreshBudgetAlerts } from "./budget_banner.js";
import { budgetFields, periodSpend } from "./budgets.js";
import { h, panel, replace } from "./dom.js";
import { failed, flash } from "./widgets.js";

/** The global budget's card: its spend bars, and for an admin the form that sets it. */
export function globalBudgetCard(ctx) {
  const spend = h("div", {});
  const formSlot = h("div", {});
  const message = h("div", { "aria-live": "polite" });
  const card = h(
    "section",
    { class: "card budget-card", "aria-labelledby": "global-budget-title" },
    h("div", { class: "card-head" }, h("h2", { id: "global-budget-title" }, "Global budget")),
    message,
    spend,
    formSlot,
  );
  // The form is drawn once per load (a state change of the budget redraws the spend alone, so
  // an admin's half-typed values stay).
  const load = (withForm = true) =>
    panel(spend, async () => {
      const budgets = await get("/api/budgets");
      const global = budgets.global || {};
      if (withForm && ctx.isAdmin) replace(formSlot, form(global));
      return spendView(global);
    });
  followBudgets(ctx, (frame) => frame.scope === "global", () => load(false));

  const form = (global) => {
    const [fields, read] = budgetFields({ day: "day_usd", month: "month_usd", warn: "warn_percent" }, { day: global.day_usd, month: global.month_usd, warn: global.warn_percent });
    const submit = h("button", { type: "submit", class: "btn primary" }, "Save global budget");
    const el = h(
      "form",
      { class: "budget-form global-budget-form", novalidate: true },
      h("p", { class: "hint" }, "The spend of every client together. Past it, every call is refused until the period resets (UTC)."),
      fields,
      submit,
    );
    el.addEventListener("submit", async (event) => {
      event.preventDefault();
      submit.disabled = true;
      try {
        await put("/api/budgets/global", read());
        refreshBudgetAlerts();
        await load();
        flash(message, "ok", "Global budget saved.");
      } catch (error) {
        failed(message, error);
        submit.disabled = false;
      }
    });
    return el;
  };

  return { card, load: () => load() };
}

/** The global budget's two periods against their limits. */
function spendView(global) {
  const spend = global.spend || {};
  const none = global.day_usd == null && global.month_usd == null;
  return h(
    "div",
    {},
    none ? h("p", { class: "hint" }, "No global budget: calls are stopped only by their client's or provider's.") : null,
    periodSpend({ period: "day", spent: spend.day_usd, limit: global.day_usd, warnPercent: global.warn_percent, unpriced: spend.day_unpriced_calls, resetsAtMs: spend.day_resets_at_ms }),
    periodSpend({ period: "month", spent: spend.month_usd, limit: global.month_usd, warnPercent: global.warn_percent, unpriced: spend.month_unpriced_calls, resetsAtMs: spend.month_resets_at_ms }),
  );
}
