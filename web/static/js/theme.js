// The colour theme: the system's, light or dark, chosen in the header and remembered in
// localStorage for every page and reload. A classic script loaded in <head>, not a module: it
// runs before <body> is parsed, so the choice applies before the first paint (a module runs
// after parsing, and the CSP refuses an inline script). style.css's variables follow the system
// unless <html data-theme> says otherwise; pages and charts hear "themechange" on document.
(function () {
  "use strict";
  var KEY = "llm-proxy.theme";
  var CHOICES = ["system", "light", "dark"];
  var root = document.documentElement;

  function stored() {
    try {
      var value = localStorage.getItem(KEY);
      return value === "light" || value === "dark" ? value : "system";
    } catch (error) {
      return "system"; // storage refused (privacy settings): the system's theme
    }
  }

  function apply(choice) {
    if (choice === "system") root.removeAttribute("data-theme");
    else root.setAttribute("data-theme", choice);
    var select = document.getElementById("theme");
    if (select) select.value = choice;
    document.dispatchEvent(new CustomEvent("themechange", { detail: { theme: choice } }));
  }

  function choose(choice) {
    try {
      if (choice === "system") localStorage.removeItem(KEY);
      else localStorage.setItem(KEY, choice);
    } catch (error) {
      // Not remembered, but this page still switches.
    }
    apply(choice);
  }

  apply(stored());
  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("theme");
    if (!select) return;
    select.value = stored();
    select.addEventListener("change", function () {
      choose(CHOICES.indexOf(select.value) >= 0 ? select.value : "system");
    });
  });
  // Another tab of the dashboard switched: follow it.
  window.addEventListener("storage", function (event) {
    if (event.key === KEY || event.key === null) apply(stored());
  });
})();
