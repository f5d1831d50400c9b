// One-key decisions in the review queue: each decision posts (htmx) and moves to the next item at once; "u" undoes
// the last decision (its label goes back and the item can be decided again). The queue's filters ride along with
// every post, so the progress line that comes back (out of band) counts what the page shows.
// Posts go one after another, each once the previous one is answered: htmx drops a request from an element that has
// one in flight (a quick second key was lost), and answers overtaking each other left an older count in the header.
// In order, the last answer's progress line is computed after every decision before it: what a reload shows.
(function () {
  "use strict";
  const LABEL_KEYS = "1234567890-=";
  const decided = []; // items decided on this page, latest last: what "u" undoes
  const items = () => Array.from(document.querySelectorAll(".queue-item"));
  const current = () => document.activeElement && document.activeElement.closest && document.activeElement.closest(".queue-item");
  const form = () => document.getElementById("decide");

  function move(step) {
    const all = items();
    const index = current() ? all.indexOf(current()) : -1;
    const next = all[Math.min(all.length - 1, Math.max(0, index + step))];
    if (next) { next.focus(); next.scrollIntoView({ block: "nearest" }); }
  }

  let posted = Promise.resolve(); // the latest post: the next one waits for its answer

  function post(url, item, values) {
    const data = Object.fromEntries(new FormData(form()));
    const token = data.csrfmiddlewaretoken;
    delete data.csrfmiddlewaretoken;
    const send = () => htmx.ajax("POST", url, {
      source: item, target: item.querySelector(".decision"), swap: "innerHTML", values: Object.assign(data, values),
      headers: { "X-CSRFToken": token },
    });
    posted = posted.then(send, send);
    return posted;
  }

  function decide(item, label) {
    if (!label) return;
    item.classList.add("decided");
    const sent = post(form().action, item, { placement: item.dataset.placement, task: item.dataset.task, label });
    decided.push({ item, sent });
    move(1);
  }

  // Undoes the latest decision of this page that went through (once its answer is in: a quick "u" waits for it).
  async function undo() {
    while (decided.length) {
      const { item, sent } = decided.pop();
      await sent;
      const answer = item.querySelector(".decision [data-change-set]");
      if (!answer) continue; // the decision was refused: nothing to undo there
      await post(form().dataset.undo, item, { change_set: answer.dataset.changeSet });
      if (item.querySelector(".decision [data-undone]")) {
        item.classList.remove("decided");
        item.focus();
        item.scrollIntoView({ block: "nearest" });
      }
      return;
    }
  }

  // A refused decision or undo answers 400/409 with a sentence: show it in place of the decision.
  document.addEventListener("htmx:beforeSwap", (event) => {
    const status = event.detail.xhr.status;
    const target = event.detail.target;
    if ((status === 400 || status === 409) && target && target.classList.contains("decision")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
      const item = target.closest(".queue-item");
      if (item && status === 400) item.classList.remove("decided");
    }
  });

  // Every key but "u" (undo the last decision) needs a focused item.
  const onItem = (action) => Keys.onFocused(current, action);
  Keys.bind({
    keys: {
      u: undo,
      ...Keys.moves(onItem(() => move(1)), onItem(() => move(-1))),
      n: onItem(() => move(1)),
      o: onItem((item) => { window.location = item.dataset.url; }),
      a: onItem((item) => decide(item, item.dataset.model)),
    },
    fallback: (key) => {
      const item = current();
      const position = LABEL_KEYS.indexOf(key);
      if (!item || position < 0 || position >= item.dataset.labels.split("|").length) return false;
      decide(item, item.dataset.labels.split("|")[position]);
      return true;
    },
  });
  document.addEventListener("DOMContentLoaded", () => { const first = items()[0]; if (first) first.focus(); });
})();
