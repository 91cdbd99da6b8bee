/* Byte sizes for people, the rule of analytics/infra/units.py: decimal units like docker (go-units
   HumanSizeWithPrecision(size, 3)), so 4,803,176 bytes is "4.8 MB". ECharts puts a value axis' ticks at
   1, 2, 3 or 5 x 10^k bytes, which this prints exactly ("2 MB", "300 kB"). */
(function (root) {
  "use strict";
  var UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
  // C's %.3g without the exponent (the value is below 1000 here): 3 significant digits, no trailing zeros.
  function g3(x) { return String(parseFloat(x.toPrecision(3))); }
  function human(n) {
    if (n === null || n === undefined) return "—";
    var sign = n < 0 ? "-" : "", size = Math.abs(n), i = 0;
    while (size >= 1000 && i < UNITS.length - 1) { size /= 1000; i++; }
    // go-units prints 999,999 B as "1e+03kB"; carry the rounding up to the next unit instead
    if (parseFloat(size.toPrecision(3)) >= 1000 && i < UNITS.length - 1) { size /= 1000; i++; }
    return sign + g3(size) + " " + UNITS[i];
  }
  var api = { human: human, UNITS: UNITS };
  if (typeof module === "object" && module.exports) module.exports = api; else root.layerlensSizes = api;
})(this);
