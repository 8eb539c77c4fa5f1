// [budget-ui] Budgets as the dashboard shows them: a period's spend against its limit (text, a
// bar and a state word, so colour is never the only sign), the reset moment in UTC, an alert's
// sentence, and the three budget inputs the client, provider and global forms share.

import { field, h } from "./dom.js";
import * as format from "./format.js";
import { numberInput, numberOrNull } from "./widgets.js";

const PERIOD_WORD = { day: "daily", month: "monthly" };
const PERIOD_SPAN = { day: "today", month: "this month" };
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
export const DEFAULT_WARN_PERCENT = 80;

/** Where spend stands against a limit: "ok", "warning" (past the warn share) or "exceeded". */
export function budgetState(spent, limit, warnPercent) {
  if (limit === null || limit === undefined) return "ok";
  if ((spent || 0) >= limit) return "exceeded";
  const warn = warnPercent ?? DEFAULT_WARN_PERCENT;
  return (spent || 0) * 100 >= limit * warn ? "warning" : "ok";
}

/**
 * The share of a limit spent, in whole percent, rounded as the gateway's log line and the API's
 * alerts round it (68.97% is "69%" everywhere: the live banner, the reloaded one, the bars); a
 * budget not yet spent never reads "100%".
 */
export function spentPercent(spent, limit) {
  const used = spent || 0;
  if (!limit) return used > 0 || limit === 0 ? 100 : 0;
  const percent = Math.round((used / limit) * 100);
  return used < limit ? Math.min(99, percent) : Math.max(100, percent);
}

/** A budget's reset moment in UTC: "00:00 UTC" for a day, "00:00 UTC on 1 Feb" for a month. */
export function resetText(resetsAtMs, period) {
  if (!resetsAtMs) return "at the period's end";
  const at = new Date(resetsAtMs);
  const time = `${String(at.getUTCHours()).padStart(2, "0")}:${String(at.getUTCMinutes()).padStart(2, "0")} UTC`;
  return period === "month" ? `${time} on ${at.getUTCDate()} ${MONTHS[at.getUTCMonth()]}` : time;
}

/** The reset moment for a title: UTC and the reader's local time. */
function resetTitle(resetsAtMs, period) {
  if (!resetsAtMs) return "";
  return `Resets ${resetText(resetsAtMs, period)} (${format.dateTime(resetsAtMs)} your time, ${format.ago(resetsAtMs)})`;
}

/** The small bar of one period: its fill is the share spent, its state in words beside it. */
function bar(percent, state, label) {
  const fill = h("span", { class: "spend-fill" });
  // Width from script, not an inline style attribute: the CSP forbids those.
  fill.style.width = `${Math.min(100, Math.max(0, percent))}%`;
  return h(
    "span",
    {
      class: `spend-bar ${state}`,
      role: "meter",
      "aria-valuemin": 0,
      "aria-valuemax": 100,
      "aria-valuenow": Math.min(100, percent),
      "aria-label": label,
      "aria-valuetext": `${percent}%${state === "ok" ? "" : `, ${state}`}`,
    },
    fill,
  );
}

const STATE_WORD = { warning: "warning", exceeded: "exceeded" };

/**
 * One period's line: "$1.20 of $5.00 today" with its bar, percent and state word; the reset on
 * hover; "+ 3 unpriced calls" when any call of the period had no price. Without a limit: the
 * spend alone ("$1.20 today").
 */
export function periodSpend({ period, spent, limit, warnPercent, unpriced, resetsAtMs }) {
  const hasLimit = limit !== null && limit !== undefined;
  const state = budgetState(spent, limit, warnPercent);
  const percent = hasLimit ? spentPercent(spent, limit) : null;
  const parts = [format.money(spent ?? 0)];
  if (hasLimit) parts.push(" of ", format.money(limit));
  parts.push(` ${PERIOD_SPAN[period]}`);
  return h(
    "div",
    { class: `period-spend ${state}`, title: hasLimit ? resetTitle(resetsAtMs, period) : null, dataset: { period } },
    h("span", { class: "spend-text" }, parts),
    hasLimit
      ? h(
          "span",
          { class: "spend-meter" },
          bar(percent, state, `${PERIOD_WORD[period]} budget used`),
          h("span", { class: "spend-percent" }, `${percent}%`),
          STATE_WORD[state] ? h("span", { class: `badge ${state === "exceeded" ? "bad" : "warn"}` }, STATE_WORD[state]) : null,
        )
      : null,
    unpriced ? h("span", { class: "spend-unpriced", title: "Calls with no known price: not counted in the spend" }, `+ ${format.count(unpriced)} unpriced call${unpriced === 1 ? "" : "s"}`) : null,
  );
}

