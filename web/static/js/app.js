// The dashboard shell: hash routes, the navigation (what a role may see), the signed-in user.
// Pages are modules under pages/ exporting `render(root, ctx)`.

import { get, post, setHandlers } from "./api.js";
import { followSession } from "./budget_banner.js";
import { failure, h, loading, replace } from "./dom.js";

const PAGES = [
  { path: "overview", label: "Overview", module: "./pages/overview.js" },
  { path: "analytics", label: "Analytics", module: "./pages/analytics.js" },
  { path: "requests", label: "Request log", module: "./pages/requests.js" },
  { path: "clients", label: "Clients", module: "./pages/clients.js" },
  { path: "providers", label: "Providers", module: "./pages/providers.js" },
  { path: "models", label: "Models", module: "./pages/models.js" },
  { path: "users", label: "Users", module: "./pages/users.js", admin: true },
  { path: "system", label: "System", module: "./pages/system.js" },
];
const PUBLIC = {
  login: "./pages/login.js",
  "change-password": "./pages/password.js",
};

// `generation` counts route changes: a page still loading when the user moved on must not
// replace the page they moved to.
const state = { session: null, cleanup: null, generation: 0 };

/** The route in the hash: "#/clients?id=x" → {path: "clients", params}. */
export function currentRoute() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, search] = raw.split("?");
  return { path: path || "overview", params: new URLSearchParams(search || "") };
}

export function navigate(path) {
  location.hash = `#/${path}`;
}

function toLogin() {
  const { path } = currentRoute();
  state.session = null;
  if (path === "login") return;
  const back = location.hash.replace(/^#\/?/, "");
  navigate(`login?next=${encodeURIComponent(back || "overview")}`);
}

setHandlers({
  sessionEnded: toLogin,
  passwordChange: () => navigate("change-password"),
});

async function loadSession() {
  try {
    const status = await get("/api/auth/status");
    state.session = status.session;
  } catch {
    state.session = null;
  }
}

function renderChrome(active) {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  const session = state.session;
  followSession(session); // [budget-ui] the budget banner runs while someone is signed in
  if (!session || session.must_change_password) {
    replace(nav);
    replace(who);
    return;
  }
  const links = PAGES.filter((page) => !page.admin || session.role === "admin").map((page) =>
    h(
      "a",
      { href: `#/${page.path}`, "aria-current": page.path === active ? "page" : null },
      page.label,
    ),
  );
  replace(nav, links);
  replace(
    who,
    h("span", { class: "user" }, session.username, h("small", {}, ` (${session.role})`)),
    h("button", { type: "button", class: "btn link", onclick: signOut }, "Sign out"),
  );
}

async function signOut() {
  try {
    await post("/api/auth/logout");
  } catch {
    // Signed out either way: the session is gone or will expire.
  }
  state.session = null;
  navigate("login");
}

async function route() {
  const generation = ++state.generation;
  const current = () => generation === state.generation;
  const main = document.getElementById("main");
  const { path, params } = currentRoute();
  if (state.cleanup) {
    state.cleanup();
    state.cleanup = null;
  }
  closeMenu();
  if (!PUBLIC[path] && !state.session) await loadSession();
  if (!current()) return;
  if (!PUBLIC[path] && !state.session) return toLogin();
  if (!PUBLIC[path] && state.session.must_change_password) return navigate("change-password");
  const page = PAGES.find((p) => p.path === path);
  const module = PUBLIC[path] || (page && page.module);
  renderChrome(path);
  if (!module || (page && page.admin && state.session.role !== "admin")) {
    replace(main, h("h1", {}, "Not found"), h("p", {}, "There is no such page."), h("a", { href: "#/overview" }, "Overview"));
    return;
  }
  replace(main, loading());
  try {
    const { render } = await import(module);
    if (!current()) return;
    const root = h("section", { class: "page", "aria-labelledby": "page-title" });
    replace(main, root);
    const ctx = {
      session: state.session,
      params,
      navigate,
      isAdmin: state.session ? state.session.role === "admin" : false,
      setSession: (session) => {
        state.session = session;
      },
      onLeave: (fn) => {
        // A page that finished loading after the user left cleans up at once.
        if (current()) state.cleanup = fn;
        else fn();
      },
    };
    await render(root, ctx);
    const titles = { login: "Sign in", "change-password": "Change password" };
    document.title = `${page ? page.label : titles[path]} · llm-proxy`;
  } catch (error) {
    if (current() && (!error || !error.redirected)) replace(main, failure(error, route));
  }
}

function closeMenu() {
  document.body.classList.remove("nav-open");
  document.querySelector(".menu-toggle").setAttribute("aria-expanded", "false");
}

document.querySelector(".menu-toggle").addEventListener("click", (event) => {
  const open = document.body.classList.toggle("nav-open");
  event.currentTarget.setAttribute("aria-expanded", String(open));
});
// A tap on the link of the page already shown fires no hashchange: close the menu anyway.
document.getElementById("nav").addEventListener("click", (event) => {
  if (event.target.closest("a")) closeMenu();
});
window.addEventListener("hashchange", route);
route();

// The degraded state of the process serving this dashboard, on every page: asked every few
// seconds while signed in (the answer is this process's memory, no Redis round trip).
const CLUSTER_EVERY_MS = 5000;

/** The banner's text for this process's Redis, or null when there is nothing to say. */
export function redisBanner(redis) {
  if (!redis || redis.up) return null;
  const since = redis.down_since_ms ? new Date(redis.down_since_ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" }) : "start";
  const effect = redis.policy === "refuse" ? "model calls are refused" : "limits and sessions are per process";
  return `Redis unreachable since ${since} — ${effect}`;
}

async function watchCluster() {
  const banner = document.getElementById("banner");
  if (state.session && !state.session.must_change_password) {
    try {
      const cluster = await get("/api/system/cluster");
      const text = redisBanner(cluster.redis);
      banner.hidden = !text;
      replace(banner, text || "");
    } catch {
      // Signed out or the gateway unreachable: the page says so itself.
    }
  } else {
    banner.hidden = true;
  }
  setTimeout(watchCluster, CLUSTER_EVERY_MS);
}
watchCluster();
