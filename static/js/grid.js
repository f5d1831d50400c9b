// Keyboard-driven retagging on the review grid. Changes and confirmations ("reviewed, no change") are pending
// (shown on the card) until "Update" (or the s key) posts them in one transaction; the grid is then swapped in
// place and the focus and the scroll come back to the card being worked on. Works across htmx swaps: everything
// is delegated. Every key is listed in the ? overlay (reviews/sitemap_grid.html).
(function () {
  "use strict";
  const LABEL_KEYS = "1234567890-=";
  const DENSITY_KEY = "imagetagger.grid.density";
  const UNDO_KEY = "imagetagger.grid.undo:";
  const LONG_LABEL = 16; // characters: a longer label is set smaller (reviews_tags.LONG_LABEL)

  const grid = () => document.getElementById("grid");
  const form = () => document.getElementById("fixes");
  const cards = () => Array.from(document.querySelectorAll("#grid .card"));
  const current = () => document.activeElement && document.activeElement.closest && document.activeElement.closest("#grid .card");
  const editable = () => form() && form().dataset.editable === "1";
  const pendingInputs = () => Array.from(form().querySelectorAll('input[name="change"], input[name="confirm"]'));
  const overlayOpen = () => Array.from(document.querySelectorAll(".overlay")).find((o) => !o.hidden);

  let lastCard = null; // the card last focused: a click on a toolbar button takes the focus away from it
  let place = null; // where the reviewer was ({id, index, top}) while a save swaps the grid

  function notice(text) {
    const element = document.getElementById("notice");
    if (!element) return;
    element.textContent = text;
    element.hidden = false;
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => { element.hidden = true; }, 4000);
  }

  function focusCard(card, options) {
    if (!card) return;
    card.focus(options || {});
    if (!options) card.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    const all = cards();
    if (!all.length) return;
    const here = current() || lastCard;
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

  function updateCount() {
    const counter = document.getElementById("pending-count");
    if (counter) counter.textContent = `${pendingInputs().length} pending`;
  }

  function hidden(name, value, id) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    input.dataset.id = id;
    form().appendChild(input);
  }

  function dropConfirmation(card) {
    form().querySelectorAll(`input[name="confirm"][data-id="${card.dataset.id}"]`).forEach((input) => input.remove());
    card.classList.remove("pending-confirm");
  }

  function setPending(card, label) {
    const f = form();
    const task = f.dataset.task;
    const id = card.dataset.id;
    f.querySelectorAll(`input[name="change"][data-id="${id}"]`).forEach((input) => input.remove());
    dropConfirmation(card); // a change is a review of its own
    const tag = card.querySelector(`.tag[data-task="${task}"] .label`);
    const shown = label === card.dataset.label ? card.dataset.label || "—" : label;
    if (label === card.dataset.label) {
      card.classList.remove("pending");
    } else {
      hidden("change", `${id}:${task}:${label}`, id);
      card.classList.add("pending");
    }
    if (tag) {
      tag.textContent = shown;
      tag.classList.toggle("long", shown.length > LONG_LABEL);
    }
    updateCount();
  }

  function targets() {
    const selected = cards().filter((card) => card.classList.contains("selected"));
    return selected.length ? selected : [current() || lastCard].filter(Boolean);
  }

  // More like these: the grid of the images most like the selected ones (or the focused one), for one bulk retag.
  function moreLikeThese() {
    const ids = targets().map((card) => card.dataset.id).slice(0, 50);
    if (!ids.length) return;
    const query = new URLSearchParams({ task: "image_type", similar_to: ids.join(",") });
    window.location.assign(`${window.location.pathname}?${query}`);
  }

  // "Reviewed, no change": a confirmation of the tag in effect, pending until saved. Again on the same cards: undone.
  function markReviewed() {
    if (!editable()) return false;
    const task = form().dataset.task;
    const eligible = targets().filter((card) => card.dataset.label && !card.classList.contains("pending"));
    if (!eligible.length) {
      notice("Nothing to mark reviewed: focus or select images that have a tag (a pending change is a review already)");
      return true;
    }
    if (eligible.every((card) => card.classList.contains("pending-confirm"))) {
      eligible.forEach(dropConfirmation);
    } else {
      eligible.filter((card) => !card.classList.contains("pending-confirm")).forEach((card) => {
        hidden("confirm", `${card.dataset.id}:${task}:${card.dataset.label}`, card.dataset.id);
        card.classList.add("pending-confirm");
      });
    }
    updateCount();
    return true;
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

  function selectNone() {
    cards().forEach((card) => card.classList.contains("selected") && toggleSelected(card));
  }

  function label(key) {
    const labels = form().dataset.labels.split("|");
    const index = LABEL_KEYS.indexOf(key);
    if (index < 0 || index >= labels.length || !editable()) return false;
    const chosen = targets();
    chosen.forEach((card) => setPending(card, labels[index]));
    return chosen.length > 0;
  }

  // Where the reviewer is: the card being worked on and how far from the top of the window it sits.
  function capture() {
    const card = current() || lastCard;
    const all = cards();
    if (!card || !all.includes(card)) return { id: null, index: 0, top: null, scrollY: window.scrollY };
    return { id: card.dataset.id, index: all.indexOf(card), top: card.getBoundingClientRect().top, scrollY: window.scrollY };
  }

  // Back to that card (or, when the filter no longer shows it, the one now at its place), at the same height.
  function restore(where) {
    const all = cards();
    const card = all.find((c) => c.dataset.id === where.id) || all[Math.min(where.index, all.length - 1)];
    if (!card || where.top === null) {
      window.scrollTo(0, where.scrollY);
      if (card) card.focus({ preventScroll: true });
      return;
    }
    card.focus({ preventScroll: true });
    window.scrollBy(0, card.getBoundingClientRect().top - where.top);
  }

  function save() {
    const f = form();
    if (!f || !editable()) return;
    if (f.requestSubmit) f.requestSubmit(document.getElementById("update"));
    else f.submit();
  }

  function undoKey() { // "this page": the grid's address with its filter and page (htmx pushes it)
    return UNDO_KEY + window.location.pathname + window.location.search;
  }

  function undo() {
    if (!form() || !editable()) return;
    const url = form().dataset.undoUrl || sessionStorage.getItem(undoKey());
    if (!url) {
      notice("Nothing to undo: no save on this page yet");
      return;
    }
    if (pendingInputs().length) {
      notice(`Save (s) or drop (x) the ${pendingInputs().length} pending changes first`);
      return;
    }
    sessionStorage.removeItem(undoKey());
    form().dataset.undoUrl = "";
    place = capture();
    const token = form().querySelector("input[name=csrfmiddlewaretoken]").value;
    // The undo answers with a redirect to `next`, the grid as it is now, which htmx swaps in.
    htmx.ajax("POST", url, {
      target: "#grid", swap: "innerHTML", values: { next: window.location.pathname + window.location.search },
      headers: { "X-CSRFToken": token },
    });
  }

  function page(rel) {
    const link = document.querySelector(`#grid a[rel~="${rel}"]`);
    if (!link) {
      notice(rel === "next" ? "This is the last page" : "This is the first page");
      return;
    }
    if (form() && pendingInputs().length) {
      notice(`Save (s) or drop (x) the ${pendingInputs().length} pending changes first`);
      return;
    }
    link.click();
  }

  function setDensity(density, remember) {
    grid().classList.toggle("compact", density === "compact");
    grid().classList.toggle("full", density === "full");
    if (remember) localStorage.setItem(DENSITY_KEY, density);
  }

  function toggleDensity() {
    setDensity(grid().classList.contains("compact") ? "full" : "compact", true);
    const here = current() || lastCard;
    if (here) here.scrollIntoView({ block: "nearest" });
  }

  function showOverlay(id, open) {
    const overlay = document.getElementById(id);
    if (!overlay) return;
    overlay.hidden = !open;
    if (open) overlay.focus();
    else if (lastCard && document.body.contains(lastCard)) lastCard.focus({ preventScroll: true });
  }

  function preview() {
    const overlay = document.getElementById("preview");
    if (!overlay) return;
    if (!overlay.hidden) return showOverlay("preview", false);
    const card = current() || lastCard;
    if (!card) return;
    const thumbnail = card.querySelector(".thumb img");
    const source = card.dataset.full || (thumbnail && thumbnail.src);
    if (!source) return notice("This image has no picture to show");
    document.getElementById("preview-image").src = source;
    showOverlay("preview", true);
  }

  const next = () => move(1);
  const previous = () => move(-1);
  Keys.bind({
    active: () => Boolean(grid()),
    // An open overlay takes the keys that close it, and no other; "?" opens the keys overlay; the bulk
    // confirmation (no grid form) has its own buttons.
    intercept: (key) => {
      const open = overlayOpen();
      if (open) {
        if (key === "Escape" || key === "?" || (key === "v" && open.id === "preview")) showOverlay(open.id, false);
        return true;
      }
      if (key === "?") { showOverlay("keys-overlay", true); return true; }
      return form() ? false : Keys.PASS;
    },
    keys: {
      ...Keys.moves(next, previous),
      // The grid has rows: the arrows move by a card across, and by a row up and down.
      ArrowRight: next, l: next, ArrowLeft: previous, h: previous,
      ArrowDown: () => move(columns()), ArrowUp: () => move(-columns()),
      " ": () => {
        const card = current() || lastCard;
        if (!card) return false;
        toggleSelected(card);
      },
      a: () => cards().forEach((card) => card.classList.contains("selected") || toggleSelected(card)),
      Escape: selectNone, A: selectNone,
      c: () => grid().classList.toggle("show-crops"),
      t: () => grid().classList.toggle("show-tags"),
      d: toggleDensity,
      v: preview,
      o: () => {
        if (!current()) return false;
        window.location = current().dataset.url;
      },
      x: () => cards().forEach((card) => setPending(card, card.dataset.label)),
      r: markReviewed, s: save, u: undo,
      "]": () => page("next"), n: () => page("next"),
      "[": () => page("prev"), p: () => page("prev"),
    },
    fallback: (key) => label(key),
  });

  document.addEventListener("focusin", (event) => {
    const card = event.target.closest && event.target.closest("#grid .card");
    if (card) lastCard = card;
  });

  document.addEventListener("click", (event) => {
    const id = event.target.id;
    // The bulk button sends the chosen label for the selection (or the whole filter), not pending changes.
    if (id === "bulk-apply" && !document.getElementById("bulk-label").value) {
      event.preventDefault();
      document.getElementById("bulk-label").focus();
    }
    if (id === "mark-reviewed") markReviewed();
    if (id === "more-like-selected") moreLikeThese();
    if (id === "density-toggle") toggleDensity();
    if (id === "keys-button") showOverlay("keys-overlay", true);
    if (id === "keys-close" || id === "preview" || id === "preview-image") showOverlay(event.target.closest(".overlay").id, false);
    if (event.target.classList.contains("tag-remove")) {
      event.target.closest(".tag-row").remove();
      document.getElementById("filters").requestSubmit();
    }
    const card = event.target.closest && event.target.closest("#grid .card");
    if (card) card.focus();
  });

  // The "and <task> is / is not <label>" row: its selects have no names; once task and label are chosen they
  // become one tag=<task>:<label> (or <task>:!<label>) parameter, and only then does the filter form send.
  document.addEventListener("change", (event) => {
    const row = event.target.closest && event.target.closest(".tag-add");
    if (!row) return;
    const part = (name) => row.querySelector(`select[data-part="${name}"]`);
    if (event.target === part("task")) {
      const option = part("task").selectedOptions[0];
      const labels = option && option.dataset.labels ? option.dataset.labels.split("|") : [];
      part("label").replaceChildren(new Option("label…", ""), ...labels.map((l) => new Option(l, l)), new Option("no label", "none"));
    }
    if (!part("task").value || !part("label").value) {
      event.stopPropagation(); // not a whole condition yet: the form does not send
      return;
    }
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = "tag";
    input.value = `${part("task").value}:${part("op").value}${part("label").value}`;
    row.before(input);
  }, true);

  document.addEventListener("htmx:beforeRequest", (event) => {
    // A save keeps the place; anything else (a filter, a page) starts at the top of what it brings.
    if (event.detail.elt && event.detail.elt.id === "fixes") place = capture();
  });

  document.addEventListener("htmx:responseError", () => {
    place = null;
    notice("The server refused that: nothing was saved");
  });

  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.target.id !== "grid") return;
    const f = form();
    if (f && f.dataset.undoUrl) sessionStorage.setItem(undoKey(), f.dataset.undoUrl);
    const confirmButton = document.getElementById("bulk-confirm-button");
    if (confirmButton) {
      confirmButton.focus();
    } else if (place) {
      restore(place);
    } else {
      focusCard(cards()[0]);
    }
    place = null;
  });

  document.addEventListener("DOMContentLoaded", () => {
    const remembered = localStorage.getItem(DENSITY_KEY);
    if (grid() && !grid().dataset.densityParam && (remembered === "compact" || remembered === "full")) {
      setDensity(remembered, false);
    }
    focusCard(cards()[0]);
  });
})();
