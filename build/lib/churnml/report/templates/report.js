(function () {
  "use strict";
  var table = document.getElementById("accounts");
  var dataEl = document.getElementById("portfolio-data");
  if (!table || !dataEl) { return; }
  // Every account is embedded as JSON (inert: the policy runs only this script); pages are built from it.
  var all = JSON.parse(dataEl.textContent);
  var body = table.tBodies[0];
  var pageSize = parseInt(table.getAttribute("data-page-size"), 10) || 50;
  var filters = Array.prototype.slice.call(document.querySelectorAll("#accounts-section [data-filter]"));
  var callCsm = document.getElementById("callcsm");
  var search = document.getElementById("search");
  var count = document.getElementById("count");
  var empty = document.getElementById("empty");
  var prev = document.getElementById("prev");
  var next = document.getElementById("next");
  var pageInfo = document.getElementById("pageinfo");
  var fields = { segment: "s", touch: "t", csm: "c", tier: "ti" };
  var page = 0;
  var matches = all;
  var sortKey = "k";
  var sortKind = "num";
  var descending = true;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function spark(values) {
    if (!values.length) { return el("span", "muted", "no usage data"); }
    var ns = "http://www.w3.org/2000/svg";
    var w = 132, h = 32, pad = 3;
    var top = Math.max.apply(null, values.concat([1e-9]));
    var n = values.length;
    var pts = values.map(function (v, i) {
      var x = pad + i * (w - 2 * pad) / Math.max(n - 1, 1);
      var y = h - pad - (v / top) * (h - 2 * pad);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    var mean = function (xs) { return xs.length ? xs.reduce(function (a, b) { return a + b; }, 0) / xs.length : 0; };
    var recent = mean(values.slice(-4));
    var prior = n >= 8 ? mean(values.slice(-8, -4)) : mean(values.slice(0, Math.max(n - 4, 1)));
    var change = prior > 0 ? (recent - prior) / prior : (recent === 0 ? 0 : 1);
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "spark " + (change <= -0.2 ? "down" : (change >= 0.1 ? "up" : "flat")));
    svg.setAttribute("width", w); svg.setAttribute("height", h); svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "Active users, last " + n + " weeks: last 4 weeks " + (change * 100).toFixed(0) + "% vs the 4 before");
    var line = document.createElementNS(ns, "polyline");
    line.setAttribute("class", "line"); line.setAttribute("points", pts.join(" "));
    svg.appendChild(line);
    return svg;
  }

  function reasonList(items, cls, icon) {
    var out = [];
    items.forEach(function (item) {
      var li = el("li", cls);
      li.appendChild(el("span", "ic", icon));
      li.appendChild(document.createTextNode(" " + item[0] + " "));
      li.appendChild(el("span", "pts", item[1]));
      out.push(li);
    });
    return out;
  }

  function cell(tr, cls, text) {
    var td = el("td", cls, text);
    tr.appendChild(td);
    return td;
  }

  function row(r) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-segment", r.s); tr.setAttribute("data-touch", r.t);
    tr.setAttribute("data-csm", r.c); tr.setAttribute("data-tier", r.ti); tr.setAttribute("data-account", r.i);
    var acct = cell(tr, "acctcell");
    acct.appendChild(el("div", "acct", r.n));
    acct.appendChild(el("div", "muted small", r.i + " \u00b7 " + r.sl + " \u00b7 " + r.tl));
    var csm = cell(tr, "");
    if (r.c) { csm.textContent = r.c; } else { csm.appendChild(el("span", "muted", "pooled")); }
    cell(tr, "num", r.af);
    var risk = cell(tr, "num");
    risk.appendChild(el("span", "risk", r.rf)); risk.appendChild(document.createElement("br"));
    risk.appendChild(el("span", "pill tier-" + r.ti, r.ti));
    cell(tr, "num strong", r.kf);
    var exp = cell(tr, "num", r.ef);
    if (r.x) { exp.appendChild(document.createElement("br")); exp.appendChild(el("span", "pill exp", "likely")); }
    cell(tr, "num" + (r.d !== null && r.d <= 90 && r.b !== "monthly" ? " soon" : ""), r.df + (r.b === "monthly" ? " (monthly)" : ""));
    var sp = cell(tr, "sparkcell"); sp.appendChild(spark(r.sp));
    // churn and expansion reasons: two labelled lists, each with the points of its own probability
    var why = cell(tr, "reasons");
    why.appendChild(el("div", "listhead", "Churn"));
    var ul = el("ul");
    reasonList(r.u, "up", "\u25b2").concat(reasonList(r.w, "down", "\u25bc")).forEach(function (li) { ul.appendChild(li); });
    if (ul.childNodes.length) { why.appendChild(ul); } else { why.appendChild(el("div", "muted small", "no reason above the minimum size")); }
    var ul2 = el("ul");
    reasonList(r.eu, "exp", "\u25c6").concat(reasonList(r.ed, "expdown", "\u25c7")).forEach(function (li) { ul2.appendChild(li); });
    if (ul2.childNodes.length) { why.appendChild(el("div", "listhead", "Expansion")); why.appendChild(ul2); }
    if (r.cx.length) { why.appendChild(el("div", "context muted small", "Context: " + r.cx.join(" \u00b7 "))); }
    cell(tr, "play", r.p);
    return tr;
  }

  function wanted() {
    var want = {};
    filters.forEach(function (f) { if (f.value) { want[f.getAttribute("data-filter")] = f.value; } });
    return want;
  }

  function render() {
    var pages = Math.max(1, Math.ceil(matches.length / pageSize));
    page = Math.min(page, pages - 1);
    while (body.firstChild) { body.removeChild(body.firstChild); }
    matches.slice(page * pageSize, (page + 1) * pageSize).forEach(function (r) { body.appendChild(row(r)); });
    count.textContent = matches.length.toLocaleString("en-US");
    empty.hidden = matches.length !== 0;
    pageInfo.textContent = matches.length ? ("page " + (page + 1) + " of " + pages + " (accounts " + (page * pageSize + 1) + "\u2013" + Math.min((page + 1) * pageSize, matches.length) + ")") : "";
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  }

  function apply() {
    var want = wanted();
    var query = search ? search.value.trim().toLowerCase() : "";
    matches = all.filter(function (r) {
      var ok = Object.keys(want).every(function (key) { return r[fields[key]] === want[key]; });
      if (ok && query) { ok = (r.n + " " + r.i).toLowerCase().indexOf(query) !== -1; }
      return ok;
    });
    sort();
    // the per-CSM view: the call list and the change tables follow the CSM picked
    var csm = want.csm || "";
    if (callCsm) { callCsm.value = csm; }
    var calls = 0;
    Array.prototype.forEach.call(document.querySelectorAll("#calls tbody tr, #changes tbody tr, #renewals tbody tr"), function (tr) {
      tr.hidden = csm !== "" && tr.getAttribute("data-csm") !== csm;
      if (!tr.hidden && tr.closest("#calls")) { calls += 1; }
    });
    var callCount = document.getElementById("callcount");
    if (callCount) { callCount.textContent = calls.toLocaleString("en-US"); }
    render();
  }

  function sort() {
    matches.sort(function (a, b) {
      var x = a[sortKey], y = b[sortKey];
      if (sortKind === "num") { x = x === null ? 1e12 : x; y = y === null ? 1e12 : y; } else { x = String(x).toLowerCase(); y = String(y).toLowerCase(); }
      var order = x < y ? -1 : (x > y ? 1 : 0);
      return descending ? -order : order;
    });
  }

  var headers = Array.prototype.slice.call(table.querySelectorAll("th[data-sort]"));
  headers.forEach(function (th) {
    th.querySelector("button").addEventListener("click", function () {
      descending = th.getAttribute("aria-sort") !== "descending";
      sortKey = th.getAttribute("data-sort");
      sortKind = th.getAttribute("data-kind");
      headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      sort();
      page = 0;
      render();
    });
  });
  prev.addEventListener("click", function () { page -= 1; render(); });
  next.addEventListener("click", function () { page += 1; render(); });

  // Filters live in the address (#csm=csm_0003&tier=critical): a CSM's view can be bookmarked or shared.
  function fromHash() {
    var pairs = window.location.hash.replace(/^#/, "").split("&");
    pairs.forEach(function (pair) {
      var parts = pair.split("=");
      if (parts.length !== 2) { return; }
      var key = decodeURIComponent(parts[0]);
      var value = decodeURIComponent(parts[1]);
      if (key === "q" && search) { search.value = value; return; }
      filters.forEach(function (f) {
        var known = Array.prototype.some.call(f.options, function (o) { return o.value === value; });
        if (f.getAttribute("data-filter") === key && known) { f.value = value; }
      });
    });
  }

  function toHash() {
    var parts = [];
    filters.forEach(function (f) {
      if (f.value) { parts.push(encodeURIComponent(f.getAttribute("data-filter")) + "=" + encodeURIComponent(f.value)); }
    });
    if (search && search.value.trim()) { parts.push("q=" + encodeURIComponent(search.value.trim())); }
    try {
      window.history.replaceState(null, "", parts.length ? "#" + parts.join("&") : window.location.pathname);
    } catch (ignored) {
      // Some viewers forbid changing the address of a local file; filtering still works.
    }
  }

  function update() { page = 0; apply(); toHash(); }

  filters.forEach(function (f) { f.addEventListener("change", update); });
  if (callCsm) {
    callCsm.addEventListener("change", function () {
      filters.forEach(function (f) { if (f.getAttribute("data-filter") === "csm") { f.value = callCsm.value; } });
      update();
    });
  }
  if (search) { search.addEventListener("input", update); }
  fromHash();
  apply();
  document.body.setAttribute("data-ready", "1");
})();
