// Single-key choices on the case page: 1-9 a candidate, 0 not a duplicate, c cannot decide.
// Keys typed into a text field are left alone.
document.addEventListener("keydown", function (event) {
  var target = event.target;
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  if (target && (target.tagName === "TEXTAREA" || (target.tagName === "INPUT" && target.type !== "radio"))) return;
  var form = document.getElementById("judgement") || document.getElementById("supervise");
  if (!form) return;
  var radio = form.querySelector('input[type="radio"][data-key="' + event.key + '"]');
  if (radio) {
    radio.checked = true;
    radio.focus();
    if (event.key === "c") form.querySelector("textarea").focus();
    event.preventDefault();
  }
});
