// Progressive enhancement of the referral form: choosing an operator replaces the
// procedure list in place, from the page's own menu (#ui-procedure-menu) — no reload,
// focus stays on the operator list, and a polite live region says the list changed
// (WCAG 3.2.2: no change of context on input). Choosing a procedure says what it needs
// that the visit lacks. Without JavaScript the "Choisir la démarche" button does the same.
document.addEventListener("DOMContentLoaded", () => {
  const select = document.querySelector("form select[name=operator]");
  const data = document.getElementById("ui-procedure-menu");
  const part = document.getElementById("ui-procedure-part");
  if (!select || !data || !part) return;
  const menu = JSON.parse(data.dataset.menu || "{}");
  const procedure = part.querySelector("select[name=procedure]");
  const status = document.getElementById("ui-procedures-status");
  const needs = document.getElementById("ui-needs");
  // The operator's step button is for pages without JavaScript.
  select.form.querySelectorAll("button[data-ui-no-js]").forEach((b) => b.remove());

  const sayNeeds = () => {
    const entry = (menu[select.value] || []).find((p) => p[0] === procedure.value);
    needs.textContent = entry && entry[2]
      ? `Cette démarche demande aussi : ${entry[2]} (à indiquer à l'étape suivante).` : "";
  };

  select.addEventListener("change", () => {
    const procedures = menu[select.value] || [];
    const placeholder = procedure.options[0];
    procedure.replaceChildren(placeholder);
    for (const [code, label] of procedures) procedure.add(new Option(label, code));
    procedure.value = "";
    part.hidden = procedures.length === 0;
    sayNeeds();
    const name = select.selectedIndex > 0 ? select.options[select.selectedIndex].text : "";
    status.textContent = procedures.length
      ? `Liste des démarches mise à jour : ${procedures.length} démarche${procedures.length > 1 ? "s" : ""} pour ${name}.`
      : "Choisissez un opérateur pour voir ses démarches.";
  });
  procedure.addEventListener("change", sayNeeds);
});
