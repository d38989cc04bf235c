// "Copy" buttons: <button type="button" data-copy="id-of-a-pre">. CSP forbids inline script.
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("button[data-copy]");
  if (!button || !navigator.clipboard) { return; }
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) { return; }
  navigator.clipboard.writeText(source.innerText).then(function () {
    button.textContent = "Copied";
  });
});
