// [names] A call's client as the dashboard shows it: its name, with the id on hover; the id
// when the client has no name (deleted, or a static key's "static"); "anonymous" without one.

import { h } from "./dom.js";

/** The client of a call or a row: `id` (null: anonymous) and `name` (null: none known). */
export function clientLabel(id, name) {
  if (!id) return h("span", { class: "hint" }, "anonymous");
  if (name) return h("span", { class: "client-name", title: id }, name);
  return h("span", { class: "mono client-id" }, id);
}

/** The client as text, for places that take no element (a select's option, a chart legend). */
export function clientText(id, name) {
  if (!id) return "anonymous";
  return name || id;
}
