// The compare view: the probe beside one candidate identity.
// Left/Right step through the identities, Up/Down through the captures of the current one,
// "f" flickers the two aligned chips in one frame (again to stop), "o" overlays them
// (the candidate over the probe at half opacity), Enter goes back to the case with the current
// capture chosen in the decision form, Escape goes back to the case.
// The roster comes from the page (a JSON data block); a hidden score is not in it.
(function () {
  "use strict";
  var FLICKER_MS = 500;
  var root = document.getElementById("compare");
  if (!root) return;
  var roster = JSON.parse(document.getElementById("roster").textContent);
  var probe = JSON.parse(document.getElementById("probe-data").textContent);
  var caseUrl = root.getAttribute("data-case-url");
  var at = Number(root.getAttribute("data-at"));
  var capture = Number(root.getAttribute("data-capture"));
  var mode = "";
  var timer = null;

  function byId(id) { return document.getElementById(id); }
  var image = byId("candidate-image");
  var frame = byId("frame");
  var frameProbe = byId("frame-probe");
  var frameCandidate = byId("frame-candidate");

  function current() {
    return roster.length ? roster[at].captures[capture] : null;
  }

  function compareUrl(index) {
    return caseUrl + "/compare?candidate=" + encodeURIComponent(roster[index].captures[0].id);
  }

  function show() {
    var shown = current();
    if (!shown) return;
    byId("position").textContent = "candidate " + (at + 1) + " of " + roster.length;
    byId("candidate-label").textContent = shown.label;
    byId("candidate-id").textContent = shown.id;
    byId("candidate-score").textContent = shown.score ? "score " + shown.score : "";
    var summary = byId("candidate-summary");
    summary.textContent = shown.summary;
    summary.title = shown.summary;
    image.hidden = !shown.src;
    if (shown.src) {
      image.src = shown.src;
      image.alt = shown.kind + " of " + shown.id;
    }
    if (mode) frameCandidate.src = shown.src;
    byId("previous").href = compareUrl(Math.max(at - 1, 0));
    byId("next").href = compareUrl(Math.min(at + 1, roster.length - 1));
    byId("choose").href = caseUrl + "?choose=" + encodeURIComponent(shown.id);
    history.replaceState(null, "", caseUrl + "/compare?candidate=" + encodeURIComponent(shown.id));
  }

  function step(by) {
    if (!roster.length) return;
    var next = Math.min(Math.max(at + by, 0), roster.length - 1);
    if (next === at) return;
    at = next;
    capture = 0;
    show();
  }

  function stepCapture(by) {
    if (!roster.length) return;
    var next = Math.min(Math.max(capture + by, 0), roster[at].captures.length - 1);
    if (next === capture) return;
    capture = next;
    show();
  }

  var flips = 0;

  function showing(which) {
    // In the flicker, one chip at a time; the frame says which and how many times it changed.
    flips += 1;
    frame.setAttribute("data-flips", String(flips));
    frame.setAttribute("data-showing", which);
    frameCandidate.style.visibility = which === "candidate" ? "visible" : "hidden";
  }

  function setMode(wanted) {
    var next = wanted === mode ? "" : wanted;
    if (timer !== null) {
      clearInterval(timer);
      timer = null;
    }
    mode = next;
    frame.setAttribute("data-mode", mode);
    frame.hidden = !mode;
    var shown = current();
    if (!mode || !shown) {
      frame.setAttribute("data-showing", "");
      return;
    }
    frameProbe.src = probe.src;
    frameCandidate.src = shown.src;
    if (mode === "overlay") {
      byId("frame-caption").textContent = "Overlay: candidate over probe at 50%";
      frameCandidate.style.opacity = "0.5";
      frame.setAttribute("data-showing", "both");
      frameCandidate.style.visibility = "visible";
    } else {
      byId("frame-caption").textContent = "Flicker: probe, candidate, probe…";
      frameCandidate.style.opacity = "1";
      showing("probe");
      timer = setInterval(function () {
        showing(frame.getAttribute("data-showing") === "probe" ? "candidate" : "probe");
      }, FLICKER_MS);
    }
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    var target = event.target;
    var tag = target && target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    var handled = true;
    switch (event.key) {
      case "ArrowRight": step(1); break;
      case "ArrowLeft": step(-1); break;
      case "ArrowDown": stepCapture(1); break;
      case "ArrowUp": stepCapture(-1); break;
      case "f": setMode("flicker"); break;
      case "o": setMode("overlay"); break;
      case "Escape": window.location.href = caseUrl; break;
      case "Enter":
        if (tag === "A" || tag === "BUTTON") { handled = false; break; }  // their own action
        window.location.href = byId("choose").href;
        break;
      default: handled = false;
    }
    if (handled) event.preventDefault();
  });
})();
