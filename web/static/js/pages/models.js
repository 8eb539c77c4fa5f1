// Models: what the gateway serves, where each routes and what it costs; admins switch a model off
// and override its prices (per million tokens).

import { get, put } from "../api.js";
import { empty, field, h, panel, replace } from "../dom.js";
import { badge, failed, flash, numberInput, numberOrNull } from "../widgets.js";

const SOURCES = {
  dashboard: "set here",
  config: "config file",
  table: "price table",
  free: "free (local)",
};

/** A price per million tokens: more digits than usd() keeps for cents. */
function perMtok(value) {
  if (value === null || value === undefined) return "—";
  return `$${value.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 4 })}`;
}

/** "openai/gpt-4o" stays one path: each segment encoded, the slash kept (the route takes paths). */
function modelPath(id) {
  return `/api/models/${id.split("/").map(encodeURIComponent).join("/")}`;
}

function status(m) {
  if (m.enabled) return badge("ok", "enabled");
  if (!m.model_enabled) return badge("bad", "disabled");
  return badge("warn", "provider off");
}

export async function render(root, ctx) {
  const message = h("div", { "aria-live": "polite" });
  const list = h("div", { class: "card" });
  const refresh = h("button", { type: "button", class: "btn" }, "Refresh");
  replace(root, h("div", { class: "page-head" }, h("h1", { id: "page-title" }, "Models"), refresh), message, list);

  const load = () =>
    panel(list, async () => {
      const { data } = await get("/api/models");
      if (!data.length) return empty("No model is served: no provider is running or none lists its models.");
      return modelTable(data);
    });

  const save = async (button, m, changes, done) => {
    button.disabled = true;
    try {
      await put(modelPath(m.id), changes);
      flash(message, "ok", done);
      await load();
    } catch (error) {
      failed(message, error);
      button.disabled = false;
    }
  };

  const modelTable = (data) => {
    const columns = ["Model", "Provider", "Status", "Input / Mtok", "Output / Mtok", "Cached / Mtok", "Price source"];
    if (ctx.isAdmin) columns.push("Actions");
    const body = h("tbody", {});
    for (const m of data) {
      const prices = m.prices || {};
      const cells = [
        h("td", { "data-label": "Model" }, h("code", { class: "nowrap" }, m.id), m.alias ? [" ", badge("", "alias")] : null),
        h("td", { "data-label": "Provider" }, m.provider || "—", m.upstream_model && m.upstream_model !== m.id ? h("div", { class: "hint" }, `→ ${m.upstream_model}`) : null),
        h("td", { "data-label": "Status" }, status(m)),
        h("td", { class: "num", "data-label": "Input / Mtok" }, perMtok(prices.input_per_mtok)),
        h("td", { class: "num", "data-label": "Output / Mtok" }, perMtok(prices.output_per_mtok)),
        h("td", { class: "num", "data-label": "Cached / Mtok" }, perMtok(prices.cached_input_per_mtok)),
        h("td", { "data-label": "Price source" }, m.prices ? SOURCES[m.price_source] || m.price_source || "—" : "unpriced"),
      ];
      const row = h("tr", { dataset: { model: m.id } }, cells);
      body.append(row);
      if (!ctx.isAdmin) continue;
      const editRow = h("tr", { class: "edit-row", hidden: true }, h("td", { colspan: columns.length }, priceForm(m)));
      const toggle = h("button", { type: "button", class: m.model_enabled ? "btn danger" : "btn primary" }, m.model_enabled ? "Disable" : "Enable");
      toggle.addEventListener("click", () =>
        save(toggle, m, { enabled: !m.model_enabled }, m.model_enabled ? `${m.id} disabled: requests for it are refused.` : `${m.id} enabled.`),
      );
      const edit = h("button", { type: "button", class: "btn", "aria-expanded": "false" }, "Edit prices");
      edit.addEventListener("click", () => {
        editRow.hidden = !editRow.hidden;
        edit.setAttribute("aria-expanded", String(!editRow.hidden));
        if (!editRow.hidden) editRow.querySelector("input").focus();
      });
      row.append(h("td", { "data-label": "Actions" }, h("div", { class: "actions nowrap" }, toggle, edit)));
      body.append(editRow);
    }
    return h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "models-table" },
        h("caption", {}, `${data.length} model${data.length === 1 ? "" : "s"}; prices in USD per million tokens`),
        h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
        body,
      ),
    );
  };

  const priceForm = (m) => {
    const s = m.settings || {};
    const prices = m.prices || {};
    const input = numberInput("input_per_mtok", s.input_per_mtok, { decimal: true, placeholder: prices.input_per_mtok ?? "" });
    const output = numberInput("output_per_mtok", s.output_per_mtok, { decimal: true, placeholder: prices.output_per_mtok ?? "" });
    const cached = numberInput("cached_input_per_mtok", s.cached_input_per_mtok, { decimal: true, placeholder: prices.cached_input_per_mtok ?? "" });
    const submit = h("button", { type: "submit", class: "btn primary" }, "Save prices");
    const reset = h("button", { type: "button", class: "btn" }, "Back to the price table");
    const form = h(
      "form",
      { class: "price-form", novalidate: true, "aria-label": `Prices of ${m.id}` },
      h(
        "div",
        { class: "row" },
        field("Input $ / Mtok", input),
        field("Output $ / Mtok", output),
        field("Cached $ / Mtok", cached, "Cached input tokens."),
      ),
      h("p", { class: "hint" }, "Empty: the config file's or the price table's rate."),
      h("div", { class: "actions" }, submit, reset),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      save(
        submit,
        m,
        { input_per_mtok: numberOrNull(input), output_per_mtok: numberOrNull(output), cached_input_per_mtok: numberOrNull(cached) },
        `Prices of ${m.id} saved.`,
      );
    });
    reset.addEventListener("click", () =>
      save(reset, m, { input_per_mtok: null, output_per_mtok: null, cached_input_per_mtok: null }, `Prices of ${m.id} back to the default.`),
    );
    return form;
  };

  // Admins name a model after any provider's model (design §6: an alias from the dashboard).
  const aliasForm = () => {
    const name = h("input", { name: "alias", required: true, maxlength: 200, autocomplete: "off" });
    const provider = h("select", { name: "provider", required: true });
    const upstream = h("input", { name: "upstream", required: true, maxlength: 200, autocomplete: "off" });
    const submit = h("button", { type: "submit", class: "btn primary" }, "Create alias");
    const form = h(
      "form",
      { class: "card new-alias", novalidate: true },
      h("h2", {}, "New alias"),
      h("p", { class: "hint" }, "Clients call the alias; the gateway calls the provider's model."),
      h(
        "div",
        { class: "row" },
        field("Alias", name),
        field("Provider", provider),
        field("Provider's model", upstream),
      ),
      submit,
    );
    get("/api/providers")
      .then(({ data }) => replace(provider, data.map((p) => h("option", { value: p.name }, p.name))))
      .catch((error) => failed(message, error));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!name.value.trim() || !upstream.value.trim()) {
        flash(message, "error", "Give the alias a name and the provider's model.");
        return;
      }
      await save(
        submit,
        { id: name.value.trim() },
        { provider: provider.value, upstream_model: upstream.value.trim() },
        `${name.value.trim()} now routes to ${provider.value}/${upstream.value.trim()}.`,
      );
      name.value = "";
      upstream.value = "";
      submit.disabled = false;
    });
    return form;
  };

  if (ctx.isAdmin) root.append(aliasForm());
  refresh.addEventListener("click", load);
  await load();
}
