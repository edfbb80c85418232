// What the live pages share (live.js: a referral's page; today-live.js: Today). Follows
// the page's feed (server-sent events at `root`'s `data-flux`: a `chronologie` event each
// time something moved) and, for each, fetches the page's live parts (`data-fragment`)
// and hands them to `apply(html)`: one fetch at a time, events that arrive meanwhile
// answered by one more. `apply` returns false when it could not put them in place yet
// (the keyboard is in there): tried again a second later. `ended` runs when the server
// ends the feed. Loaded before the page's own script.
window.relaisFollow = function (root, apply, ended) {
  "use strict";
  var busy = false;
  var pending = false;

  function refresh() {
    if (busy) { pending = true; return; }
    busy = true;
    var again = false;
    fetch(root.getAttribute("data-fragment"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) { again = apply(html) === false; })
      .catch(function () { /* the next event, or the page's own way to refresh */ })
      .then(function () {
        busy = false;
        if (pending) { pending = false; refresh(); } else if (again) { setTimeout(refresh, 1000); }
      });
  }

  var feed = new EventSource(root.getAttribute("data-flux"));
  feed.addEventListener("chronologie", refresh);
  feed.addEventListener("fin", function () {
    feed.close();
    if (ended) { ended(); }
  });
  window.addEventListener("pagehide", function () { feed.close(); });
};
