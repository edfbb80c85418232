// Progressive enhancement of the referral form: choosing an operator shows its
// procedures at once (the form's own "Choisir la démarche" step, submitted for the
// adviser). Without JavaScript the button does the same.
document.addEventListener("DOMContentLoaded", () => {
  const select = document.querySelector("form select[name=operator]");
  if (!select) return;
  select.addEventListener("change", () => {
    const form = select.form;
    const step = document.createElement("input");
    step.type = "hidden";
    step.name = "etape";
    step.value = "operator";
    form.appendChild(step);
    form.querySelectorAll("button[name=etape]").forEach((b) => b.removeAttribute("name"));
    form.submit();
  });
});
