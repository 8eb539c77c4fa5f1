// Overview: today's key figures, the providers' state and the live stream of calls (WebSocket).

import { get, query } from "../api.js";
import { empty, failure, h, loading, panel, replace, stat } from "../dom.js";
import * as fmt from "../format.js";
import { clientLabel } from "../client_label.js";
import { reachBadge } from "../reach.js";

const MAX_ROWS = 50;
// Only the p95 is re-read: every other figure of the day follows the live feed.
const SUMMARY_EVERY_MS = 60000;
// How long the day's figures wait for the live feed before they are read without it.
const HELLO_WAIT_MS = 3000;
// No call for this long before a re-read and none during it: the rollup holds every call there is
// (the writer stores a call within milliseconds), so it replaces the running count.
const QUIET_MS = 5000;
const BACKOFF_MS = [1000, 2000, 5000, 10000, 30000];

function midnight() {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

export function statusBadge(status, httpStatus) {
  const kind = status === "ok" ? "ok" : status === "cancelled" ? "warn" : "bad";
  return h(
    "span",
    { class: `badge ${kind}`, "data-status": status, title: httpStatus ? `HTTP ${httpStatus}` : null },
    status,
  );
}

function breakerBadge(state) {
  if (!state) return h("span", { class: "badge", "data-breaker": "none" }, "not running");
  const kind = state === "closed" ? "ok" : state === "open" ? "bad" : "warn";
  const text = state === "half_open" ? "half-open" : state;
  return h("span", { class: `badge ${kind}`, "data-breaker": state, title: "Circuit breaker" }, `breaker ${text}`);
}

/** A stat whose value the live feed changes later: returns [element, setValue]. */
function liveStat(id, label, note) {
  const el = stat(label, "—", note);
  el.id = id;
  const value = el.querySelector(".stat-value");
  return [el, (text) => replace(value, text)];
}

export async function render(root, ctx) {
  root.classList.add("data-page");
  const cleanups = [];
  // The router keeps one cleanup per page: everything this page starts is stopped from here.
  ctx.onLeave(() => cleanups.forEach((fn) => fn()));

  const [rpmStat, setRpm] = liveStat("stat-rpm", "Requests / min", "live, last minute");
  const [flightStat, setFlight] = liveStat("stat-inflight", "In flight", "live");

  const statsEl = h("div", { id: "overview-stats", "aria-live": "off" });
  const providersEl = h("div", { id: "overview-providers" });
  const live = liveSection(ctx, cleanups);

  replace(
    root,
    h("h1", { id: "page-title" }, "Overview"),
    h("section", { class: "overview-today", "aria-labelledby": "today-title" }, h("h2", { id: "today-title" }, "Today"), statsEl),
    h("section", { "aria-labelledby": "providers-title" }, h("h2", { id: "providers-title" }, "Providers"), providersEl),
    live.element,
  );

  // The day's figures: the rollup once, then every call the live feed brings (live-tiles).
  const today = new TodayTiles();
  live.onCall = (call) => today.add(call);
  // Calls logged while the feed was away came as no frame: the rollup is read again.
  live.onReconnect = () => panel(statsEl, summaryContent);
  const summaryContent = async () => {
    // Calls logged from the moment the feed is subscribed arrive as frames: read the rollup only
    // after that, so that no call falls between the two.
    await Promise.race([live.hello, new Promise((resolve) => setTimeout(resolve, HELLO_WAIT_MS))]);
    const dayStart = midnight();
    today.begin(dayStart);
    const s = await get(`/api/usage/summary${query({ from: dayStart, to: Date.now() })}`);
    return h("div", { class: "stats" }, today.tiles(s), rpmStat, flightStat);
  };
  // The p95 cannot be added up from calls: it is re-read, quietly (a failed read keeps it); when
  // no call came meanwhile the whole rollup is taken, so a call the feed missed (another process
  // without Redis, a call during page load) is counted within a minute.
  const timer = setInterval(async () => {
    try {
      const asked = Date.now();
      today.reread(await get(`/api/usage/summary${query({ from: today.dayStart, to: asked })}`), asked);
    } catch {
      // shown again at the next tick
    }
  }, SUMMARY_EVERY_MS);
  cleanups.push(() => clearInterval(timer));
  // A new day starts from its own rollup (empty at midnight, but another instance may have begun).
  let dayTimer = null;
  const nextDay = () => {
    dayTimer = setTimeout(() => {
      panel(statsEl, summaryContent);
      nextDay();
    }, midnight() + 86400000 - Date.now() + 1000);
  };
  nextDay();
  cleanups.push(() => clearTimeout(dayTimer));

  const providers = new ProviderCards();
  live.onMetrics = (m) => {
    setRpm(fmt.count(m.requests_per_min));
    setFlight(fmt.count(m.in_flight));
    providers.metrics(m.providers || {});
  };
  live.onEvent = (event) => providers.event(event);

  await Promise.all([panel(statsEl, summaryContent), panel(providersEl, () => providers.load()), live.start()]);
}

/** Today's figures (live-tiles): the rollup read once, plus every call the live feed brings. */
class TodayTiles {
  constructor() {
    this.dayStart = midnight();
    this.counting = false;
    this.pending = [];
    this.day = null;
    this.els = null;
    this.lastCallAt = 0;
  }

  /** Count the calls of the day starting at `dayStart` from now on (until the rollup arrives, held). */
  begin(dayStart) {
    this.dayStart = dayStart;
    this.counting = true;
    this.pending = [];
    this.day = null;
  }

  /** One call from the live feed (never a request log row: those are in the rollup already). */
  add(call) {
    this.lastCallAt = Date.now();
    if (!this.counting || call.ts_ms < this.dayStart) return;
    if (this.day === null) {
      this.pending.push(call);
      return;
    }
    this.count(call);
    this.show();
  }

  count(call) {
    const d = this.day;
    d.requests += 1;
    if (call.status !== "ok") d.errors += 1;
    d.prompt += call.prompt_tokens || 0;
    d.completion += call.completion_tokens || 0;
    d.cached += call.cached_tokens || 0;
    if (call.cost_usd != null) d.cost = (d.cost || 0) + call.cost_usd;
    if (call.latency_ms != null) d.latencySum += call.latency_ms;
  }

  /** The day's tiles from the summary `s`, with the calls held meanwhile added. */
  tiles(s) {
    this.day = this.fromSummary(s);
    const tile = (id, label) => {
      const el = stat(label, "—", " ");
      el.id = id;
      return el;
    };
    this.els = {
      requests: tile("stat-requests-today", "Requests today"),
      errors: tile("stat-error-rate", "Error rate"),
      tokens: tile("stat-tokens-today", "Tokens today"),
      cost: tile("stat-cost-today", "Cost today"),
      cached: tile("stat-cached-tokens", "Cached tokens"),
      latency: tile("stat-p95-latency", "p95 latency"),
    };
    for (const call of this.pending) this.count(call);
    this.pending = [];
    this.show();
    const e = this.els;
    return [e.requests, e.errors, e.tokens, e.cost, e.cached, e.latency];
  }

  /** A re-read summary `s` asked at `asked`: all of it when no call came near it, else its p95. */
  reread(s, asked) {
    if (!this.day) return;
    if (this.lastCallAt < asked - QUIET_MS) this.day = this.fromSummary(s);
    else this.day.p95 = s.p95_latency_ms;
    this.show();
  }

  fromSummary(s) {
    return {
      requests: s.requests,
      errors: s.errors,
      prompt: s.prompt_tokens,
      completion: s.completion_tokens,
      cached: s.cached_tokens,
      cost: s.cost_usd,
      latencySum: s.avg_latency_ms == null ? 0 : s.avg_latency_ms * s.requests,
      p95: s.p95_latency_ms,
    };
  }

  show() {
    const d = this.day;
    const set = (el, value, note) => {
      replace(el.querySelector(".stat-value"), value);
      replace(el.querySelector(".stat-note"), note == null ? "" : note);
    };
    const e = this.els;
    set(e.requests, fmt.count(d.requests), "live");
    set(e.errors, d.requests ? fmt.percent(d.errors / d.requests) : "—", `${fmt.count(d.errors)} failed`);
    set(e.tokens, fmt.tokens(d.prompt + d.completion), `${fmt.tokens(d.prompt)} in · ${fmt.tokens(d.completion)} out`);
    set(e.cost, fmt.money(d.requests ? d.cost : 0));
    set(e.cached, fmt.percent(d.prompt ? d.cached / d.prompt : null), "of prompt tokens");
    set(e.latency, fmt.ms(d.p95), d.requests ? `avg ${fmt.ms(d.latencySum / d.requests)}` : null);
  }
}

/** The provider cards, kept so that the live feed can update them in place. */
class ProviderCards {
  constructor() {
    this.cards = new Map();
  }

  async load() {
    const { data } = await get("/api/providers");
    this.cards.clear();
    if (!data.length) return empty("No providers are configured.");
    // Routed providers first: they are the ones that matter today.
    const sorted = [...data].sort((a, b) => Number(b.enabled) - Number(a.enabled) || a.name.localeCompare(b.name));
    return h("div", { class: "provider-cards" }, sorted.map((p) => this.card(p)));
  }

  card(p) {
    const breaker = h("span", {}, breakerBadge(p.breaker && p.breaker.state));
    const inFlight = h("span", { class: "mono" }, fmt.count(p.statistics ? p.statistics.in_flight : 0));
    const credit = h("span", {});
    const parts = { breaker, inFlight, credit, provider: p };
    this.setCredit(parts, p.credit_balance_usd, p.low_credit);
    const el = h(
      "article",
      { class: `card provider-card${p.enabled ? "" : " disabled"}`, "data-provider": p.name },
      h(
        "header",
        {},
        h("h3", {}, p.name),
        h("span", { class: `badge ${p.enabled ? "ok" : ""}`, "data-enabled": String(p.enabled) }, p.enabled ? "enabled" : "disabled"),
      ),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Breaker"),
        h("dd", {}, breaker),
        // Only a running provider has been called or probed.
        p.statistics ? [h("dt", {}, "Reachability"), h("dd", { class: "reach-fact" }, reachBadge(p.statistics.reachability))] : null,
        h("dt", {}, "In flight"),
        h("dd", {}, inFlight),
        h("dt", {}, "Credit"),
        h("dd", {}, credit),
      ),
    );
    this.cards.set(p.name, parts);
    return el;
  }

  setCredit(parts, balance, low) {
    if (balance === null || balance === undefined) {
      replace(parts.credit, h("span", { class: "hint" }, "not tracked"));
      return;
    }
    replace(
      parts.credit,
      h("span", { class: "mono" }, fmt.money(balance)),
      low ? [" ", h("span", { class: "badge bad", "data-low-credit": "" }, "low credit")] : null,
    );
  }

  metrics(providers) {
    for (const [name, m] of Object.entries(providers)) {
      const parts = this.cards.get(name);
      if (!parts) continue;
      replace(parts.inFlight, fmt.count(m.in_flight));
      replace(parts.breaker, breakerBadge(m.state));
    }
  }

  event(event) {
    if (event.type === "provider") {
      const parts = this.cards.get(event.name);
      if (parts) replace(parts.breaker, breakerBadge(event.state));
    } else if (event.type === "credit") {
      const parts = this.cards.get(event.provider);
      if (parts) this.setCredit(parts, event.balance_usd, event.balance_usd < event.threshold_usd);
    }
  }
}

