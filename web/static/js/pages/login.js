// Sign in, then back to the page the user was on.

import { post } from "../api.js";
import { field, h, notice, replace } from "../dom.js";

export async function render(root, ctx) {
  const username = h("input", { name: "username", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const message = h("div", { "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "btn primary" }, "Sign in");
  const form = h(
    "form",
    { class: "card narrow", novalidate: true },
    h("h1", { id: "page-title" }, "Sign in"),
    message,
    field("Username", username),
    field("Password", password),
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!username.value || !password.value) {
      replace(message, notice("error", "Enter your username and password."));
      return;
    }
    submit.disabled = true;
    replace(message);
    try {
      const answer = await post("/api/auth/login", { username: username.value, password: password.value });
      ctx.setSession({
        username: answer.user.username,
        role: answer.user.role,
        must_change_password: answer.user.must_change_password,
        expires_at: answer.expires_at,
      });
      if (answer.user.must_change_password) {
        ctx.navigate("change-password");
      } else {
        ctx.navigate(ctx.params.get("next") || "overview");
      }
    } catch (error) {
      replace(message, notice("error", error.message));
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  replace(root, form);
}
