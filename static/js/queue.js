// One-key decisions in the review queue: each decision posts at once (htmx) and moves to the next item.
(function () {
  "use strict";
  const LABEL_KEYS = "1234567890-=";
  const items = () => Array.from(document.querySelectorAll(".queue-item"));
  const current = () => document.activeElement && document.activeElement.closest && document.activeElement.closest(".queue-item");

  function move(step) {
    const all = items();
    const index = current() ? all.indexOf(current()) : -1;
    const next = all[Math.min(all.length - 1, Math.max(0, index + step))];
    if (next) { next.focus(); next.scrollIntoView({ block: "nearest" }); }
  }

  function decide(item, label) {
    if (!label) return;
    const token = document.querySelector("#decide input[name=csrfmiddlewaretoken]").value;
    const body = new URLSearchParams({ placement: item.dataset.placement, task: item.dataset.task, label });
    htmx.ajax("POST", document.getElementById("decide").action, {
      target: item.querySelector(".decision"), swap: "innerHTML", values: Object.fromEntries(body),
      headers: { "X-CSRFToken": token },
    });
    item.classList.add("decided");
    move(1);
  }

  document.addEventListener("keydown", (event) => {
    const item = current();
    if (!item || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    const labels = item.dataset.labels.split("|");
    let handled = true;
    if (key === "j" || key === "ArrowDown") move(1);
    else if (key === "k" || key === "ArrowUp") move(-1);
    else if (key === "n") move(1);
    else if (key === "o") window.location = item.dataset.url;
    else if (key === "a") decide(item, item.dataset.model);
    else if (LABEL_KEYS.indexOf(key) >= 0 && LABEL_KEYS.indexOf(key) < labels.length) decide(item, labels[LABEL_KEYS.indexOf(key)]);
    else handled = false;
    if (handled) event.preventDefault();
  });
  document.addEventListener("DOMContentLoaded", () => { const first = items()[0]; if (first) first.focus(); });
})();
