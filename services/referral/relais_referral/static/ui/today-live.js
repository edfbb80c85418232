// Today's referrals needing attention (/aujourdhui), kept up to date: listens to the
// page's feed (server-sent events, `data-flux`: an event each time a referral of the
// user's sites moves) and puts the fresh list (`data-fragment`) in place of
// #demandes-a-traiter, saying so to screen readers (#annonce). Progressive
// enhancement: without this script, the page shows the list as it was when loaded.
// Needs live-feed.js (loaded before).
(function () {
  "use strict";
  var root = document.getElementById("aujourdhui");
  if (!root || !window.relaisFollow || !window.EventSource || !window.fetch || !window.DOMParser) { return; }
  var announcer = document.getElementById("annonce");

  function apply(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    var next = fresh.getElementById("demandes-a-traiter");
    var old = document.getElementById("demandes-a-traiter");
    if (!next || !old) { return true; }
    if (old.contains(document.activeElement)) { return false; }  // not under the keyboard's feet: later
    var before = old.querySelectorAll("tbody tr").length;
    old.replaceWith(document.importNode(next, true));
    var after = document.querySelectorAll("#demandes-a-traiter tbody tr").length;
    if (announcer) {
      announcer.textContent = "Demandes à traiter mises à jour : " + after + " demande" + (after > 1 ? "s" : "") +
        (after !== before ? " (" + (after > before ? "+" : "") + (after - before) + ")" : "") + ".";
    }
  }

  window.relaisFollow(root, apply);
})();
