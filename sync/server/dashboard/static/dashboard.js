/* certsync dashboard: filter the certificates table in the browser as the form changes (the same
   rules the server applies to the submitted form; without script, the form still works). */
(function () {
  "use strict";
  var form = document.getElementById("filters");
  var table = document.getElementById("certificates");
  if (!form || !table) { return; }
  var rows = Array.prototype.slice.call(table.tBodies[0].rows).map(function (tr) {
    var d = tr.dataset;
    return { tr: tr, name: d.name.toLowerCase(), serial: d.serial.toLowerCase(), profile: d.profile, ca: d.ca,
             state: d.state, days: parseFloat(d.days), destinations: d.destinations ? d.destinations.split(" ") : [] };
  });
  var shown = document.getElementById("shown"), drawn = document.getElementById("drawn");
  var capped = document.getElementById("capped");
  // Only the first `limit` matching rows are laid out (0: all): every row is in the page, but a
  // browser spends seconds laying out thousands of table rows. "Show all" lifts the cap.
  var limit = parseInt(table.dataset.limit, 10) || 0;
  document.getElementById("show-all").addEventListener("click", function (event) {
    event.preventDefault(); limit = 0; apply();
  });

  function matches(r, f) {
    if (f.q && r.name.indexOf(f.q) < 0 && r.serial.indexOf(f.q) < 0) { return false; }
    if (f.profile && r.profile !== f.profile) { return false; }
    if (f.ca && r.ca !== f.ca) { return false; }
    if (f.state && r.state !== f.state) { return false; }
    if (f.destination && r.destinations.indexOf(f.destination) < 0) { return false; }
    if (f.expiring && !(r.state === "active" && r.days <= parseInt(f.expiring, 10))) { return false; }
    return true;
  }

  function apply() {
    var started = performance.now();
    var data = new FormData(form), f = {}, params = new URLSearchParams();
    data.forEach(function (value, key) {
      f[key] = key === "q" ? String(value).trim().toLowerCase() : String(value);
      if (value) { params.set(key, value); }
    });
    var count = 0;
    for (var i = 0; i < rows.length; i++) {
      var match = matches(rows[i], f);
      var visible = match && (limit === 0 || count < limit);
      if (match) { count++; }
      if (rows[i].tr.hidden === visible) { rows[i].tr.hidden = !visible; }
    }
    shown.textContent = String(count);
    drawn.textContent = String(limit === 0 ? count : Math.min(count, limit));
    capped.hidden = limit === 0 || count <= limit;
    var query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
    table.dataset.filterMs = String(performance.now() - started);
  }

  var timer = null;
  form.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(apply, 80); });
  form.addEventListener("change", apply);
  form.addEventListener("submit", function (event) { event.preventDefault(); apply(); });
  window.certsyncFilter = apply;       // the benchmark calls it to time one filtering pass
})();
