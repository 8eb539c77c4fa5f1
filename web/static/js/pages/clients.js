// Clients: the API callers of the gateway, their keys (shown once) and their usage.

import { del, get, post, put } from "../api.js";
import { followBudgets, refreshBudgetAlerts } from "../budget_banner.js";
import { DEFAULT_WARN_PERCENT, budgetFields, clientSpend, periodSpend } from "../budgets.js";
import { empty, field, h, panel, replace, stat, table } from "../dom.js";
import * as format from "../format.js";
import { badge, confirmButton, failed, flash, keyValues, numberInput, numberOrNull, revealSecret } from "../widgets.js";

function limitText(value, fallback, unit) {
  if (value === null || value === undefined) {
    return fallback === null || fallback === undefined || fallback === 0 ? `default ${unit}` : `default (${format.count(fallback)} ${unit})`;
  }
  return value === 0 ? `unlimited ${unit}` : `${format.count(value)} ${unit}`;
}

function limits(client) {
  const rpm = client.rate_limit_per_minute;
  const tpm = client.tokens_per_minute;
  if (rpm === null && tpm === null) return `default (${format.count(client.effective_rate_limit_per_minute)} rpm)`;
  return `${limitText(rpm, client.effective_rate_limit_per_minute, "rpm")} · ${limitText(tpm, null, "tpm")}`;
}

// [budget-ui] The budget members of a client's create and change bodies.
const CLIENT_BUDGET_NAMES = { day: "budget_day_usd", month: "budget_month_usd", warn: "budget_warn_percent" };

/** [budget-ui] A client's budgets on its page: each period against its limit, the warn share. */
function budgetView(client) {
  const spend = client.spend || {};
  const warn = client.budget_warn_percent;
  const none = client.budget_day_usd == null && client.budget_month_usd == null;
  return h(
    "div",
    {},
    h("h2", {}, "Budget"),
    none ? h("p", { class: "hint" }, "No budget: its calls are not stopped for spend.") : null,
    periodSpend({ period: "day", spent: spend.day_usd, limit: client.budget_day_usd, warnPercent: warn, unpriced: spend.day_unpriced_calls, resetsAtMs: spend.day_resets_at_ms }),
    periodSpend({ period: "month", spent: spend.month_usd, limit: client.budget_month_usd, warnPercent: warn, unpriced: spend.month_unpriced_calls, resetsAtMs: spend.month_resets_at_ms }),
    none ? null : h("p", { class: "hint" }, `Warns at ${warn ?? DEFAULT_WARN_PERCENT}% of a budget; past a budget its calls get 429 until the period resets (UTC).`),
  );
}

function activeBadge(client) {
  return client.is_active ? badge("ok", "active") : badge("bad", "inactive");
}

export async function render(root, ctx) {
  const id = ctx.params.get("id");
  if (id) return renderDetail(root, ctx, id);
  return renderList(root, ctx);
}

async function renderList(root, ctx) {
  const reveal = h("div", { class: "reveal-slot" });
  const list = h("div", { class: "card" });
  replace(
    root,
    h("div", { class: "page-head" }, h("h1", { id: "page-title" }, "Clients")),
    reveal,
    list,
    ctx.isAdmin ? newClientForm(reveal, () => load()) : null,
  );
  const load = () =>
    panel(list, async () => {
      const { data } = await get("/api/clients");
      if (!data.length) {
        return empty(ctx.isAdmin ? "No clients yet: create one below." : "No clients yet.");
      }
      return table(
        [
          { label: "Name", value: (c) => h("a", { href: `#/clients?id=${encodeURIComponent(c.id)}`, class: "client-link" }, c.name) },
          { label: "ID", value: (c) => h("code", { class: "nowrap" }, c.id) },
          { label: "Status", value: activeBadge },
          { label: "Limits", value: limits, class: "nowrap" },
          { label: "Keys", value: (c) => format.count(c.key_count), class: "num" },
          { label: "Requests 24 h", value: (c) => format.count(c.usage_24h.requests), class: "num" },
          { label: "Cost 24 h", value: (c) => (c.usage_24h.requests ? format.money(c.usage_24h.cost_usd) : "—"), class: "num" },
          { label: "Budget", value: clientSpend, class: "budget" },
          { label: "Last used", value: (c) => format.ago(c.last_used_at) },
        ],
        data,
        { caption: `${data.length} client${data.length === 1 ? "" : "s"}; usage over the last 24 hours` },
      );
    });
  followBudgets(ctx, (frame) => frame.scope === "client", load);
  await load();
}

