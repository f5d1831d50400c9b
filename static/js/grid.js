// Keyboard-driven retagging on the review grid. Changes are pending (shown on the card) until "Update"
// (or the s key) posts them in one transaction. Works across htmx swaps: everything is delegated.
(function () {
  "use strict";
  const LABEL_KEYS = "1234567890-=";

  const form = () => document.getElementById("fixes");
  const cards = () => Array.from(document.querySelectorAll("#grid .card"));
  const current = () => document.activeElement && document.activeElement.closest && document.activeElement.closest(".card");
  const editable = () => form() && form().dataset.editable === "1";

  function focusCard(card) {
    if (!card) return;
    card.focus();
    card.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    const all = cards();
    if (!all.length) return;
    const here = current();
    const index = here ? all.indexOf(here) : -1;
    focusCard(all[Math.min(all.length - 1, Math.max(0, index + step))]);
  }

  function columns() {
    const all = cards();
    if (all.length < 2) return 1;
    const top = all[0].offsetTop;
    const n = all.findIndex((card) => card.offsetTop !== top);
    return n === -1 ? all.length : n;
  }

  function setPending(card, label) {
    const f = form();
    const task = f.dataset.task;
    const id = card.dataset.id;
    f.querySelectorAll(`input[name="change"][data-id="${id}"]`).forEach((input) => input.remove());
    const tag = card.querySelector(`.tag[data-task="${task}"] .label`);
    if (label === card.dataset.label) {
      card.classList.remove("pending");
      tag.textContent = card.dataset.label || "—";
    } else {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = "change";
      input.value = `${id}:${task}:${label}`;
      input.dataset.id = id;
      f.appendChild(input);
      card.classList.add("pending");
      tag.textContent = label;
    }
    const count = f.querySelectorAll('input[name="change"]').length;
    const counter = document.getElementById("pending-count");
    if (counter) counter.textContent = `${count} pending`;
  }

  function toggleSelected(card) {
    const f = form();
    const id = card.dataset.id;
    const existing = f.querySelector(`input[name="selected"][value="${id}"]`);
    if (existing) {
      existing.remove();
      card.classList.remove("selected");
    } else {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = "selected";
      input.value = id;
      f.appendChild(input);
      card.classList.add("selected");
    }
  }

  function label(key) {
    const labels = form().dataset.labels.split("|");
    const index = LABEL_KEYS.indexOf(key);
    if (index < 0 || index >= labels.length || !editable()) return false;
    const selected = cards().filter((card) => card.classList.contains("selected"));
    const targets = selected.length ? selected : [current()].filter(Boolean);
    targets.forEach((card) => setPending(card, labels[index]));
    return targets.length > 0;
  }

  function save() {
    const f = form();
    if (!f || !editable()) return;
    if (f.requestSubmit) f.requestSubmit(document.getElementById("update"));
    else f.submit();
  }

  document.addEventListener("keydown", (event) => {
    if (!form() || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.matches && target.matches("input, select, textarea")) return;
    const key = event.key;
    let handled = true;
    if (key === "ArrowRight" || key === "j" || key === "l") move(1);
    else if (key === "ArrowLeft" || key === "k" || key === "h") move(-1);
    else if (key === "ArrowDown") move(columns());
    else if (key === "ArrowUp") move(-columns());
    else if (key === " " && current()) toggleSelected(current());
    else if (key === "a") cards().forEach((card) => card.classList.contains("selected") || toggleSelected(card));
    else if (key === "c") document.getElementById("grid").classList.toggle("show-crops");
    else if (key === "o" && current()) window.location = current().dataset.url;
    else if (key === "x") cards().forEach((card) => setPending(card, card.dataset.label));
    else if (key === "s") save();
    else handled = label(key);
    if (handled) event.preventDefault();
  });

  // The bulk button sends the chosen label for the selection (or the whole filter), not pending changes.
  document.addEventListener("click", (event) => {
    if (event.target.id === "bulk-apply" && !document.getElementById("bulk-label").value) {
      event.preventDefault();
      document.getElementById("bulk-label").focus();
    }
    const card = event.target.closest && event.target.closest(".card");
    if (card) card.focus();
  });

  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.target.id === "grid") focusCard(cards()[0]);
  });
  document.addEventListener("DOMContentLoaded", () => focusCard(cards()[0]));
})();
