// The live timeline of a referral's page (/demandes/{id}). Listens to the page's feed
// (server-sent events, `data-flux`) and, when the timeline grows, fetches the page's
// live parts (`data-fragment`) and puts them in place by id: the state (#etat, holding
// the status badge #statut), the facts (#faits: due date, outcome…), the timeline
// (#chronologie) and, when the status changed, the actions (#actions). What changed is
// announced to screen readers (#annonce, aria-live="polite"). Progressive enhancement:
// without this script, the "Actualiser" link. Needs live-feed.js (loaded before).
(function () {
  "use strict";
  var root = document.getElementById("demande");
  if (!root || !window.relaisFollow || !window.EventSource || !window.fetch || !window.DOMParser) { return; }
  var announcer = document.getElementById("annonce");

  function swap(fresh, id) {
    var old = document.getElementById(id);
    var next = fresh.getElementById(id);
    if (old && next) { old.replaceWith(document.importNode(next, true)); }
  }

  // The success banner of the adviser's last action (?fait=…) is stale once the
  // operator moved the referral: removed, and dropped from the address (a reload
  // would show it again).
  function forgetDone() {
    var done = document.getElementById("fait");
    if (done) { done.remove(); }
    if (window.history && window.history.replaceState && window.URL) {
      var url = new URL(window.location.href);
      if (url.searchParams.has("fait")) {
        url.searchParams.delete("fait");
        window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
      }
    }
  }

  function labels(from) {
    var found = [];
    var items = document.querySelectorAll("#chronologie > li");
    for (var i = from; i < items.length; i++) {
      var title = items[i].querySelector("strong");
      if (title) { found.push(title.textContent.trim()); }
    }
    return found;
  }

  function apply(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    var before = document.getElementById("statut").getAttribute("data-status");
    var known = document.querySelectorAll("#chronologie > li").length;
    swap(fresh, "etat");
    swap(fresh, "faits");
    swap(fresh, "chronologie");
    var badge = document.getElementById("statut");
    var actions = document.getElementById("actions");
    var typing = actions && actions.contains(document.activeElement);
    if (badge.getAttribute("data-status") !== before && !typing) { swap(fresh, "actions"); }
    if (badge.getAttribute("data-status") !== before) { forgetDone(); }
    var news = labels(known);
    if (news.length && announcer) {
      announcer.textContent = "Nouveau : " + news.join(", ") + ". Statut de la demande : " +
        badge.textContent.trim() + ".";
    }
  }

  window.relaisFollow(root, apply, function () {
    var note = document.getElementById("actualisation");
    if (note && note.firstChild) {
      note.firstChild.textContent = "La mise à jour automatique s'est arrêtée. ";
    }
  });
})();
