// The live timeline of a referral's page (/demandes/{id}). Listens to the page's feed
// (server-sent events, `data-flux`) and, when the timeline grows, fetches the page's
// live parts (`data-fragment`) and puts them in place by id: the state (#etat, holding
// the status badge #statut), the facts (#faits: due date, outcome…), the timeline
// (#chronologie) and, when the status changed, the actions (#actions). What changed is
// announced to screen readers (#annonce, aria-live="polite"). Progressive enhancement:
// without this script, the "Actualiser" link.
(function () {
  "use strict";
  var root = document.getElementById("demande");
  if (!root || !window.EventSource || !window.fetch || !window.DOMParser) { return; }
  var announcer = document.getElementById("annonce");
  var busy = false;
  var pending = false;

  function swap(fresh, id) {
    var old = document.getElementById(id);
    var next = fresh.getElementById(id);
    if (old && next) { old.replaceWith(document.importNode(next, true)); }
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
    var news = labels(known);
    if (news.length && announcer) {
      announcer.textContent = "Nouveau : " + news.join(", ") + ". Statut de la demande : " +
        badge.textContent.trim() + ".";
    }
  }

  function refresh() {
    if (busy) { pending = true; return; }
    busy = true;
    fetch(root.getAttribute("data-fragment"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(apply)
      .catch(function () { /* the next event, or the "Actualiser" link */ })
      .then(function () {
        busy = false;
        if (pending) { pending = false; refresh(); }
      });
  }

  var feed = new EventSource(root.getAttribute("data-flux"));
  feed.addEventListener("chronologie", refresh);
  feed.addEventListener("fin", function () {
    feed.close();
    var note = document.getElementById("actualisation");
    if (note && note.firstChild) {
      note.firstChild.textContent = "La mise à jour automatique s'est arrêtée. ";
    }
  });
  window.addEventListener("pagehide", function () { feed.close(); });
})();
