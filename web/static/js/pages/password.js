// Change one's password: forced after the first sign-in or a reset, optional otherwise.

import { get, post } from "../api.js";
import { field, h, notice, replace } from "../dom.js";

export async function render(root, ctx) {
  let forced = false;
  try {
    const status = await get("/api/auth/status");
    forced = status.session.must_change_password;
    ctx.setSession(status.session);
  } catch (error) {
    if (error.redirected) return;
    throw error;
  }
  const current = h("input", { name: "current", type: "password", autocomplete: "current-password", required: true, autofocus: true });
  const next = h("input", { name: "new", type: "password", autocomplete: "new-password", required: true, minlength: 12 });
  const again = h("input", { name: "again", type: "password", autocomplete: "new-password", required: true, minlength: 12 });
  const message = h("div", { "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "btn primary" }, "Change password");
  const form = h(
    "form",
    { class: "card narrow", novalidate: true },
    h("h1", { id: "page-title" }, "Change your password"),
    forced ? h("p", {}, "Choose a new password before you continue (12 characters or more).") : null,
    message,
    field("Current password", current),
    field("New password", next, "At least 12 characters, not your username."),
    field("New password again", again),
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (next.value !== again.value) {
      replace(message, notice("error", "The two new passwords differ."));
      return;
    }
    submit.disabled = true;
    try {
      await post("/api/auth/change-password", { current_password: current.value, new_password: next.value });
      const status = await get("/api/auth/status");
      ctx.setSession(status.session);
      ctx.navigate("overview");
    } catch (error) {
      if (!error.redirected) replace(message, notice("error", error.message));
    } finally {
      submit.disabled = false;
    }
  });
  replace(root, form);
}
