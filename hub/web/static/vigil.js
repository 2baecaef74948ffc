// vigil hub: sort and filter tables in place (hub/web). Without this file
// the same links and forms work through the server, by query parameters.
"use strict";
(function () {
  function cellValue(row, index) {
    const cell = row.cells[index];
    const v = cell ? cell.getAttribute("data-v") : null;
    return v === null ? (cell ? cell.textContent : "") : v;
  }
  function compare(a, b) {
    const number = /^-?\d+(\.\d+)?(e[-+]?\d+)?$/i;
    if (number.test(a) && number.test(b)) return parseFloat(a) - parseFloat(b);
    if (a === "" && b !== "") return -1;  // no value sorts lowest, as the server does
    if (b === "" && a !== "") return 1;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  function sortBy(table, th) {
    const index = Array.prototype.indexOf.call(th.parentNode.children, th);
    const desc = th.getAttribute("aria-sort") === "ascending";
    for (const other of th.parentNode.children) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", desc ? "descending" : "ascending");
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort(function (r1, r2) {
      const c = compare(cellValue(r1, index), cellValue(r2, index));
      return (desc ? -c : c) || compare(cellValue(r1, 0), cellValue(r2, 0));
    });
    for (const r of rows) body.appendChild(r);
    const params = new URLSearchParams(location.search);
    params.set("sort", th.getAttribute("data-sort"));
    params.set("order", desc ? "desc" : "asc");
    history.replaceState(null, "", "?" + params.toString());
  }
  function filter(table, text, status) {
    const needle = text.trim().toLowerCase();
    for (const row of table.tBodies[0].rows) {
      const ok = (!status || row.getAttribute("data-status") === status) &&
        (!needle || [0, 3].some(function (i) {  // host and version, as the server filters
          return row.cells[i].textContent.toLowerCase().indexOf(needle) >= 0;
        }));
      row.hidden = !ok;
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    for (const table of document.querySelectorAll("table.sortable")) {
      for (const th of table.querySelectorAll("th[data-sort]")) {
        th.addEventListener("click", function (event) {
          event.preventDefault();
          sortBy(table, th);
        });
      }
    }
    const fleet = document.getElementById("fleet");
    const text = document.querySelector("[data-filter=fleet]");
    const status = document.querySelector("[data-filter-status=fleet]");
    if (fleet && text && status) {
      const apply = function () { filter(fleet, text.value, status.value); };
      text.addEventListener("input", apply);
      status.addEventListener("change", apply);
    }
  });
})();
