// Analytics: usage over a date range, filtered by client / provider / model, as charts and top
// lists, with the range's calls exported as CSV or JSON. The filters live in the hash query.

import { get, query } from "../api.js";
import { makeChart } from "../chart.js";
import { empty, failure, field, h, loading, panel, replace, stat, table } from "../dom.js";
import * as fmt from "../format.js";
import { clientLabel, clientText } from "../client_label.js";

const HOUR = 3600000;
const DAY = 24 * HOUR;
export const PRESETS = {
  "1h": { label: "Last hour", ms: HOUR },
  "24h": { label: "Last 24 hours", ms: DAY },
  "7d": { label: "Last 7 days", ms: 7 * DAY },
  "30d": { label: "Last 30 days", ms: 30 * DAY },
};
const MAX_GROUPS = 8;
/** The client APIs a call can come through, as the log names them (and as people do). */
export const ENDPOINTS = [
  ["chat", "Chat completions"],
  ["responses", "Responses"],
  ["messages", "Messages"],
  ["embeddings", "Embeddings"],
];

/** "2026-11-27" for a date input, in local time. */
function dateValue(msSinceEpoch) {
  const d = new Date(msSinceEpoch);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** Local midnight of a date input's value; null when it is not a date. */
function parseDate(text) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text || "");
  if (!match) return null;
  return new Date(Number(match[1]), Number(match[2]) - 1, Number(match[3])).getTime();
}

/**
 * The range chosen in `params`: {range, from, to (ms), fromDate, toDate}. A custom range runs from
 * the start of its first day to the end of its last (local time).
 */
export function resolveRange(params, fallback = "24h") {
  const now = Date.now();
  let range = params.get("range") || fallback;
  if (range === "custom") {
    const from = parseDate(params.get("from"));
    const toDay = parseDate(params.get("to"));
    if (from !== null && toDay !== null && toDay >= from) {
      const to = Math.min(toDay + DAY, now);
      if (to > from) return { range, from, to, fromDate: params.get("from"), toDate: params.get("to") };
    }
    range = fallback;
  }
  const preset = PRESETS[range] || PRESETS[fallback];
  if (!PRESETS[range]) range = fallback;
  return { range, from: now - preset.ms, to: now, fromDate: dateValue(now - preset.ms), toDate: dateValue(now) };
}

/** A select; options = [[value, label]]; the current value is kept even if not listed. */
export function select(id, options, value) {
  const values = new Set(options.map(([v]) => v));
  const all = value && !values.has(value) ? [...options, [value, value]] : options;
  return h(
    "select",
    { id, name: id },
    all.map(([v, label]) => h("option", { value: v, selected: v === (value || "") }, label)),
  );
}

/** Option lists of the clients, providers and models seen in a range (unfiltered). */
export async function dimensionOptions(from, to) {
  const keys = async (name) => {
    try {
      const { data } = await get(`/api/usage/${name}${query({ from, to, limit: 500 })}`);
      // A call without a client or provider has key null: it cannot be chosen as a filter.
      // Clients are listed by name (their id when they have none); the value stays the id.
      return data.filter((row) => row.key !== null).map((row) => [row.key, row.name ? clientText(row.key, row.name) : row.key]);
    } catch (error) {
      if (error && error.redirected) throw error;
      return []; // the filter still works with the current value only
    }
  };
  const [clients, providers, models] = await Promise.all([keys("clients"), keys("providers"), keys("models")]);
  return { clients, providers, models };
}

/** Write the filters into the hash without re-rendering the page (replaceState fires no hashchange). */
export function keepInHash(path, values) {
  const q = query(values);
  history.replaceState(null, "", `#/${path}${q}`);
}

/** The range and dimension filter controls shared with the request log. */
export function filterControls(prefix, state, options, { presets = ["24h", "7d", "30d"], extra = [] } = {}) {
  const range = select(
    `${prefix}-range`,
    [...presets.map((key) => [key, PRESETS[key].label]), ["custom", "Custom dates"]],
    state.range,
  );
  const from = h("input", { type: "date", id: `${prefix}-from`, value: state.fromDate, max: dateValue(Date.now()) });
  const to = h("input", { type: "date", id: `${prefix}-to`, value: state.toDate, max: dateValue(Date.now()) });
  const fromField = field("From", from);
  const toField = field("To", to);
  const showDates = () => {
    fromField.hidden = range.value !== "custom";
    toField.hidden = range.value !== "custom";
  };
  showDates();
  range.addEventListener("change", showDates);
  const any = (label) => [["", label]];
  const client = select(`${prefix}-client`, [...any("All clients"), ...options.clients], state.client);
  const provider = select(`${prefix}-provider`, [...any("All providers"), ...options.providers], state.provider);
  const model = select(`${prefix}-model`, [...any("All models"), ...options.models], state.model);
  const fields = [
    field("Range", range),
    fromField,
    toField,
    field("Client", client),
    field("Provider", provider),
    field("Model", model),
    ...extra,
  ];
  const read = () => ({
    range: range.value,
    from: range.value === "custom" ? from.value : null,
    to: range.value === "custom" ? to.value : null,
    client: client.value,
    provider: provider.value,
    model: model.value,
  });
  return { fields, read, inputs: [range, from, to, client, provider, model] };
}

