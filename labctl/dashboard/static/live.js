// Live pages: re-fetch the page's fragment (#live's data-live) every data-every ms and swap it
// in. Plain JavaScript, no library, nothing from outside the app.
(function () {
  "use strict";
  var box = document.getElementById("live");
  if (!box || !box.dataset.live) {
    return;
  }
  var every = parseInt(box.dataset.every || "5000", 10);
  function tick() {
    fetch(box.dataset.live, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) {
          window.location.assign("/login");
          return null;
        }
        if (!r.ok) {
          throw new Error("HTTP " + r.status);
        }
        return r.text();
      })
      .then(function (html) {
        if (html !== null) {
          box.innerHTML = html;
          box.classList.remove("stale");
        }
      })
      .catch(function () {
        box.classList.add("stale"); // the server is gone or failing: say so, keep trying
      })
      .finally(function () {
        window.setTimeout(tick, every);
      });
  }
  window.setTimeout(tick, every);
})();
