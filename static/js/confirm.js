// Asks before a destructive button submits its form: <button data-confirm="Deny request #4?">.
// CSP forbids inline script, hence this file. Without JavaScript the form posts as before.
document.addEventListener("submit", function (event) {
  var button = event.submitter;
  var question = button && button.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
