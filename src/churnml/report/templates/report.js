(function () {
  "use strict";
  var table = document.getElementById("accounts");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var filters = Array.prototype.slice.call(document.querySelectorAll("[data-filter]"));
  var search = document.getElementById("search");
  var count = document.getElementById("count");
  var empty = document.getElementById("empty");

  function apply() {
    var want = {};
    filters.forEach(function (el) { if (el.value) { want[el.getAttribute("data-filter")] = el.value; } });
    var query = search ? search.value.trim().toLowerCase() : "";
    var shown = 0;
    rows.forEach(function (row) {
      var ok = Object.keys(want).every(function (key) { return row.getAttribute("data-" + key) === want[key]; });
      if (ok && query) { ok = (row.getAttribute("data-name") || "").indexOf(query) !== -1; }
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown.toLocaleString("en-US");
    empty.hidden = shown !== 0;
  }

  function cellValue(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent;
    return numeric ? parseFloat(raw) : raw.toLowerCase();
  }

  var headers = Array.prototype.slice.call(table.querySelectorAll("th[data-sort]"));
  headers.forEach(function (th) {
    th.querySelector("button").addEventListener("click", function () {
      var numeric = th.getAttribute("data-sort") === "num";
      var descending = th.getAttribute("aria-sort") !== "descending";
      var index = th.cellIndex;
      headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      rows.sort(function (a, b) {
        var x = cellValue(a, index, numeric);
        var y = cellValue(b, index, numeric);
        var order = x < y ? -1 : (x > y ? 1 : 0);
        return descending ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });

  // Filters live in the address (#csm=csm_0003&tier=critical): a filtered view can be bookmarked or shared.
  function fromHash() {
    var pairs = window.location.hash.replace(/^#/, "").split("&");
    pairs.forEach(function (pair) {
      var parts = pair.split("=");
      if (parts.length !== 2) { return; }
      var key = decodeURIComponent(parts[0]);
      var value = decodeURIComponent(parts[1]);
      if (key === "q" && search) { search.value = value; return; }
      filters.forEach(function (el) {
        var known = Array.prototype.some.call(el.options, function (o) { return o.value === value; });
        if (el.getAttribute("data-filter") === key && known) { el.value = value; }
      });
    });
  }

  function toHash() {
    var parts = [];
    filters.forEach(function (el) {
      if (el.value) { parts.push(encodeURIComponent(el.getAttribute("data-filter")) + "=" + encodeURIComponent(el.value)); }
    });
    if (search && search.value.trim()) { parts.push("q=" + encodeURIComponent(search.value.trim())); }
    try {
      window.history.replaceState(null, "", parts.length ? "#" + parts.join("&") : window.location.pathname);
    } catch (ignored) {
      // Some viewers forbid changing the address of a local file; filtering still works.
    }
  }

  function update() { apply(); toHash(); }

  filters.forEach(function (el) { el.addEventListener("change", update); });
  if (search) { search.addEventListener("input", update); }
  fromHash();
  apply();
  document.body.setAttribute("data-ready", "1");
})();
