// One way to take keys on every screen that has them (the grid, the queue, clusters, the export's second look).
// Each screen binds a map of keys to actions; this module owns what they share:
// - a key pressed with Ctrl, Cmd or Alt belongs to the browser;
// - a key typed into a field belongs to the field;
// - the same moves everywhere: j or Down for the next item, k or Up for the previous one (the grid, which has
//   rows, moves by a row with the arrows: it binds them itself);
// - the key is consumed (preventDefault) only when an action took it.
// Loaded before each screen's own script, which calls Keys.bind once.
(() => {
  const FIELDS = "input, select, textarea";
  const PASS = "pass"; // what an intercept returns to leave a key to the browser, untouched

  function typing(event, fields) {
    const target = event.target;
    return Boolean(target && target.closest && target.closest(fields));
  }

  // bind({keys, active, intercept, fallback, fields}):
  //   keys       {key: action(event)}: an action that returns false did not take the key;
  //   active()   whether the screen takes keys at all now (its container is on the page);
  //   intercept(key, event)  asked first; true when it took the key (an open overlay, say), Keys.PASS to leave it
  //              to the browser and the screen's map alike;
  //   fallback(key, event)   asked for a key the map does not name; true when it took it (label keys);
  //   fields     what counts as typing (default: inputs, selects and text areas).
  function bind({ keys = {}, active = () => true, intercept = null, fallback = null, fields = FIELDS }) {
    document.addEventListener("keydown", (event) => {
      if (event.ctrlKey || event.metaKey || event.altKey || typing(event, fields) || !active()) return;
      const key = event.key;
      const taken = intercept ? intercept(key, event) : false;
      if (taken === PASS) return;
      let handled;
      if (taken) handled = true;
      else if (Object.prototype.hasOwnProperty.call(keys, key)) handled = keys[key](event) !== false;
      else handled = Boolean(fallback && fallback(key, event));
      if (handled) event.preventDefault();
    });
  }

  // The shared moves, as entries of a key map: {...Keys.moves(next, previous), ...the screen's own keys}.
  function moves(next, previous) {
    return { j: next, ArrowDown: next, k: previous, ArrowUp: previous };
  }

  // An action on the focused item (focused() finds it): without one, the key is not taken.
  function onFocused(focused, action) {
    return () => {
      const item = focused();
      if (!item) return false;
      action(item);
    };
  }

  window.Keys = { bind, moves, onFocused, FIELDS, PASS };
})();
