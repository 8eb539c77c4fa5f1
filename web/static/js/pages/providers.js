// Providers: what the gateway routes to, their health and credit; admins switch them, override
// their connection settings live and run a test call.

import { get, post, put } from "../api.js";
import { followBudgets, refreshBudgetAlerts } from "../budget_banner.js";
import { budgetFields, periodSpend } from "../budgets.js";
import { empty, field, h, panel, replace } from "../dom.js";
import * as format from "../format.js";
import { reachBadge } from "../reach.js";
import { badge, failed, flash, keyValues, numberInput, numberOrNull, urlCode } from "../widgets.js";

const BREAKER = { closed: "ok", half_open: "warn", open: "bad" };

export function breakerBadge(state) {
  if (!state) return badge("", "not running");
  return badge(BREAKER[state] || "warn", `breaker ${state.replace("_", "-")}`);
}

export async function render(root, ctx) {
  const list = h("div", { class: "provider-list" });
  const refresh = h("button", { type: "button", class: "btn" }, "Refresh");
  replace(root, h("div", { class: "page-head" }, h("h1", { id: "page-title" }, "Providers"), refresh), list);
  const load = () =>
    panel(list, async () => {
      const [{ data }, budgets] = await Promise.all([get("/api/providers"), get("/api/budgets")]);
      if (!data.length) return empty("No providers are configured.");
      const budgetOf = (name) => (budgets.providers || {})[name] || { month_usd: null, warn_percent: null, spend: {} };
      return h("div", { class: "grid provider-grid" }, data.map((p) => card(p, ctx, load, budgetOf(p.name))));
    });
  refresh.addEventListener("click", load);
  // [budget-ui] A provider's budget changing state redraws its spend line alone (not the forms).
  followBudgets(ctx, (frame) => frame.scope === "provider", async () => {
    try {
      const budgets = await get("/api/budgets");
      for (const [name, budget] of Object.entries(budgets.providers || {})) {
        const slot = list.querySelector(`[data-provider-budget="${CSS.escape(name)}"]`);
        if (slot) replace(slot, providerSpend(budget));
      }
    } catch {
      // The next frame, Refresh or a reload reads them again.
    }
  });
  await load();
}

function card(p, ctx, reload, budget) {
  const path = `/api/providers/${encodeURIComponent(p.name)}`;
  const message = h("div", { "aria-live": "polite" });
  const stats = p.statistics;
  const credit =
    p.credit_balance_usd === null
      ? "not tracked"
      : [format.money(p.credit_balance_usd), p.low_credit_threshold_usd !== null ? [" (alert below ", format.money(p.low_credit_threshold_usd), ")"] : null];
  const section = h(
    "section",
    { class: "card provider-card", dataset: { provider: p.name }, "aria-labelledby": `provider-${p.name}` },
    h(
      "div",
      { class: "card-head" },
      h("h2", { id: `provider-${p.name}` }, p.name),
      h(
        "div",
        { class: "badges" },
        p.enabled ? badge("ok", "enabled") : badge("bad", p.running ? "disabled" : "off in config"),
        p.running ? breakerBadge(p.breaker.state) : null,
        p.running && stats ? reachBadge(stats.reachability) : null,
        p.low_credit ? badge("warn", "low credit") : null,
      ),
    ),
    keyValues([
      ["Base URL", urlCode(p.base_url)],
      ["Default model", p.default_model || "—"],
      ["Max concurrency", format.count(p.max_concurrency)],
      ["In flight", stats ? `${format.count(stats.in_flight)}${stats.waiting ? ` (+${format.count(stats.waiting)} waiting)` : ""}` : "—"],
      ["Calls / errors", stats ? `${format.count(stats.calls)} / ${format.count(stats.errors)}` : "—"],
      ["API key", p.api_key_configured ? "configured" : "not configured"],
      ["Key sent only to", p.key_origins ? p.key_origins.flatMap((origin, i) => [i ? ", " : null, urlCode(origin)]) : "—"],
      ["Credit balance", credit],
      ["Monthly budget", h("div", { dataset: { providerBudget: p.name } }, providerSpend(budget))],
    ]),
    // A stored base URL the key may not follow (stored before keys were bound to origins).
    p.base_url_refused ? h("p", { class: "notice warn-notice", role: "status" }, `Base URL override not applied: ${p.base_url_refused}`) : null,
    message,
  );
  if (!ctx.isAdmin) return section;

  const act = async (button, changes, done) => {
    button.disabled = true;
    try {
      await put(path, changes);
      await reload();
    } catch (error) {
      failed(message, error);
      button.disabled = false;
      return;
    }
    // The reload replaced this card: say it in the new one.
    const fresh = document.querySelector(`.provider-card[data-provider="${CSS.escape(p.name)}"] [aria-live]`);
    if (fresh) flash(fresh, "ok", done);
  };

  const actions = h("div", { class: "actions" });
  if (p.running) {
    const toggle = h("button", { type: "button", class: p.enabled ? "btn danger" : "btn primary" }, p.enabled ? "Disable" : "Enable");
    toggle.addEventListener("click", () =>
      act(toggle, { enabled: !p.enabled }, p.enabled ? `${p.name} disabled: no request is routed to it.` : `${p.name} enabled.`),
    );
    actions.append(toggle, testButton(p, path));
  } else {
    actions.append(h("p", { class: "hint" }, "Disabled in the config file: enable it there (with its API key) and restart."));
  }
  section.append(actions, settingsForm(p, act), creditForm(p, act), budgetForm(p, budget, reload));
  return section;
}

