// [reach] A provider's reachability as one badge: what its last call or probe found, and when
// ("Unreachable — connection refused, 12 s ago"; "Last call 200, 3 s ago"). The age is the
// server's (age_s), so a browser whose clock is off still reads it right.

import { badge } from "./widgets.js";

export function sinceText(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function reachText(r) {
  if (!r || r.state === "unknown") return "Reachability unknown";
  const age = sinceText(r.age_s);
  if (r.state === "unreachable") {
    const why = [r.reason, r.status ? `(${r.status})` : null].filter(Boolean).join(" ");
    return `Unreachable — ${why || "failed"}, ${age}`;
  }
  const what = [r.status, r.reason].filter((part) => part !== null && part !== undefined).join(" ");
  return r.via === "probe" ? `Reachable — model list ${what}, ${age}` : `Last call ${what}, ${age}`;
}

export function reachBadge(r) {
  const kind = !r || r.state === "unknown" ? "" : r.state === "reachable" ? "ok" : "bad";
  const el = badge(kind, reachText(r));
  el.classList.add("reach-badge");
  el.dataset.reach = r ? r.state : "unknown";
  el.title =
    !r || r.state === "unknown"
      ? "Neither called nor probed yet: an idle provider's model list is asked for once per probe interval."
      : `${r.via === "probe" ? "Found by the idle probe (the model list, unbilled)" : "From the last real call"} at ${new Date(r.checked_at * 1000).toLocaleString()}`;
  return el;
}
