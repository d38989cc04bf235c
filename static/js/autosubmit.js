// Posts a SAML response form on load (the demo IdP's HTTP-POST binding); CSP forbids inline script.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.querySelector("form[data-autosubmit]");
  if (form) { form.submit(); }
});