function cell(label, content, cls) {
  return h("td", { "data-label": label, class: cls }, content);
}

/** One call as a row of the live table (a live `request` frame or a request log row). */
function callRow(call) {
  const tokens = call.total_tokens;
  return h(
    "tr",
    { "data-request-id": call.request_id },
    cell("Time", h("time", { datetime: new Date(call.ts_ms).toISOString(), title: fmt.dateTime(call.ts_ms) }, new Date(call.ts_ms).toLocaleTimeString())),
    cell("Client", clientLabel(call.client_id, call.client_name)),
    cell("Model", h("span", { class: "mono" }, call.model)),
    cell("Provider", call.provider || "—"),
    cell("Instance", call.instance || "—", "col-instance"),
    cell("Status", [statusBadge(call.status, call.http_status), call.status === "ok" ? null : h("small", { class: "hint" }, ` ${call.http_status}`)]),
    cell("Tokens", fmt.tokens(tokens), "num"),
    cell("Cost", fmt.callCost(call), "num"),
    cell("Latency", fmt.ms(call.latency_ms), "num"),
  );
}

const COLUMNS = [
  ["Time"],
  ["Client"],
  ["Model"],
  ["Provider"],
  ["Instance", "col-instance"],
  ["Status"],
  ["Tokens", "num"],
  ["Cost", "num"],
  ["Latency", "num"],
];

