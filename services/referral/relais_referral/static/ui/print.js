// The "Imprimer" button of the letter page: shown only when this script runs (without
// it, the browser's own print command prints the same page, and the page says so).
(function () {
  "use strict";
  var button = document.getElementById("imprimer");
  if (!button || !window.print) { return; }
  button.hidden = false;
  var hint = document.querySelector(".ui-print-hint");
  if (hint) { hint.hidden = true; }
  button.addEventListener("click", function () { window.print(); });
})();
