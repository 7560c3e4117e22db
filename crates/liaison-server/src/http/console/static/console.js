// Asks before a form whose action is recorded in the ledger under the administrator's
// identity (revealing personal data, redriving a dead letter) is sent.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.classList.contains("confirm") && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});
