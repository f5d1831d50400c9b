// The export page's second look at likely label mistakes: one key decides the focused image at once.
// k keeps it in the dataset, d drops it, j / l (or the arrows) move, o opens the full image. Each decision
// posts (fetch) to the export's decide endpoint, which answers JSON; the card shows the decision and focus
// moves to the next image still to look at.
(function () {
  "use strict";

  const container = () => document.getElementById("issues");
  const cards = () => Array.from(document.querySelectorAll("#issues .issue"));
  const current = () => document.activeElement && document.activeElement.closest && document.activeElement.closest(".issue");
  const BADGES = { keep: "kept", drop: "dropped", pending: "to look at" };

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

  function nextPending(card) {
    const all = cards();
    const start = all.indexOf(card);
    const later = all.slice(start + 1).concat(all.slice(0, start));
    return later.find((other) => other.dataset.decision === "pending") || all[Math.min(all.length - 1, start + 1)];
  }

  function csrf() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  async function decide(card, decision) {
    const box = container();
    if (!box || box.dataset.editable !== "1" || card.classList.contains("busy")) return;
    card.classList.add("busy");
    try {
      const response = await fetch(box.dataset.url, {
        method: "POST",
        headers: { "X-CSRFToken": csrf(), "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ item: card.dataset.item, decision }),
        credentials: "same-origin",
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || response.statusText);
      card.dataset.decision = answer.decision;
      card.classList.remove("pending", "keep", "drop", "error");
      card.classList.add(answer.decision);
      card.querySelector(".decision-badge").textContent = BADGES[answer.decision] || answer.decision;
      const counter = document.getElementById("pending-count");
      if (counter) counter.textContent = answer.pending;
    } catch (error) {
      card.classList.add("error");
      card.querySelector(".decision-badge").textContent = String(error.message || error);
      return;
    } finally {
      card.classList.remove("busy");
    }
    if (current() === card) focusCard(nextPending(card));
  }

  // Each decision needs a focused image; "a" keeps it (accepts its label), as the queue's "a" accepts.
  const onCard = (action) => Keys.onFocused(current, action);
  Keys.bind({
    active: () => Boolean(container()),
    fields: `${Keys.FIELDS}, button`,
    keys: {
      ...Keys.moves(() => move(1), () => move(-1)),
      ArrowRight: () => move(1),
      ArrowLeft: () => move(-1),
      a: onCard((card) => decide(card, "keep")),
      d: onCard((card) => decide(card, "drop")),
      o: () => {
        const card = current();
        if (!card || !card.dataset.full) return false;
        window.open(card.dataset.full, "_blank");
      },
    },
  });

  document.addEventListener("click", (event) => {
    const card = event.target.closest && event.target.closest(".issue");
    if (card) card.focus();
  });

  document.addEventListener("DOMContentLoaded", () => {
    const first = cards().find((card) => card.dataset.decision === "pending");
    if (first) first.focus({ preventScroll: true });
  });
})();
