// Single keys on the case page: 1-9 a candidate (its first capture), 0 not a duplicate,
// c cannot decide; v opens the compare view at the chosen candidate (or the first).
// Keys typed into a text field are left alone.
document.addEventListener("keydown", function (event) {
  var target = event.target;
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  if (target && (target.tagName === "TEXTAREA" || (target.tagName === "INPUT" && target.type !== "radio"))) return;
  var form = document.getElementById("judgement") || document.getElementById("supervise");
  var compare = document.getElementById("compare-link");
  if (event.key === "v" && compare) {
    var chosen = form && form.querySelector('input[type="radio"][data-candidate]:checked');
    var url = compare.getAttribute("href");
    if (chosen) url += "?candidate=" + encodeURIComponent(chosen.getAttribute("data-candidate"));
    window.location.href = url;
    event.preventDefault();
    return;
  }
  if (!form) return;
  var radio = form.querySelector('input[type="radio"][data-key="' + event.key + '"]');
  if (radio) {
    radio.checked = true;
    radio.focus();
    if (event.key === "c") form.querySelector("textarea").focus();
    event.preventDefault();
  }
});
