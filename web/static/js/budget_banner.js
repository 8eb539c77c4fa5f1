// [budget-ui] The budget banner under the header, on every page: one line per budget past its
// warning share or spent, read from /api/budgets on load and kept live by the feed's `budget`
// frames. An alert dismissed stays away until its state changes (warning → exceeded, or back).

import { get } from "./api.js";
import { alertText } from "./budgets.js";
import { h, replace } from "./dom.js";

// A fallback read, for what no frame says: a budget raised or removed elsewhere, a period that
// reset, and a budget crossed in another process of a fleet (its frame reaches that process's
// feeds only). The answer is the keeper's memory: cheap to ask this often.
const REFRESH_EVERY_MS = 15_000;
const BACKOFF_MS = [1000, 2000, 5000, 10000, 30000];
const DISMISSED_KEY = "llm-proxy.budget-alerts-dismissed";

const state = {
  running: false,
  alerts: new Map(), // key → alert
  socket: null,
  retryTimer: null,
  refreshTimer: null,
  attempt: 0,
};

/** An alert's identity: one per budget and period. */
function keyOf(alert) {
  return `${alert.scope}:${alert.id ?? ""}:${alert.period}`;
}

/** What a dismissal hides: this alert of this period (the next period's is a new one). */
function dismissalOf(alert) {
  return `${keyOf(alert)}@${alert.resets_at_ms ?? ""}`;
}

/** Dismissed alerts of this tab: dismissal → the state it had when dismissed. */
function dismissed() {
  try {
    return JSON.parse(sessionStorage.getItem(DISMISSED_KEY) || "{}") || {};
  } catch {
    return {};
  }
}

function dismiss(alert) {
  const all = dismissed();
  all[dismissalOf(alert)] = alert.state;
  try {
    sessionStorage.setItem(DISMISSED_KEY, JSON.stringify(all));
  } catch {
    // Storage refused (private mode, quota): dismissed for this page view only.
  }
  state.alerts.delete(keyOf(alert));
  draw();
}

function element() {
  return document.getElementById("budget-alerts");
}

/** The banner from the alerts held: exceeded first, then by name. */
function draw() {
  const banner = element();
  if (!banner) return;
  const hidden = dismissed();
  const now = Date.now();
  const shown = [...state.alerts.values()]
    // A period that has reset is over whether or not a frame said so.
    .filter((alert) => !(alert.resets_at_ms && alert.resets_at_ms <= now))
    .filter((alert) => hidden[dismissalOf(alert)] !== alert.state)
    .sort((a, b) => (a.state === b.state ? String(a.name).localeCompare(String(b.name)) : a.state === "exceeded" ? -1 : 1));
  banner.hidden = shown.length === 0;
  replace(
    banner,
    shown.map((alert) => {
      const text = alertText(alert);
      return h(
        "div",
        { class: `budget-alert ${alert.state}`, dataset: { alert: keyOf(alert), state: alert.state } },
        h("strong", { class: "budget-alert-state" }, alert.state === "exceeded" ? "Budget reached" : "Budget warning"),
        h("span", { class: "budget-alert-text" }, text),
        h("button", { type: "button", class: "btn link budget-dismiss", "aria-label": `Dismiss: ${text}`, onclick: () => dismiss(alert) }, "Dismiss"),
      );
    }),
  );
}

/** Replace the alerts with the API's list. */
async function refresh() {
  if (!state.running) return;
  try {
    const budgets = await get("/api/budgets");
    if (!state.running) return;
    state.alerts = new Map((budgets.alerts || []).map((alert) => [keyOf(alert), alert]));
    draw();
  } catch {
    // Signed out (the router takes over) or the gateway unreachable: keep what is shown.
  }
}

/** The event a page listens to for the budgets whose state just changed (its `detail`: the frame). */
export const BUDGET_EVENT = "llm-proxy:budget";

/** A live `budget` frame: the alert it describes set, or removed when back to "ok". */
function onFrame(frame) {
  // The page's own figures (a spend column, a budget card) follow the banner.
  window.dispatchEvent(new CustomEvent(BUDGET_EVENT, { detail: frame }));
  const key = keyOf(frame);
  if (frame.state !== "warning" && frame.state !== "exceeded") {
    state.alerts.delete(key);
  } else {
    const percent = frame.limit_usd ? (frame.spent_usd / frame.limit_usd) * 100 : 100;
    state.alerts.set(key, { ...frame, percent });
  }
  draw();
}

function connect() {
  if (!state.running) return;
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/ws";
  const socket = new WebSocket(url);
  state.socket = socket;
  socket.addEventListener("message", (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (frame.type === "budget") onFrame(frame);
    else if (frame.type === "hello") {
      // Frames missed while away: read the whole list again.
      if (state.attempt) refresh();
      state.attempt = 0;
    }
  });
  socket.addEventListener("close", (event) => {
    if (state.socket === socket) state.socket = null;
    if (!state.running) return;
    // Signed out or a password change due: the router deals with it; the next page restarts us.
    if (event.code === 4401 || event.code === 4403) return stop();
    const delay = BACKOFF_MS[Math.min(state.attempt, BACKOFF_MS.length - 1)];
    state.attempt += 1;
    state.retryTimer = setTimeout(connect, delay);
  });
}

function start() {
  state.running = true;
  state.attempt = 0;
  connect();
  refresh();
  state.refreshTimer = setInterval(refresh, REFRESH_EVERY_MS);
}

function stop() {
  state.running = false;
  clearTimeout(state.retryTimer);
  clearInterval(state.refreshTimer);
  if (state.socket) state.socket.close(1000, "signed out");
  state.socket = null;
  state.alerts.clear();
  draw();
}

/**
 * Read a page's budget figures again when a budget it shows changes state (a feed frame):
 * `concerns(frame)` says which, `reload()` reads them; stopped when the page is left.
 */
export function followBudgets(ctx, concerns, reload) {
  const listener = (event) => {
    if (concerns(event.detail)) reload();
  };
  window.addEventListener(BUDGET_EVENT, listener);
  ctx.onLeave(() => window.removeEventListener(BUDGET_EVENT, listener));
}

/** Read the alerts again now: after a budget was changed here, which no frame may announce. */
export function refreshBudgetAlerts() {
  return refresh();
}

/** Follow the shell's session: the banner runs while someone is signed in, else it is hidden. */
export function followSession(session) {
  const signedIn = Boolean(session && !session.must_change_password);
  if (signedIn && !state.running) start();
  else if (!signedIn && state.running) stop();
}