function newClientForm(reveal, reload) {
  const name = h("input", { name: "name", required: true, maxlength: 200, autocomplete: "off" });
  const description = h("input", { name: "description", maxlength: 1000, autocomplete: "off" });
  const rpm = numberInput("rate_limit_per_minute");
  const tpm = numberInput("tokens_per_minute");
  const [budgets, readBudgets] = budgetFields(CLIENT_BUDGET_NAMES);
  const message = h("div", { "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "btn primary" }, "Create client");
  const form = h(
    "form",
    { class: "card new-client", novalidate: true, "aria-labelledby": "new-client-title" },
    h("h2", { id: "new-client-title" }, "New client"),
    message,
    field("Name", name),
    field("Description", description),
    h(
      "div",
      { class: "row" },
      field("Requests per minute", rpm, "Empty: the default. 0: unlimited."),
      field("Tokens per minute", tpm, "Empty: the default. 0: unlimited."),
    ),
    budgets,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!name.value.trim()) {
      flash(message, "error", "Give the client a name.");
      name.focus();
      return;
    }
    submit.disabled = true;
    try {
      const client = await post("/api/clients", {
        name: name.value.trim(),
        description: description.value.trim(),
        rate_limit_per_minute: numberOrNull(rpm),
        tokens_per_minute: numberOrNull(tpm),
        ...readBudgets(),
      });
      form.reset();
      flash(message, "ok", `Client “${client.name}” created.`);
      replace(
        reveal,
        revealSecret({
          title: `API key for ${client.name}`,
          secret: client.token,
          onDismiss: () => replace(reveal),
        }),
      );
      reveal.scrollIntoView({ block: "nearest" });
      await reload();
    } catch (error) {
      failed(message, error);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

// -- one client -----------------------------------------------------------------------------------

async function renderDetail(root, ctx, id) {
  const base = `/api/clients/${encodeURIComponent(id)}`;
  const title = h("h1", { id: "page-title" }, "Client");
  const message = h("div", { "aria-live": "polite" });
  const reveal = h("div", { class: "reveal-slot" });
  const overview = h("div", { class: "card" });
  const keys = h("div", { class: "card" });
  const usage = h("div", { class: "card" });
  const budget = h("div", { class: "card budget-card" });
  const admin = h("div", { class: "manage-stack" });
  replace(
    root,
    h("div", { class: "page-head" }, h("a", { href: "#/clients", class: "back" }, "← All clients"), title),
    message,
    reveal,
    h("div", { class: "grid detail-grid" }, overview, usage),
    budget,
    keys,
    admin,
  );

  let client = null;
  const loadClient = () =>
    panel(overview, async () => {
      client = await get(base);
      replace(title, client.name);
      replace(budget, budgetView(client));
      if (ctx.isAdmin) replace(admin, editForm(), dangerZone());
      return h(
        "div",
        {},
        h("h2", {}, "Details"),
        keyValues([
          ["ID", h("code", { class: "client-id" }, client.id)],
          ["Status", activeBadge(client)],
          ["Description", client.description || "—"],
          ["Requests per minute", limitText(client.rate_limit_per_minute, client.effective_rate_limit_per_minute, "rpm")],
          ["Tokens per minute", limitText(client.tokens_per_minute, null, "tpm")],
          ["Created", format.dateTime(client.created_at)],
          ["Last used", format.ago(client.last_used_at)],
        ]),
        ctx.isAdmin ? activeToggle() : null,
      );
    });

  const activeToggle = () => {
    const button = h(
      "button",
      { type: "button", class: client.is_active ? "btn danger" : "btn primary" },
      client.is_active ? "Deactivate" : "Activate",
    );
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const changed = await put(base, { is_active: !client.is_active });
        flash(message, "ok", changed.is_active ? "Client activated: its keys work again." : "Client deactivated: its keys are refused.");
        await loadClient();
      } catch (error) {
        failed(message, error);
        button.disabled = false;
      }
    });
    return h("div", { class: "actions" }, button);
  };

  const editForm = () => {
    const name = h("input", { name: "name", required: true, maxlength: 200, value: client.name, autocomplete: "off" });
    const description = h("input", { name: "description", maxlength: 1000, value: client.description, autocomplete: "off" });
    const rpm = numberInput("rate_limit_per_minute", client.rate_limit_per_minute, { placeholder: "default" });
    const tpm = numberInput("tokens_per_minute", client.tokens_per_minute, { placeholder: "default" });
    const [budgets, readBudgets] = budgetFields(CLIENT_BUDGET_NAMES, {
      day: client.budget_day_usd,
      month: client.budget_month_usd,
      warn: client.budget_warn_percent,
    });
    const formMessage = h("div", { "aria-live": "polite" });
    const submit = h("button", { type: "submit", class: "btn primary" }, "Save changes");
    const form = h(
      "form",
      { class: "card edit-client", novalidate: true },
      h("h2", {}, "Edit"),
      formMessage,
      field("Name", name, "Shown for its calls everywhere; its id stays the same."),
      field("Description", description),
      h(
        "div",
        { class: "row" },
        field("Requests per minute", rpm, "Empty: the default. 0: unlimited."),
        field("Tokens per minute", tpm, "Empty: the default. 0: unlimited."),
      ),
      budgets,
      submit,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!name.value.trim()) {
        flash(formMessage, "error", "Give the client a name.");
        name.focus();
        return;
      }
      submit.disabled = true;
      try {
        await put(base, {
          name: name.value.trim(),
          description: description.value.trim(),
          rate_limit_per_minute: numberOrNull(rpm),
          tokens_per_minute: numberOrNull(tpm),
          ...readBudgets(),
        });
        refreshBudgetAlerts();
        flash(message, "ok", "Changes saved.");
        await loadClient();
      } catch (error) {
        failed(formMessage, error);
        submit.disabled = false;
      }
    });
    return form;
  };

  const dangerZone = () => {
    const typed = h("input", { name: "confirm-name", autocomplete: "off", spellcheck: "false" });
    const formMessage = h("div", { "aria-live": "polite" });
    const submit = h("button", { type: "submit", class: "btn danger", disabled: true }, "Delete client");
    typed.addEventListener("input", () => {
      submit.disabled = typed.value !== client.name;
    });
    const form = h(
      "form",
      { class: "card danger-zone", novalidate: true },
      h("h2", {}, "Delete this client"),
      h("p", {}, "Its keys stop working at once. Its past requests stay in the log."),
      formMessage,
      field(`Type the client's name (${client.name}) to confirm`, typed),
      submit,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (typed.value !== client.name) return;
      submit.disabled = true;
      try {
        await del(base);
        ctx.navigate("clients");
      } catch (error) {
        failed(formMessage, error);
        submit.disabled = false;
      }
    });
    return form;
  };

  const loadKeys = () =>
    panel(keys, async () => {
      const { data } = await get(`${base}/tokens`);
      const columns = [
        { label: "Name", value: (k) => k.name || "—" },
        { label: "Key", value: (k) => h("code", { class: "nowrap" }, k.masked) },
        { label: "Created", value: (k) => format.dateTime(k.created_at) },
        { label: "Last used", value: (k) => format.ago(k.last_used_at) },
        { label: "Status", value: (k) => (k.revoked ? badge("bad", `revoked ${format.ago(k.revoked_at)}`) : badge("ok", "active")) },
      ];
      if (ctx.isAdmin) {
        columns.push({
          label: "Actions",
          value: (k) =>
            k.revoked
              ? ""
              : confirmButton("Revoke", {
                  question: `Revoke ${k.masked}?`,
                  yes: "Yes, revoke",
                  run: async () => {
                    try {
                      await del(`${base}/tokens/${encodeURIComponent(k.id)}`);
                      flash(message, "ok", `Key ${k.masked} revoked.`);
                      await Promise.all([loadKeys(), loadClient()]);
                    } catch (error) {
                      failed(message, error);
                    }
                  },
                }),
        });
      }
      return h(
        "div",
        {},
        h("h2", {}, "Keys"),
        data.length ? table(columns, data) : empty("This client has no keys."),
        ctx.isAdmin ? addKeyForm() : null,
      );
    });

  const addKeyForm = () => {
    const name = h("input", { name: "key-name", maxlength: 200, autocomplete: "off" });
    const submit = h("button", { type: "submit", class: "btn primary" }, "Add key");
    const form = h("form", { class: "row add-key", novalidate: true }, field("New key's label (optional)", name), submit);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      submit.disabled = true;
      try {
        const key = await post(`${base}/tokens`, { name: name.value.trim() });
        flash(message, "ok", `Key ${key.masked} added.`);
        replace(
          reveal,
          revealSecret({ title: `New API key for ${client ? client.name : id}`, secret: key.token, onDismiss: () => replace(reveal) }),
        );
        reveal.scrollIntoView({ block: "nearest" });
        await Promise.all([loadKeys(), loadClient()]);
      } catch (error) {
        failed(message, error);
        submit.disabled = false;
      }
    });
    return form;
  };

  const loadUsage = () =>
    panel(usage, async () => {
      const u = await get(`${base}/usage`);
      return h(
        "div",
        {},
        h("h2", {}, "Usage, last 24 hours"),
        h(
          "div",
          { class: "stats" },
          stat("Requests", format.count(u.requests), u.errors ? `${format.count(u.errors)} errors` : null),
          stat("Tokens", format.tokens(u.total_tokens), `${format.tokens(u.prompt_tokens)} in · ${format.tokens(u.completion_tokens)} out`),
          stat("Cost", u.requests ? format.money(u.cost_usd) : "—"),
          stat("Avg latency", format.ms(u.avg_latency_ms), u.p95_latency_ms ? `p95 ${format.ms(u.p95_latency_ms)}` : null),
        ),
        u.models && u.models.length
          ? table(
              [
                { label: "Model", value: (m) => m.key || "—" },
                { label: "Requests", value: (m) => format.count(m.requests), class: "num" },
                { label: "Tokens", value: (m) => format.tokens(m.tokens), class: "num" },
                { label: "Cost", value: (m) => format.money(m.cost_usd), class: "num" },
              ],
              u.models,
              { caption: "By model" },
            )
          : empty("No requests in the last 24 hours."),
      );
    });

  // Only the budget card: reloading the details would also redraw an edit form being filled in.
  followBudgets(
    ctx,
    (frame) => frame.scope === "client" && frame.id === id,
    () =>
      get(base)
        .then((fresh) => replace(budget, budgetView(fresh)))
        .catch(() => {}), // the next frame or a reload tries again
  );
  await Promise.all([loadClient(), loadKeys(), loadUsage()]);
}