/** [budget-ui] The operator's monthly bill for this provider against its budget, if it has one. */
function providerSpend(budget) {
  const spend = budget.spend || {};
  return h(
    "div",
    { class: "budget-cell" },
    budget.month_usd == null ? h("span", { class: "hint" }, "No budget") : null,
    periodSpend({ period: "month", spent: spend.month_usd, limit: budget.month_usd, warnPercent: budget.warn_percent, unpriced: spend.month_unpriced_calls, resetsAtMs: spend.month_resets_at_ms }),
  );
}

/** [budget-ui] The provider's monthly budget, beside its credit (PUT /api/budgets/providers/…). */
function budgetForm(p, budget, reload) {
  const message = h("div", { "aria-live": "polite" });
  const [fields, read] = budgetFields({ month: "month_usd", warn: "warn_percent" }, { month: budget.month_usd, warn: budget.warn_percent, withDay: false });
  const submit = h("button", { type: "submit", class: "btn primary" }, "Save budget");
  const form = h(
    "form",
    { class: "budget-form", novalidate: true },
    message,
    h("p", { class: "hint" }, "Past it, calls routed to this provider are refused until the month ends (UTC)."),
    fields,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      await put(`/api/budgets/providers/${encodeURIComponent(p.name)}`, read());
      refreshBudgetAlerts();
      await reload();
    } catch (error) {
      failed(message, error);
      submit.disabled = false;
      return;
    }
    const fresh = document.querySelector(`.provider-card[data-provider="${CSS.escape(p.name)}"] [aria-live]`);
    if (fresh) flash(fresh, "ok", "Budget saved.");
  });
  return h("details", { class: "disclosure" }, h("summary", {}, "Monthly budget"), form);
}

function testButton(p, path) {
  const result = h("div", { class: "test-result", "aria-live": "polite", hidden: true });
  const button = h("button", { type: "button", class: "btn" }, "Test");
  // Without a default model the API needs one named: ask for it next to the button.
  const model = p.default_model
    ? null
    : h("input", { name: "test-model", class: "test-model", placeholder: "model to test", "aria-label": `Model to test ${p.name} with`, autocomplete: "off" });
  button.addEventListener("click", async () => {
    button.disabled = true;
    result.hidden = false;
    result.className = "test-result";
    replace(result, `Testing ${p.name}…`);
    try {
      const r = await post(`${path}/test`, model && model.value.trim() ? { model: model.value.trim() } : {});
      result.className = `test-result ${r.ok ? "ok" : "error"}`;
      if (r.ok) {
        replace(
          result,
          h("strong", {}, `OK (${r.model})`),
          ` · latency ${format.ms(r.latency_ms)} · first token ${format.ms(r.first_token_ms)}`,
          h("blockquote", { class: "test-reply" }, r.text || "(empty reply)"),
        );
      } else {
        replace(result, h("strong", {}, `Failed${r.status ? ` (HTTP ${r.status})` : ""}`), `: ${r.error || "no detail"}`, r.code ? h("code", {}, ` ${r.code}`) : null);
      }
    } catch (error) {
      if (error.redirected) return;
      result.className = "test-result error";
      replace(result, h("strong", {}, "Failed"), `: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  });
  return h("span", { class: "test" }, model, button, result);
}

function settingsForm(p, act) {
  const o = p.overrides || {};
  const baseUrl = h("input", { name: "base_url", type: "url", value: o.base_url || null, placeholder: p.base_url, autocomplete: "off" });
  const concurrency = numberInput("max_concurrency", o.max_concurrency, { placeholder: String(p.max_concurrency) });
  const submit = h("button", { type: "submit", class: "btn primary" }, "Save connection");
  const form = h(
    "form",
    { class: "settings-form", novalidate: true },
    field(
      "Base URL",
      baseUrl,
      p.key_origins
        ? `Empty: as in the config file. The API key goes only to ${p.key_origins.join(", ")} (more: allowed_base_urls in the config file).`
        : "Empty: as in the config file.",
    ),
    field("Max concurrency", concurrency, "Empty: as in the config file."),
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const url = baseUrl.value.trim();
    act(submit, { base_url: url === "" ? null : url, max_concurrency: numberOrNull(concurrency) }, "Connection settings saved.");
  });
  return h("details", { class: "disclosure" }, h("summary", {}, "Connection settings"), form);
}

function creditForm(p, act) {
  const balance = numberInput("credit_balance_usd", p.credit_balance_usd, { decimal: true });
  const threshold = numberInput("low_credit_threshold_usd", p.low_credit_threshold_usd, { decimal: true });
  const submit = h("button", { type: "submit", class: "btn primary" }, "Save credit");
  const form = h(
    "form",
    { class: "credit-form", novalidate: true },
    h(
      "div",
      { class: "row" },
      field("Credit balance (USD)", balance, "Empty: not tracked."),
      field("Alert below (USD)", threshold),
    ),
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(submit, { credit_balance_usd: numberOrNull(balance), low_credit_threshold_usd: numberOrNull(threshold) }, "Credit saved.");
  });
  return h("details", { class: "disclosure" }, h("summary", {}, "Credit"), form);
}
