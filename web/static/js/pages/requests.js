// The request log: every logged call, filtered and paged, and the details of one call
// (#/requests?id=<row id>), with its failed attempts and its bodies when they were stored.

import { get, query } from "../api.js";
import { empty, failure, field, h, loading, panel, replace } from "../dom.js";
import * as fmt from "../format.js";
import { clientLabel } from "../client_label.js";
import { ENDPOINTS, dimensionOptions, filterControls, keepInHash, resolveRange, select } from "./analytics.js";
import { statusBadge } from "./overview.js";

const PAGE = 50;
const FILTER_KEYS = ["range", "from", "to", "status", "endpoint", "instance", "client", "provider", "model"];
// The client APIs a call may come through (the server refuses any other filter value).
function readState(params) {
  return {
    ...resolveRange(params),
    status: params.get("status") || "",
    endpoint: params.get("endpoint") || "",
    instance: params.get("instance") || "",
    client: params.get("client") || "",
    provider: params.get("provider") || "",
    model: params.get("model") || "",
  };
}

/** The filter part of the hash query, to come back to the same list from a call's details. */
function filterQuery(params) {
  const values = {};
  for (const key of FILTER_KEYS) values[key] = params.get(key);
  return values;
}

export async function render(root, ctx) {
  root.classList.add("data-page");
  const id = ctx.params.get("id");
  if (id) return renderDetail(root, ctx, id);
  return renderList(root, ctx);
}

// --- the list --------------------------------------------------------------------------------

// [rollup] The gateway instances that served calls in a range (from the hourly totals), busiest
// first; calls logged before instances were recorded have none and are not listed.
async function instanceKeys(from, to) {
  try {
    const { data } = await get(`/api/usage/instances${query({ from, to, limit: 500 })}`);
    return data.filter((row) => row.key !== null).map((row) => row.key);
  } catch (error) {
    if (error && error.redirected) throw error;
    return [];
  }
}

async function renderList(root, ctx) {
  let state = readState(ctx.params);
  // [rollup] The Instance filter and column only when the range saw more than one instance (or
  // a filter on one is set): a single gateway's log would repeat its one name on every row.
  let instances = await instanceKeys(state.from, state.to);
  const multiInstance = () => instances.length > 1 || Boolean(state.instance);
  const filtersEl = h("form", { class: "card filters", id: "requests-filters", "aria-label": "Filters" }, loading());
  const listEl = h("div", { id: "requests-list" });
  replace(root, h("h1", { id: "page-title" }, "Request log"), filtersEl, listEl);

  const apiFilters = () => ({
    from: state.from,
    to: state.to,
    status: state.status,
    endpoint: state.endpoint,
    instance: state.instance,
    client: state.client,
    provider: state.provider,
    model: state.model,
  });
  let hashValues = filterQuery(ctx.params);

  const buildFilters = async () => {
    const options = await dimensionOptions(state.from, state.to);
    const status = select(
      "rq-status",
      [["", "Any status"], ["ok", "OK"], ["error", "Error"], ["cancelled", "Cancelled"]],
      state.status,
    );
    const endpoint = select("rq-endpoint", [["", "Any endpoint"], ...ENDPOINTS], state.endpoint);
    const instance = multiInstance()
      ? select("rq-instance", [["", "Any instance"], ...instances.map((key) => [key, key])], state.instance)
      : null;
    const controls = filterControls("rq", state, options, {
      presets: ["1h", "24h", "7d", "30d"],
      extra: [field("Status", status), field("Endpoint", endpoint), instance ? field("Instance", instance) : null],
    });
    const apply = async () => {
      const values = {
        ...controls.read(),
        status: status.value,
        endpoint: endpoint.value,
        instance: instance ? instance.value : "",
      };
      const rangeChanged =
        values.range !== state.range ||
        (values.range === "custom" && (values.from !== state.fromDate || values.to !== state.toDate));
      keepInHash("requests", values);
      hashValues = values;
      state = readState(new URLSearchParams(query(values)));
      if (rangeChanged) {
        const focused = document.activeElement && document.activeElement.id;
        instances = await instanceKeys(state.from, state.to);
        await panel(filtersEl, buildFilters);
        if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
      }
      await loadList();
    };
    for (const input of [...controls.inputs, status, endpoint, ...(instance ? [instance] : [])]) {
      input.addEventListener("change", apply);
    }
    filtersEl.addEventListener("submit", (event) => event.preventDefault());
    return h("div", { class: "row" }, controls.fields);
  };

  const loadList = () =>
    panel(listEl, async () => {
      const first = await get(`/api/usage/requests${query({ ...apiFilters(), limit: PAGE })}`);
      if (!first.data.length) return empty("No calls match these filters in this range.");
      const link = (row) => `#/requests${query({ ...hashValues, id: row.id })}`;
      const withInstance = multiInstance();
      const columns = LIST_COLUMNS.filter(([label]) => withInstance || label !== "Instance");
      const body = h("tbody", { id: "requests-rows" }, first.data.map((row) => logRow(row, link, ctx, withInstance)));
      const more = h("div", { class: "more" });
      const moreButton = (cursor) => {
        const button = h("button", { type: "button", class: "btn", id: "rq-more" }, "Load more");
        button.addEventListener("click", async () => {
          button.disabled = true;
          replace(button, "Loading…");
          try {
            const page = await get(`/api/usage/requests${query({ ...apiFilters(), limit: PAGE, cursor })}`);
            body.append(...page.data.map((row) => logRow(row, link, ctx, withInstance)));
            replace(more, page.next_cursor ? moreButton(page.next_cursor) : h("p", { class: "hint" }, "That is all."));
          } catch (error) {
            if (error && error.redirected) return;
            replace(more, failure(error), moreButton(cursor));
          }
        });
        return button;
      };
      replace(more, first.next_cursor ? moreButton(first.next_cursor) : null);
      return h(
        "div",
        { class: "card" },
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { id: "requests-table", class: "log-table" },
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                columns.map(([label, cls]) => h("th", { scope: "col", class: cls }, label)),
              ),
            ),
            body,
          ),
        ),
        more,
      );
    });

  await Promise.all([panel(filtersEl, buildFilters), loadList()]);
}

