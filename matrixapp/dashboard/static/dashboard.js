// Refreshes the live part of the page every few seconds without reloading
// it; forms and the search field outside it keep what was typed. Without
// JavaScript the page works the same, refreshed by reloading.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var note = document.getElementById("live-note");
  if (!live || !window.fetch) {
    return;
  }
  var every = 5000;
  function refresh() {
    if (document.hidden) {
      return;
    }
    fetch(live.getAttribute("data-src"), { credentials: "same-origin", cache: "no-store" })
      .then(function (resp) {
        if (resp.status === 401) {
          // The session ended: show the login form.
          window.location.reload();
          return null;
        }
        if (!resp.ok) {
          throw new Error("HTTP " + resp.status);
        }
        return resp.text();
      })
      .then(function (html) {
        if (html === null) {
          return;
        }
        live.innerHTML = html;
        note.textContent = note.getAttribute("data-live");
        note.classList.remove("failed");
      })
      .catch(function () {
        note.textContent = note.getAttribute("data-paused");
        note.classList.add("failed");
      });
  }
  setInterval(refresh, every);
})();