/** The time bucket starts covering [from, to): hours, or UTC midnights (as the API buckets days). */
function bucketStarts(from, to, bucket) {
  const step = bucket === "day" ? DAY : HOUR;
  const starts = [];
  for (let t = Math.floor(from / step) * step; t < to; t += step) starts.push(t);
  return starts;
}

function bucketLabel(t, bucket) {
  if (bucket === "day") {
    return new Date(t).toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
  }
  return new Date(t).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** Chart datasets from timeseries points: one per group (the biggest few, the rest as "other"). */
function series(points, starts, grouped, metric, names = {}) {
  const index = new Map(starts.map((t, i) => [t, i]));
  const groups = new Map();
  const totals = new Map();
  for (const p of points) {
    const key = grouped ? p.group ?? "(none)" : "All";
    totals.set(key, (totals.get(key) || 0) + (p.requests || 0));
  }
  const top = [...totals.entries()].sort((a, b) => b[1] - a[1]).map(([key]) => key);
  const kept = new Set(top.slice(0, top.length > MAX_GROUPS ? MAX_GROUPS - 1 : MAX_GROUPS));
  for (const p of points) {
    let key = grouped ? p.group ?? "(none)" : "All";
    if (!kept.has(key)) key = "other";
    if (!groups.has(key)) groups.set(key, new Array(starts.length).fill(0));
    const i = index.get(p.t_ms);
    if (i !== undefined) groups.get(key)[i] += p[metric] || 0;
  }
  const order = [...top.filter((k) => kept.has(k)), ...(groups.has("other") ? ["other"] : [])];
  // Grouped by client, a group is named by its client's name (the series carries them).
  return order.filter((k) => groups.has(k)).map((key) => ({ label: grouped ? names[key] || key : metricLabel[metric], data: groups.get(key) }));
}

const metricLabel = { requests: "Requests", tokens: "Tokens", cost_usd: "Cost" };

function readState(params) {
  const range = resolveRange(params);
  return {
    ...range,
    client: params.get("client") || "",
    provider: params.get("provider") || "",
    model: params.get("model") || "",
    endpoint: params.get("endpoint") || "",
    group: params.get("group") || "",
  };
}

export async function render(root, ctx) {
  root.classList.add("data-page");
  const charts = [];
  const destroyCharts = () => charts.splice(0).forEach((c) => c.destroy());
  ctx.onLeave(destroyCharts);

  let state = readState(ctx.params);
  const filtersEl = h("form", { class: "card filters", id: "analytics-filters", "aria-label": "Filters" }, loading());
  const content = h("div", { class: "analytics-content", id: "analytics-content" });
  const exports = h("div", { class: "exports", id: "analytics-export" });
  replace(
    root,
    h("div", { class: "page-head" }, h("h1", { id: "page-title" }, "Analytics"), exports),
    filtersEl,
    content,
  );

  const apiFilters = () => ({
    from: state.from,
    to: state.to,
    client: state.client,
    provider: state.provider,
    model: state.model,
    endpoint: state.endpoint,
  });

  const updateExports = () => {
    const link = (format, label) =>
      h(
        "a",
        {
          class: "btn",
          id: `export-${format}`,
          href: `/api/usage/export${query({ format, ...apiFilters() })}`,
          download: "",
        },
        label,
      );
    replace(exports, h("span", { class: "hint" }, "Export calls:"), link("csv", "CSV"), link("json", "JSON"));
  };

  const buildFilters = async () => {
    const options = await dimensionOptions(state.from, state.to);
    const group = select(
      "an-group",
      [
        ["", "Not grouped"],
        ["provider", "Provider"],
        ["model", "Model"],
        ["client", "Client"],
        ["endpoint", "Endpoint"],
        ["instance", "Instance"],
      ],
      state.group,
    );
    const endpoint = select("an-endpoint", [["", "Any endpoint"], ...ENDPOINTS], state.endpoint);
    const controls = filterControls("an", state, options, {
      extra: [field("Endpoint", endpoint), field("Group by", group)],
    });
    const apply = async () => {
      const values = { ...controls.read(), endpoint: endpoint.value, group: group.value };
      keepInHash("analytics", values);
      const rangeChanged =
        values.range !== state.range ||
        (values.range === "custom" && (values.from !== state.fromDate || values.to !== state.toDate));
      state = readState(new URLSearchParams(query(values)));
      updateExports();
      if (rangeChanged) {
        // Another range may have other clients, providers and models to offer; focus stays put.
        const focused = document.activeElement && document.activeElement.id;
        await panel(filtersEl, buildFilters);
        if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
      }
      await loadContent();
    };
    for (const input of [...controls.inputs, endpoint, group]) input.addEventListener("change", apply);
    filtersEl.addEventListener("submit", (event) => event.preventDefault());
    return h("div", { class: "row" }, controls.fields);
  };

  const loadContent = async () => {
    destroyCharts();
    await panel(content, async () => {
      const f = apiFilters();
      const bucket = state.to - state.from <= 48 * HOUR ? "hour" : "day";
      const [summary, ts, clients, models] = await Promise.all([
        get(`/api/usage/summary${query(f)}`),
        get(`/api/usage/timeseries${query({ ...f, bucket, group_by: state.group })}`),
        get(`/api/usage/clients${query({ ...f, limit: 10 })}`),
        get(`/api/usage/models${query({ ...f, limit: 10 })}`),
      ]);
      if (!summary.requests) {
        return h(
          "div",
          { class: "card" },
          empty("No calls in this range. Choose a longer range or clear the filters."),
        );
      }
      const starts = bucketStarts(state.from, state.to, bucket);
      const labels = starts.map((t) => bucketLabel(t, bucket));
      const grouped = Boolean(state.group);
      const chartCard = (id, title, type, metric, format, axis = {}) => {
        const canvas = h("canvas", { id: `chart-${id}`, role: "img", "aria-label": `${title} per ${bucket}` });
        const card = h(
          "section",
          { class: "card chart-card", "aria-labelledby": `chart-${id}-title` },
          h("h2", { id: `chart-${id}-title` }, title, h("small", { class: "hint" }, ` per ${bucket}`)),
          h("div", { class: "chart-box" }, canvas),
        );
        return { card, canvas, config: { type, labels, datasets: series(ts.data, starts, grouped, metric, ts.names), format, ...axis, stacked: grouped && type === "bar" } };
      };
      const specs = [
        chartCard("requests", "Requests", "bar", "requests", (v) => fmt.count(v), { integers: true }),
        chartCard("tokens", "Tokens", "line", "tokens", (v) => fmt.tokens(v), { integers: true }),
        chartCard("cost", "Cost", "line", "cost_usd", (v) => fmt.usd(v), { tickFormat: fmt.usdTick }),
      ];
      const view = h(
        "div",
        { class: "page" },
        h(
          "div",
          { class: "stats", id: "analytics-stats" },
          stat("Requests", fmt.count(summary.requests), `${fmt.count(summary.errors)} failed`),
          stat("Error rate", fmt.percent(summary.errors / summary.requests)),
          stat("Tokens", fmt.tokens(summary.total_tokens), `${fmt.tokens(summary.prompt_tokens)} in · ${fmt.tokens(summary.completion_tokens)} out`),
          stat("Cost", fmt.money(summary.cost_usd)),
          stat("p95 latency", fmt.ms(summary.p95_latency_ms), latencyNote(summary)),
        ),
        h("div", { class: "chart-grid" }, specs.map((s) => s.card)),
        h(
          "div",
          { class: "grid two" },
          topTable("top-clients", "Top clients", "Client", clients.data, "anonymous", (r) => clientLabel(r.key, r.name)),
          topTable("top-models", "Top models", "Model", models.data, "—"),
        ),
      );
      // The canvases must be in the page before Chart.js measures them: draw after panel() has
      // put the view in (a task later, after its microtasks).
      setTimeout(async () => {
        for (const s of specs) {
          if (!s.canvas.isConnected) return;
          try {
            charts.push(await makeChart(s.canvas, s.config));
          } catch (error) {
            s.canvas.parentElement.replaceWith(failure(error));
          }
        }
      }, 0);
      return view;
    });
  };

  updateExports();
  await Promise.all([panel(filtersEl, buildFilters), loadContent()]);
}

function topTable(id, title, keyLabel, rows, noKey, label = null) {
  const keyCell = (r) => (r.key === null ? h("span", { class: "hint" }, noKey) : h("span", { class: "mono" }, r.key));
  const columns = [
    { label: keyLabel, value: label || keyCell },
    { label: "Requests", value: (r) => fmt.count(r.requests), class: "num" },
    { label: "Share", value: (r) => fmt.percent(r.share), class: "num" },
    { label: "Tokens", value: (r) => fmt.tokens(r.tokens), class: "num" },
    { label: "Cost", value: (r) => fmt.money(r.cost_usd), class: "num" },
    { label: "Errors", value: (r) => fmt.count(r.errors), class: "num" },
    { label: "p95", value: (r) => fmt.ms(r.p95_latency_ms), class: "num" },
  ];
  const body = rows.length ? table(columns, rows) : empty("No calls.");
  body.id = id;
  return h("section", { class: "card", "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title` }, title), body);
}

// [percentiles] Under the p95: the median, and whether both are exact (every call of the range,
// read from the log) or estimated from the rollup's histogram (then how many calls it holds).
function latencyNote(summary) {
  if (summary.p95_latency_ms === null || summary.p95_latency_ms === undefined) return null;
  const basis = summary.p95_latency_exact ? "exact" : `estimated from ${fmt.count(summary.p95_latency_calls)} calls`;
  return `p50 ${fmt.ms(summary.p50_latency_ms)} · ${basis}`;
}