const LIST_COLUMNS = [
  ["Time"],
  ["Client"],
  ["Model → upstream"],
  ["Provider"],
  ["Endpoint"],
  ["Instance"],
  ["Status"],
  ["Tokens in / out", "num"],
  ["Cost", "num"],
  ["Latency", "num"],
  ["TTFT", "num"],
];

function td(label, content, cls) {
  return h("td", { "data-label": label, class: cls }, content);
}

function modelCell(row) {
  const upstream = row.upstream_model && row.upstream_model !== row.model ? row.upstream_model : null;
  return h("span", { class: "mono" }, row.model, upstream ? h("span", { class: "hint" }, ` → ${upstream}`) : null);
}

function statusCell(row) {
  return [statusBadge(row.status, row.http_status), " ", h("small", { class: "hint" }, String(row.http_status))];
}

/** A row of the log. The time is a link to the details (keyboard); the whole row is clickable. */
function logRow(row, link, ctx, withInstance = false) {
  const href = link(row);
  const tr = h(
    "tr",
    { class: "clickable", "data-id": row.id, "data-request-id": row.request_id },
    td("Time", h("a", { href, title: fmt.dateTime(row.ts_ms) }, shortTime(row.ts_ms))),
    td("Client", clientLabel(row.client_id, row.client_name)),
    td("Model → upstream", modelCell(row)),
    td("Provider", row.provider || "—"),
    td("Endpoint", h("span", { class: "mono" }, row.endpoint)),
    withInstance ? td("Instance", instanceCell(row.instance)) : null,
    td("Status", statusCell(row)),
    td("Tokens in / out", `${fmt.tokens(row.prompt_tokens)} / ${fmt.tokens(row.completion_tokens)}`, "num"),
    td("Cost", fmt.callCost(row), "num"),
    td("Latency", fmt.ms(row.latency_ms), "num"),
    td("TTFT", fmt.ms(row.ttft_ms), "num"),
  );
  tr.addEventListener("click", (event) => {
    // The link handles itself; a click elsewhere in the row (not a text selection) opens it too.
    if (event.target.closest("a") || String(window.getSelection())) return;
    ctx.navigate(href.slice(2));
  });
  return tr;
}

// [rollup] A call's instance; calls logged before instances were recorded have none.
function instanceCell(instance) {
  return instance ? h("span", { class: "mono" }, instance) : h("span", { class: "hint" }, "unknown");
}

