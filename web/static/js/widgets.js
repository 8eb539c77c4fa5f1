// Small widgets the management pages share, so that there is one way of doing each: action
// notices, optional number inputs, the reveal-once box for keys and passwords, the inline confirm
// step, key/value lists and badges.

import { h, notice, replace } from "./dom.js";

/** Show a notice in a message slot (success or failure of an action). */
export function flash(slot, kind, text) {
  replace(slot, notice(kind, text));
  if (kind === "error") slot.scrollIntoView({ block: "nearest" });
}

/** The message of an API error, or nothing when the session ended (the router took over). */
export function failed(slot, error) {
  if (error && error.redirected) return;
  flash(slot, "error", error && error.message ? error.message : String(error));
}

/** A number input's value: null when empty (= "back to the default"), else the number. */
export function numberOrNull(input) {
  const text = input.value.trim();
  return text === "" ? null : Number(text);
}

/** A number input that accepts whole numbers (limits, concurrency) or decimals (money). */
export function numberInput(name, value, { decimal = false, placeholder } = {}) {
  return h("input", {
    name,
    type: "number",
    min: 0,
    step: decimal ? "any" : 1,
    inputmode: decimal ? "decimal" : "numeric",
    value: value === null || value === undefined ? null : String(value),
    placeholder,
  });
}

/**
 * A secret shown once (a client key, a one-time password): read-only input, Copy, a warning, and
 * a dismiss button that takes the secret out of the DOM for good.
 */
export function revealSecret({ title, secret, id = "new-key", warning, onDismiss }) {
  const input = h("input", { id, class: "mono", readonly: true, value: secret, "aria-label": title, spellcheck: "false" });
  const status = h("span", { class: "copy-status", role: "status" });
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(input.value);
      status.textContent = "Copied.";
    } catch {
      // No clipboard (insecure origin, permission): select it so Ctrl+C / long-press works.
      input.focus();
      input.select();
      status.textContent = "Selected: press Ctrl+C (or ⌘C) to copy.";
    }
  };
  const box = h(
    "section",
    { class: "card secret-reveal", "aria-label": title },
    h("h2", {}, title),
    h(
      "p",
      { class: "notice warn-notice" },
      warning || "Copy it now: it is shown this once and cannot be shown again (only its digest is stored).",
    ),
    h(
      "div",
      { class: "secret-row" },
      input,
      h("button", { type: "button", class: "btn primary", onclick: copy }, "Copy"),
    ),
    status,
    h(
      "div",
      { class: "actions" },
      h(
        "button",
        {
          type: "button",
          class: "btn",
          onclick: () => {
            input.value = "";
            box.remove();
            if (onDismiss) onDismiss();
          },
        },
        "Done, I have saved it",
      ),
    ),
  );
  queueMicrotask(() => input.select());
  return box;
}

/**
 * A button that asks before it acts: the first click swaps it for "question? [Yes] [Cancel]".
 * `run` is awaited; while it runs the confirm button is disabled.
 */
export function confirmButton(label, { question, yes, run, kind = "danger" }) {
  const wrap = h("span", { class: "confirm" });
  const initial = h("button", { type: "button", class: `btn ${kind}` }, label);
  const reset = () => {
    replace(wrap, initial);
    initial.focus();
  };
  initial.addEventListener("click", () => {
    const confirm = h("button", { type: "button", class: "btn danger confirm-yes" }, yes || `Yes, ${label.toLowerCase()}`);
    const cancel = h("button", { type: "button", class: "btn", onclick: reset }, "Cancel");
    confirm.addEventListener("click", async () => {
      confirm.disabled = true;
      cancel.disabled = true;
      try {
        await run();
      } finally {
        if (wrap.isConnected) reset();
      }
    });
    replace(wrap, h("span", { class: "confirm-question" }, question), confirm, cancel);
    confirm.focus();
  });
  wrap.append(initial);
  return wrap;
}

/** A compact definition list from [label, value] pairs (value: text or node). */
export function keyValues(pairs, className = "kv") {
  return h(
    "dl",
    { class: className },
    pairs.map(([label, value]) => h("div", {}, h("dt", {}, label), h("dd", {}, value))),
  );
}

/** A status badge. */
export function badge(kind, text) {
  return h("span", { class: `badge ${kind}` }, text);
}

/**
 * A URL as code that wraps after each "/" and keeps "host:port" whole ([ui-look]: a port cut in
 * two reads as two numbers). A host wider than the column breaks before a dot, its port never.
 * Text that is no absolute URL is shown as it is.
 */
export function urlCode(url) {
  const text = String(url);
  const parts = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*?)(:\d+)?([/?#].*)?$/i.exec(text);
  if (!parts) return h("code", { class: "url" }, text);
  const [, scheme, host, port, rest] = parts;
  const labels = host.split(/(?=\.)/).flatMap((label, i) => [i ? h("wbr") : null, label]);
  const path = (rest || "").split(/(?<=\/)/).flatMap((piece) => [h("wbr"), piece]);
  return h(
    "code",
    { class: "url" },
    scheme,
    h("span", { class: "url-host" }, labels, port ? h("span", { class: "url-port" }, port) : null),
    path,
  );
}