/** A client's budget cell: each budgeted period, or its spend with "no budget". */
export function clientSpend(client) {
  const spend = client.spend || {};
  const day = client.budget_day_usd ?? null;
  const month = client.budget_month_usd ?? null;
  const warn = client.budget_warn_percent;
  const lines = [];
  if (day !== null || spend.day_unpriced_calls) {
    lines.push(periodSpend({ period: "day", spent: spend.day_usd, limit: day, warnPercent: warn, unpriced: spend.day_unpriced_calls, resetsAtMs: spend.day_resets_at_ms }));
  }
  if (month !== null || day === null) {
    lines.push(periodSpend({ period: "month", spent: spend.month_usd, limit: month, warnPercent: warn, unpriced: spend.month_unpriced_calls, resetsAtMs: spend.month_resets_at_ms }));
  }
  return h("div", { class: "budget-cell" }, day === null && month === null ? h("span", { class: "hint" }, "No budget") : null, lines);
}

/** The budget inputs of a form: [fields row, read() → the body's budget members]. */
export function budgetFields(names, { day, month, warn, withDay = true } = {}) {
  const dayInput = withDay ? numberInput(names.day, day, { decimal: true, placeholder: "no budget" }) : null;
  const monthInput = numberInput(names.month, month, { decimal: true, placeholder: "no budget" });
  const warnInput = numberInput(names.warn, warn ?? DEFAULT_WARN_PERCENT, { placeholder: String(DEFAULT_WARN_PERCENT) });
  warnInput.min = 1;
  warnInput.max = 100;
  const row = h(
    "div",
    { class: "row budget-fields" },
    withDay ? field("Daily budget (USD)", dayInput, "Empty: no daily budget.") : null,
    field("Monthly budget (USD)", monthInput, "Empty: no monthly budget."),
    field("Warn at (%)", warnInput, "Share of a budget that raises a warning."),
  );
  const read = () => {
    const values = { [names.month]: numberOrNull(monthInput), [names.warn]: numberOrNull(warnInput) ?? DEFAULT_WARN_PERCENT };
    if (withDay) values[names.day] = numberOrNull(dayInput);
    return values;
  };
  return [row, read];
}

/** The subject of an alert: "Client 'acme'", "The gateway", "Provider 'openai'". */
function subject(alert) {
  if (alert.scope === "global") return "The gateway";
  const kind = alert.scope === "provider" ? "Provider" : "Client";
  return `${kind} '${alert.name || alert.id}'`;
}

/**
 * An alert as one sentence: "Client 'acme' has used 85% of its daily budget ($4.25 of $5.00),
 * resets 00:00 UTC" or "… has reached its daily budget ($5.00 of $5.00): calls are refused until
 * 00:00 UTC".
 */
export function alertText(alert) {
  const budget = `${alert.scope === "global" ? "its global" : "its"} ${PERIOD_WORD[alert.period] || alert.period} budget`;
  const figures = `(${format.usd(alert.spent_usd)} of ${format.usd(alert.limit_usd)})`;
  const reset = resetText(alert.resets_at_ms, alert.period);
  if (alert.state === "exceeded") {
    const refused = alert.scope === "provider" ? "calls to it are refused" : "calls are refused";
    return `${subject(alert)} has reached ${budget} ${figures}: ${refused} until ${reset}`;
  }
  const percent = alert.limit_usd ? spentPercent(alert.spent_usd, alert.limit_usd) : Math.round(alert.percent);
  return `${subject(alert)} has used ${percent}% of ${budget} ${figures}, resets ${reset}`;
}