/** The live stream: recent calls from the log, then every new call from the WebSocket. */
function liveSection(ctx, cleanups) {
  const indicator = h("span", { id: "live-status", class: "live-status", "data-state": "connecting", role: "status" }, "connecting…");
  const body = h("tbody", { id: "live-rows" });
  const placeholder = h("tr", { class: "placeholder" }, h("td", { colspan: COLUMNS.length }, loading("Loading recent calls…")));
  body.append(placeholder);
  const tableEl = h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      // The instance column shows once calls of a second instance (a fleet on Redis) arrive.
      { id: "live-table", class: "live-table one-instance" },
      h("caption", { class: "visually-hidden" }, "The newest 50 calls, newest first"),
      h("thead", {}, h("tr", {}, COLUMNS.map(([label, cls]) => h("th", { scope: "col", class: cls }, label)))),
      body,
    ),
  );
  const element = h(
    "section",
    { class: "card live", "aria-labelledby": "live-title" },
    h("header", { class: "live-head" }, h("h2", { id: "live-title" }, "Live requests"), indicator),
    tableEl,
  );

  const seen = new Set();
  const instances = new Set();
  let greet = null;
  // Resolved by the feed's first hello: calls logged from then on arrive as frames (live-tiles).
  const hello = new Promise((resolve) => {
    greet = resolve;
  });
  const section = { element, onMetrics: () => {}, onEvent: () => {}, onCall: () => {}, onReconnect: () => {}, hello, start };
  let everGreeted = false;
  let socket = null;
  let retryTimer = null;
  let attempt = 0;
  let stopped = false;

  function setState(state, text) {
    indicator.dataset.state = state;
    replace(indicator, text);
  }

  function clearPlaceholder() {
    if (placeholder.isConnected) placeholder.remove();
  }

  function showEmpty(text) {
    replace(placeholder, h("td", { colspan: COLUMNS.length }, empty(text)));
  }

  function add(call, { top }) {
    if (!call.request_id || seen.has(call.request_id)) return;
    seen.add(call.request_id);
    if (call.instance && !instances.has(call.instance)) {
      instances.add(call.instance);
      if (instances.size > 1) tableEl.querySelector("table").classList.remove("one-instance");
    }
    clearPlaceholder();
    const row = callRow(call);
    if (top) {
      row.classList.add("fresh");
      body.prepend(row);
    } else {
      body.append(row);
    }
    while (body.rows.length > MAX_ROWS) {
      const last = body.rows[body.rows.length - 1];
      seen.delete(last.dataset.requestId);
      last.remove();
    }
  }

  async function prefill() {
    try {
      const { data } = await get(`/api/usage/requests${query({ limit: MAX_ROWS, from: Date.now() - 7 * 86400000 })}`);
      // Frames may already have arrived: older log rows go below them.
      for (const call of data) add(call, { top: false });
      if (!body.rows.length || body.rows[0] === placeholder) showEmpty("No calls in the last 7 days. New calls appear here as they happen.");
    } catch (error) {
      if (error && error.redirected) return;
      if (placeholder.isConnected) replace(placeholder, h("td", { colspan: COLUMNS.length }, failure(error)));
    }
  }

  // A refused handshake (401 before the upgrade) reaches the page only as a close without a
  // code: ask the API whether the session is still there, and go to the login page if not.
  async function checkSession() {
    try {
      const status = await get("/api/auth/status");
      if (!stopped && !status.session) ctx.navigate("login?next=overview");
    } catch {
      // the gateway is down: keep retrying
    }
  }

  function connect() {
    if (stopped) return;
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/ws";
    setState(attempt ? "reconnecting" : "connecting", attempt ? "reconnecting…" : "connecting…");
    socket = new WebSocket(url);
    let greeted = false;
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === "hello") {
        greet();
        if (everGreeted) section.onReconnect();
        everGreeted = true;
        greeted = true;
        attempt = 0;
        setState("live", "live");
      } else if (frame.type === "request") {
        add(frame, { top: true });
        section.onCall(frame);
      } else if (frame.type === "metrics") {
        section.onMetrics(frame);
      } else if (frame.type === "provider" || frame.type === "credit") {
        section.onEvent(frame);
      }
    });
    socket.addEventListener("close", (event) => {
      socket = null;
      if (stopped) return;
      if (event.code === 4401) {
        setState("closed", "signed out");
        ctx.navigate("login?next=overview");
        return;
      }
      if (event.code === 4403) {
        ctx.navigate("change-password");
        return;
      }
      if (!greeted) checkSession();
      const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
      attempt += 1;
      setState("reconnecting", `reconnecting in ${Math.round(delay / 1000)} s…`);
      retryTimer = setTimeout(connect, delay);
    });
  }

  cleanups.push(() => {
    stopped = true;
    clearTimeout(retryTimer);
    if (socket) socket.close(1000, "left the page");
  });

  async function start() {
    connect();
    await prefill();
  }

  return section;
}
