// Review by cluster: j/k move between cluster rows, a label key (the grid's keys: 1-9, 0, -, =) tags the whole
// focused cluster at once. The row's form posts (cluster, task, label); the server finds the members and answers
// with the row re-rendered. Works across htmx swaps: everything is delegated.
(function () {
  "use strict";
  const LABEL_KEYS = "1234567890-=";

  const toolbar = () => document.getElementById("cluster-toolbar");
  const rows = () => Array.from(document.querySelectorAll("#clusters .cluster-row"));
  const current = () =>
    document.activeElement && document.activeElement.closest && document.activeElement.closest(".cluster-row");

  function focusRow(row) {
    if (!row) return;
    row.focus();
    row.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    const all = rows();
    if (!all.length) return;
    const here = current();
    const index = here ? all.indexOf(here) : -1;
    focusRow(all[Math.min(all.length - 1, Math.max(0, index + step))]);
  }

  function tag(key) {
    const bar = toolbar();
    const row = current();
    if (!bar || bar.dataset.editable !== "1" || !row) return false;
    const labels = bar.dataset.labels.split("|");
    const index = LABEL_KEYS.indexOf(key);
    const form = row.querySelector("form.cluster-fix");
    if (index < 0 || index >= labels.length || !form || row.classList.contains("busy")) return false;
    form.querySelector("select[name=label]").value = labels[index];
    row.classList.add("busy");
    if (form.requestSubmit) form.requestSubmit();
    else form.submit();
    return true;
  }

  Keys.bind({
    active: () => Boolean(toolbar()),
    keys: {
      ...Keys.moves(() => move(1), () => move(-1)),
      o: () => {
        const first = current() && current().querySelector(".cluster-member");
        if (!first) return false;
        window.location = first.href;
      },
    },
    fallback: (key) => tag(key),
  });

  document.addEventListener("click", (event) => {
    const row = event.target.closest && event.target.closest(".cluster-row");
    if (row && !event.target.closest("a, select, button")) row.focus();
  });

  document.addEventListener("htmx:afterSwap", (event) => {
    const target = event.target;
    if (target.classList && target.classList.contains("cluster-row")) {
      target.classList.remove("busy");
      target.focus();
    } else if (target.id === "clusters") focusRow(rows()[0]);
  });
  document.addEventListener("htmx:responseError", (event) => {
    const row = event.target.closest && event.target.closest(".cluster-row");
    if (row) row.classList.remove("busy");
  });
  document.addEventListener("DOMContentLoaded", () => focusRow(rows()[0]));
})();