function shortTime(msSinceEpoch) {
  const d = new Date(msSinceEpoch);
  const today = new Date().toDateString() === d.toDateString();
  return today
    ? d.toLocaleTimeString()
    : d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// --- one call --------------------------------------------------------------------------------

async function renderDetail(root, ctx, id) {
  const back = `#/requests${query(filterQuery(ctx.params))}`;
  const body = h("div", { id: "request-detail" });
  replace(
    root,
    h(
      "div",
      { class: "page-head" },
      h("h1", { id: "page-title" }, "Call details"),
      h("a", { href: back, class: "btn", id: "rq-back" }, "← Back to the log"),
    ),
    body,
  );
  await panel(body, async () => {
    if (!/^\d+$/.test(id)) return empty("That is not a call id.");
    const call = await get(`/api/usage/requests/${id}`);
    return h(
      "div",
      { class: "page" },
      h(
        "section",
        { class: "card", "aria-labelledby": "detail-fields" },
        h("h2", { id: "detail-fields" }, h("span", { class: "mono" }, call.request_id), " ", statusBadge(call.status, call.http_status)),
        facts(call),
      ),
      attempts(call.failed_attempts),
      bodyCard("request-body", "Request body", call.request_body),
      bodyCard("response-body", "Response body", call.response_body),
    );
  });
}

function yesNo(value) {
  return value ? "yes" : "no";
}

function facts(call) {
  const rows = [
    ["Time", `${fmt.dateTime(call.ts_ms)} (${fmt.ago(call.ts_ms)})`],
    ["Request id", h("span", { class: "mono" }, call.request_id)],
    ["Log row", String(call.id)],
    ["Client", call.client_name ? [clientLabel(call.client_id, call.client_name), " ", h("code", { class: "client-id" }, call.client_id)] : clientLabel(call.client_id, null)],
    ["Model", h("span", { class: "mono" }, call.model)],
    ["Upstream model", call.upstream_model ? h("span", { class: "mono" }, call.upstream_model) : "—"],
    ["Provider", call.provider || "—"],
    ["Endpoint", h("span", { class: "mono" }, call.endpoint)],
    ["Instance", instanceCell(call.instance)],
    ["Stream", yesNo(call.stream)],
    ["Status", [statusBadge(call.status, call.http_status), ` HTTP ${call.http_status}`]],
    ["Error type", call.error_type || "—"],
    ["Error", call.error_message || "—"],
    ["Prompt tokens", fmt.tokens(call.prompt_tokens)],
    ["Completion tokens", fmt.tokens(call.completion_tokens)],
    ["Reasoning tokens", fmt.tokens(call.reasoning_tokens)],
    ["Cached tokens", fmt.tokens(call.cached_tokens)],
    ["Total tokens", fmt.tokens(call.total_tokens)],
    ["Cost", fmt.callCost(call)],
    ["Images", yesNo(call.has_images)],
    ["Latency", fmt.ms(call.latency_ms)],
    ["Time to first token", fmt.ms(call.ttft_ms)],
    ["Gateway overhead", fmt.ms(call.overhead_ms)],
    ["Attempts", String(call.attempts)],
  ];
  return h(
    "dl",
    { class: "detail-list" },
    rows.map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]),
  );
}

function attempts(list) {
  const content =
    list && list.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { id: "failed-attempts" },
            h("thead", {}, h("tr", {}, ["Provider", "Model", "Status", "Error"].map((l) => h("th", { scope: "col" }, l)))),
            h(
              "tbody",
              {},
              list.map((a) =>
                h(
                  "tr",
                  {},
                  td("Provider", a.provider ?? "—"),
                  td("Model", a.model ?? "—", "mono"),
                  td("Status", a.status === undefined || a.status === null ? "—" : String(a.status)),
                  td("Error", typeof a.error === "string" ? a.error : JSON.stringify(a.error ?? null)),
                ),
              ),
            ),
          ),
        )
      : empty("None.");
  return h("section", { class: "card", "aria-labelledby": "attempts-title" }, h("h2", { id: "attempts-title" }, "Failed attempts"), content);
}

/** A stored body as text; JSON is indented for reading. */
function bodyCard(id, title, text) {
  let content;
  if (text === null || text === undefined) {
    content = empty("Not stored (bodies are kept only when the gateway is set to store them).");
  } else {
    let shown = text;
    try {
      shown = JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      // not JSON: shown as it is
    }
    content = h("pre", { class: "body", id, tabindex: "0" }, shown);
  }
  return h("section", { class: "card", "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title` }, title), content);
}
