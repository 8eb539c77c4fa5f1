// Users of the dashboard (admins only): create (a one-time password, shown once), change role,
// reset a password, delete.

import { del, get, post, put } from "../api.js";
import { empty, field, h, panel, replace, table } from "../dom.js";
import * as format from "../format.js";
import { badge, confirmButton, failed, flash, revealSecret } from "../widgets.js";

export async function render(root, ctx) {
  if (!ctx.isAdmin) {
    // The router hides this page from viewers; the API refuses them anyway.
    replace(root, h("h1", { id: "page-title" }, "Users"), h("p", { class: "state empty" }, "Only admins manage users."));
    return;
  }
  const message = h("div", { "aria-live": "polite" });
  const reveal = h("div", { class: "reveal-slot" });
  const list = h("div", { class: "card" });
  const me = ctx.session.username.toLowerCase();

  const showPassword = (username, password) => {
    replace(
      reveal,
      revealSecret({
        title: `One-time password for ${username}`,
        secret: password,
        id: "new-password",
        warning: "Pass it on now: it is shown this once. The user must choose a new password at the first sign-in.",
        onDismiss: () => replace(reveal),
      }),
    );
    reveal.scrollIntoView({ block: "nearest" });
  };

  const load = () =>
    panel(list, async () => {
      const { data } = await get("/api/users");
      if (!data.length) return empty("No users.");
      return table(
        [
          { label: "Username", value: (u) => h("span", {}, u.username, u.username.toLowerCase() === me ? h("span", { class: "hint" }, " (you)") : null) },
          { label: "Display name", value: (u) => u.display_name || "—" },
          { label: "Role", value: (u) => badge(u.role === "admin" ? "warn" : "", u.role) },
          { label: "Password", value: (u) => (u.must_change_password ? badge("warn", "must change") : "set") },
          { label: "Last sign-in", value: (u) => format.ago(u.last_login_at) },
          { label: "Actions", value: actions },
        ],
        data,
        { caption: `${data.length} user${data.length === 1 ? "" : "s"}` },
      );
    });

  const actions = (u) => {
    const path = `/api/users/${encodeURIComponent(u.username)}`;
    const other = u.role === "admin" ? "viewer" : "admin";
    const box = h("div", { class: "actions nowrap" });
    if (u.username.toLowerCase() === me) {
      box.append(h("a", { href: "#/change-password" }, "Change my password"));
      return box;
    }
    const role = confirmButton(`Make ${other}`, {
      question: `Make ${u.username} ${other === "admin" ? "an admin" : "a viewer"}?`,
      yes: "Yes",
      kind: "",
      run: async () => {
        try {
          await put(path, { role: other });
          flash(message, "ok", `${u.username} is now ${other === "admin" ? "an admin" : "a viewer"}.`);
          await load();
        } catch (error) {
          failed(message, error);
        }
      },
    });
    const reset = confirmButton("Reset password", {
      question: `Reset ${u.username}'s password? Their sessions end.`,
      yes: "Yes, reset",
      kind: "",
      run: async () => {
        try {
          const answer = await put(path, { reset_password: true });
          flash(message, "ok", `${u.username}'s password was reset.`);
          showPassword(u.username, answer.password);
          await load();
        } catch (error) {
          failed(message, error);
        }
      },
    });
    const remove = confirmButton("Delete", {
      question: `Delete ${u.username}?`,
      yes: "Yes, delete",
      run: async () => {
        try {
          await del(path);
          flash(message, "ok", `${u.username} deleted.`);
          await load();
        } catch (error) {
          failed(message, error);
        }
      },
    });
    box.append(role, reset, remove);
    return box;
  };

  const form = newUserForm(message, showPassword, () => load());
  replace(root, h("div", { class: "page-head" }, h("h1", { id: "page-title" }, "Users")), message, reveal, list, form);
  await load();
}

function newUserForm(message, showPassword, reload) {
  const username = h("input", { name: "username", required: true, autocomplete: "off", spellcheck: "false", maxlength: 64 });
  const role = h("select", { name: "role" }, h("option", { value: "viewer" }, "viewer (read only)"), h("option", { value: "admin" }, "admin"));
  const displayName = h("input", { name: "display_name", autocomplete: "off", maxlength: 200 });
  const formMessage = h("div", { "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "btn primary" }, "Create user");
  const form = h(
    "form",
    { class: "card new-user", novalidate: true, "aria-labelledby": "new-user-title" },
    h("h2", { id: "new-user-title" }, "New user"),
    formMessage,
    h("div", { class: "row" }, field("Username", username), field("Role", role), field("Display name", displayName)),
    h("p", { class: "hint" }, "A one-time password is generated; the user changes it at the first sign-in."),
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!username.value.trim()) {
      flash(formMessage, "error", "Enter a username.");
      username.focus();
      return;
    }
    submit.disabled = true;
    try {
      const user = await post("/api/users", {
        username: username.value.trim(),
        role: role.value,
        display_name: displayName.value.trim(),
      });
      form.reset();
      replace(formMessage);
      flash(message, "ok", `User ${user.username} created.`);
      if (user.password) showPassword(user.username, user.password);
      await reload();
    } catch (error) {
      failed(formMessage, error);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
