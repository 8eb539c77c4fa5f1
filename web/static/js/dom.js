// DOM helpers. Every text from the API goes in through textContent or attributes, never as
// markup: no HTML string is ever parsed in the dashboard.

/** Build an element: h("a", {href: "#/x", class: "btn"}, "text", childNode, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

/** Append children: nodes, strings (as text), arrays of those; null/undefined/false skipped. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's content. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** The three states every panel has besides its content. */
export function loading(text = "Loading…") {
  return h("p", { class: "state loading", role: "status" }, text);
}

export function empty(text) {
  return h("p", { class: "state empty" }, text);
}

export function failure(error, retry) {
  const message = error && error.message ? error.message : String(error);
  return h(
    "div",
    { class: "state error", role: "alert" },
    h("p", {}, message),
    retry ? h("button", { type: "button", class: "btn", onclick: retry }, "Try again") : null,
  );
}

/** A panel that loads itself: shows loading, then the content or an error with a retry. */
export async function panel(el, load) {
  const run = async () => {
    replace(el, loading());
    try {
      const content = await load();
      replace(el, content);
    } catch (error) {
      if (error && error.redirected) return; // the session ended: the router took over
      replace(el, failure(error, run));
    }
  };
  await run();
}

/** A labelled form field. */
export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    input,
    hint ? h("small", { class: "hint" }, hint) : null,
  );
}

/** A table from rows: columns = [{label, value: row => node|text, class?}]. */
export function table(columns, rows, { caption } = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h("tr", {}, columns.map((c) => h("td", { class: c.class, "data-label": c.label }, c.value(row)))),
        ),
      ),
    ),
  );
}

/** A small key figure: label and value. */
export function stat(label, value, note) {
  return h(
    "div",
    { class: "stat" },
    h("div", { class: "stat-label" }, label),
    h("div", { class: "stat-value" }, value),
    note ? h("div", { class: "stat-note" }, note) : null,
  );
}

/** A message shown above a form after an action. */
export function notice(kind, text) {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}
