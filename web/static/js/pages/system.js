// System: the gateway's health, its recent log lines, backups and the effective configuration.

import { get, post } from "../api.js";
import { globalBudgetCard } from "../budget_global.js";
import { empty, h, panel, replace, stat, table } from "../dom.js";
import * as format from "../format.js";
import { badge, failed, keyValues } from "../widgets.js";
import { breakerBadge } from "./providers.js";
import { reachBadge } from "../reach.js";

/** "3 d 4 h", "2 h 5 min", "45 s". */
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const hrs = Math.floor((s % 86400) / 3600);
  const min = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${hrs} h`;
  if (hrs) return `${hrs} h ${min} min`;
  if (min) return `${min} min ${s % 60} s`;
  return `${s} s`;
}

/** A statistic's value as text: numbers formatted, booleans as yes/no. */
function scalar(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "number") return Number.isInteger(value) ? format.count(value) : value.toFixed(2);
  return String(value);
}

// A statistic named *_ms is a duration unless it is a moment: no duration is 3 years long
// (1e11 ms), every wall-clock time since 1973 is longer; "last_*" is a moment not yet reached.
const MOMENT_MS = 1e11;

function isMoment(key, value) {
  if (!key.endsWith("_ms")) return false;
  return value === null || value === undefined ? key.startsWith("last_") : typeof value === "number" && value >= MOMENT_MS;
}

/**
 * An actor's statistic as [label, value]: moments as date, time and age ("1.8T" was ms read as
 * a count), dollars as money.
 */
function actorFigure(key, value) {
  if (key.endsWith("_usd") && (typeof value === "number" || value === null)) return [key.slice(0, -4).replaceAll("_", " "), format.money(value)];
  if (!isMoment(key, value)) return [key.replaceAll("_", " "), scalar(value)];
  const label = key.slice(0, -3).replaceAll("_", " ");
  if (value === null || value === undefined) return [label, "never"];
  const at = new Date(value);
  return [label, h("time", { datetime: at.toISOString(), title: at.toISOString() }, `${format.dateTime(value)} (${format.ago(value)})`)];
}

/** A JSON value as nested key/value lists (the settings tree). */
function tree(value) {
  if (value === null || value === undefined) return h("span", { class: "hint" }, "—");
  if (Array.isArray(value)) {
    if (!value.length) return h("span", { class: "hint" }, "none");
    if (value.every((v) => v === null || typeof v !== "object")) return h("code", {}, value.map(scalar).join(", "));
    return h("ol", { class: "tree-list" }, value.map((v) => h("li", {}, tree(v))));
  }
  if (typeof value === "object") {
    const entries = Object.entries(value);
    if (!entries.length) return h("span", { class: "hint" }, "none");
    return keyValues(entries.map(([k, v]) => [k, tree(v)]), "kv tree");
  }
  return h("code", {}, typeof value === "number" || typeof value === "boolean" ? String(value) : value);
}

function section(title, content, ...headExtras) {
  return h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, title), headExtras), content);
}

export async function render(root, ctx) {
  const health = h("div", {});
  const logs = h("div", {});
  const backups = h("div", {});
  const settings = h("div", {});
  const refreshHealth = h("button", { type: "button", class: "btn" }, "Refresh");
  const refreshLogs = h("button", { type: "button", class: "btn" }, "Refresh");
  const backupMessage = h("div", { "aria-live": "polite" });
  const globalBudget = globalBudgetCard(ctx); // [budget-ui]

  const loadHealth = () => panel(health, healthView);
  const loadLogs = () => panel(logs, logsView);
  const loadBackups = () => panel(backups, backupsView);
  refreshHealth.addEventListener("click", loadHealth);
  refreshLogs.addEventListener("click", loadLogs);

  let backupControls = null;
  if (ctx.isAdmin) {
    const result = h("div", { class: "backup-result", "aria-live": "polite", hidden: true });
    const button = h("button", { type: "button", class: "btn primary" }, "Back up now");
    button.addEventListener("click", async () => {
      button.disabled = true;
      replace(backupMessage);
      try {
        const made = await post("/api/system/backup");
        result.hidden = false;
        replace(
          result,
          h("strong", {}, "Backup written: "),
          h("code", { class: "backup-path" }, made.path),
          ` (${format.bytes(made.size_bytes)})`,
        );
        await loadBackups();
      } catch (error) {
        failed(backupMessage, error);
      } finally {
        button.disabled = false;
      }
    });
    backupControls = h("div", { class: "actions" }, button, result);
  }

  replace(
    root,
    h("div", { class: "page-head" }, h("h1", { id: "page-title" }, "System")),
    section("Health", health, refreshHealth),
    globalBudget.card,
    section("Recent log lines", logs, refreshLogs),
    section("Backups", h("div", {}, backupMessage, backupControls, backups)),
    section("Settings", settings),
  );

  await Promise.all([loadHealth(), globalBudget.load(), loadLogs(), loadBackups(), panel(settings, settingsView)]);
}

// SQLite: the file and its WAL; PostgreSQL: the server (its URL without the password).
function databaseStat(db) {
  const note = db.backend === "postgresql" ? "PostgreSQL" : `WAL ${format.bytes(db.wal_bytes)}`;
  return stat("Database", db.up ? format.bytes(db.size_bytes) : badge("bad", "down"), note);
}

function databaseWhere(db) {
  return db.backend === "postgresql"
    ? h("p", { class: "hint" }, "Database: ", h("code", {}, db.url))
    : h("p", { class: "hint" }, "Database file: ", h("code", {}, db.path));
}

// While the database cannot be written, calls go on and their records wait in memory, up to a bound.
function databaseOutage(db) {
  if (db.up && !db.records_dropped) return null;
  const held = `${format.count(db.buffered)} call records held in memory (at most ${format.count(db.buffer_bound)})`;
  const dropped = `${format.count(db.records_dropped)} dropped past that bound since start`;
  return h(
    "p",
    { class: db.up ? "hint" : "error database-outage" },
    db.up
      ? dropped
      : `The database is unreachable since ${format.dateTime(db.down_since_ms)}: ${held}; ${dropped}.`,
  );
}

async function healthView() {
  const x = await get("/api/system/health");
  const statusKind = x.status === "ok" ? "ok" : x.status === "starting" ? "warn" : "bad";
  const providers = Object.values(x.providers || {});
  return h(
    "div",
    { class: "health" },
    h(
      "div",
      { class: "stats" },
      stat("Status", badge(statusKind, x.status), `version ${x.version} · pid ${x.pid}`),
      stat("Uptime", duration(x.uptime_s), `since ${format.dateTime(x.started_at_ms)}`),
      stat("Memory (RSS)", format.bytes(x.rss_bytes)),
      databaseStat(x.database),
      stat("In flight", format.count(x.in_flight), "model calls being answered"),
    ),
    databaseWhere(x.database),
    databaseOutage(x.database),
    h("h3", {}, "Fleet"),
    fleetView(x),
    h("h3", {}, "Breakers"),
    providers.length
      ? table(
          [
            { label: "Provider", value: (p) => p.name },
            { label: "Breaker", value: (p) => breakerBadge(p.breaker_state) },
            { label: "Reachability", value: (p) => reachBadge(p.reachability) },
            { label: "In flight", value: (p) => format.count(p.in_flight), class: "num" },
            { label: "Waiting", value: (p) => format.count(p.waiting), class: "num" },
            { label: "Calls", value: (p) => format.count(p.calls), class: "num" },
            { label: "Errors", value: (p) => format.count(p.errors), class: "num" },
            { label: "Trips", value: (p) => format.count(p.breaker_trips), class: "num" },
          ],
          providers,
        )
      : empty("No provider is running."),
    h("h3", {}, "Actors"),
    h(
      "div",
      { class: "actor-grid" },
      Object.entries(x.actors || {}).map(([name, values]) =>
        h(
          "div",
          { class: "actor", dataset: { actor: name } },
          h("h4", {}, name),
          keyValues(Object.entries(values || {}).map(([k, v]) => actorFigure(k, v)), "kv compact"),
        ),
      ),
    ),
  );
}

/** This instance, its Redis and the live instances (one alone without [cluster] redis_url). */
function fleetView(x) {
  if (!x.redis) {
    return h("p", { class: "hint" }, "A single process (no [cluster] redis_url): instance ", h("code", {}, x.instance), ".");
  }
  const redis = x.redis;
  const state = redis.up
    ? badge("ok", "up")
    : badge("bad", `down since ${format.dateTime(redis.down_since_ms)}`);
  const policy = redis.policy === "refuse" ? "model calls refused while down" : "per-process limits and sessions while down";
  return h(
    "div",
    { class: "fleet", id: "fleet" },
    h(
      "div",
      { class: "stats" },
      stat("Redis", state, `policy ${redis.policy}: ${policy} · ${format.count(redis.outages)} outages`),
      stat("Instances", format.count(x.instances.length), `this one: ${x.instance}`),
    ),
    table(
      [
        { label: "Instance", value: (i) => (i.this ? h("strong", {}, i.name, " (this one)") : i.name) },
        { label: "Host", value: (i) => i.host || "—" },
        { label: "PID", value: (i) => (i.pid === null ? "—" : String(i.pid)), class: "num" },
        { label: "Version", value: (i) => i.version || "—" },
        { label: "In flight", value: (i) => format.count(i.in_flight || 0), class: "num" },
        { label: "Started", value: (i) => (i.started_ms ? format.dateTime(i.started_ms) : "—") },
      ],
      x.instances,
      { caption: "Live instances (each heartbeats every 2 s)" },
    ),
  );
}

async function logsView() {
  const { data } = await get("/api/system/logs?limit=200");
  if (!data.length) return empty("No log lines yet.");
  const list = h(
    "ol",
    { class: "log-lines", tabindex: "0", "aria-label": "Recent log lines, oldest first" },
    data.map((line) =>
      h(
        "li",
        { class: `log-line level-${String(line.level).toLowerCase()}` },
        h("time", { datetime: new Date(line.ts_ms).toISOString() }, new Date(line.ts_ms).toLocaleTimeString()),
        " ",
        h("span", { class: "log-level" }, line.level),
        " ",
        h("span", { class: "log-logger" }, line.logger),
        " ",
        line.request_id ? [h("span", { class: "log-request mono" }, line.request_id), " "] : null,
        h("span", { class: "log-message" }, line.message),
      ),
    ),
  );
  // Newest at the bottom, like a terminal: start scrolled there.
  requestAnimationFrame(() => {
    list.scrollTop = list.scrollHeight;
  });
  return h("div", {}, h("p", { class: "hint" }, `The last ${data.length} lines, newest at the bottom.`), list);
}

async function backupsView() {
  const { data } = await get("/api/system/backups");
  if (!data.length) return empty("No backups yet.");
  return table(
    [
      { label: "File", value: (b) => h("code", {}, b.path) },
      { label: "Size", value: (b) => format.bytes(b.size_bytes), class: "num" },
      { label: "Made", value: (b) => h("span", { title: format.dateTime(b.created_at) }, format.ago(b.created_at)) },
    ],
    data,
    { caption: `${data.length} backup${data.length === 1 ? "" : "s"}, newest first` },
  );
}

async function settingsView() {
  const answer = await get("/api/settings");
  const stored = answer.settings || {};
  return h(
    "div",
    { class: "settings" },
    h("p", { class: "hint" }, "The effective configuration (secrets masked). Source: ", h("code", {}, answer.config.source || "—")),
    h(
      "div",
      { class: "settings-tree" },
      Object.entries(answer.config)
        .filter(([k]) => k !== "source")
        .map(([name, value]) => h("details", { class: "disclosure", open: name === "server" }, h("summary", {}, name), tree(value))),
    ),
    h("h3", {}, "Stored dashboard settings"),
    Object.keys(stored).length ? tree(stored) : empty("None stored."),
  );
}
