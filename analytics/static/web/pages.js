/* Draws every <div data-chart> from the JSON the server embedded (json_script); no other request. */
(function () {
  "use strict";
  var human = window.layerlensSizes.human;  // sizes.js: decimal units, like docker
  function short(s, n) { s = s || ""; return s.length > n ? s.slice(0, n - 1) + "…" : s; }
  var bytesAxis = { type: "value", axisLabel: { formatter: human } };
  var tip = { trigger: "axis", valueFormatter: human };
  var COLORS = { shared: "#4e79a7", unique: "#f28e2b", logical: "#bab0ac", stored: "#4e79a7", saved: "#59a14f" };

  var builders = {
    summary: function (rows) {
      return {
        tooltip: tip, legend: {}, grid: { containLabel: true, left: 10, right: 10 },
        xAxis: { type: "category", data: rows.map(function (r) { return r.name; }) },
        yAxis: bytesAxis,
        series: ["logical_bytes", "stored_bytes", "saved_bytes"].map(function (k) {
          var name = k.split("_")[0];
          return { name: name, type: "bar", color: COLORS[name], data: rows.map(function (r) { return r[k]; }) };
        })
      };
    },
    trend: function (rows) {
      return {
        tooltip: tip, legend: {}, grid: { containLabel: true, left: 10, right: 20 },
        xAxis: { type: "time" }, yAxis: bytesAxis,
        series: ["logical_bytes", "stored_bytes", "saved_bytes"].map(function (k) {
          var name = k.split("_")[0];
          return {
            name: name, type: "line", color: COLORS[name], showSymbol: true,
            data: rows.map(function (r) { return [r.taken_at, r[k]]; })
          };
        })
      };
    },
    policies: function (policies) {
      // one line per saved policy: what its selection would free, at each evaluation
      return {
        tooltip: tip, legend: {}, grid: { containLabel: true, left: 10, right: 20 },
        xAxis: { type: "time" }, yAxis: bytesAxis,
        series: policies.map(function (p) {
          return {
            name: p.name, type: "line", showSymbol: true,
            data: p.points.map(function (r) { return [r.at, r.freed_bytes]; })
          };
        })
      };
    },
    ranked: function (rows, el) {
      var key = el.dataset.key;
      rows = rows.slice().reverse();  // largest at the top
      return {
        tooltip: tip, grid: { containLabel: true, left: 10, right: 80 },
        yAxis: { type: "category", data: rows.map(function (r) { return r.name; }) },
        xAxis: bytesAxis,
        series: [{ type: "bar", color: key === "unique_bytes" ? COLORS.unique : COLORS.stored,
                   data: rows.map(function (r) { return r[key]; }),
                   label: { show: true, position: "right", formatter: function (p) { return human(p.value); } } }]
      };
    },
    layers: function (rows) {
      rows = rows.slice().reverse();
      return {
        tooltip: { trigger: "axis", formatter: function (ps) {
          var r = rows[ps[0].dataIndex];
          return short(r.created_by || r.digest, 120) + "<br>" + r.images + " images · " + human(r.size);
        } },
        grid: { containLabel: true, left: 10, right: 40 },
        yAxis: { type: "category", data: rows.map(function (r) {
          return short(r.created_by || r.digest, 48) + " · " + human(r.size);
        }) },
        xAxis: { type: "value", name: "images holding the layer", nameLocation: "middle", nameGap: 28, minInterval: 1 },
        series: [{ name: "images", type: "bar", color: COLORS.shared, data: rows.map(function (r) { return r.images; }),
                   label: { show: true, position: "right" } }]
      };
    },
    missed: function (rows) {
      return {
        tooltip: tip, legend: {}, grid: { containLabel: true, left: 10, right: 10 },
        xAxis: { type: "category", data: rows.map(function (r) { return short(r.diff_id, 19); }) },
        yAxis: bytesAxis,
        series: [
          { name: "stored", type: "bar", color: COLORS.stored, data: rows.map(function (r) { return r.stored_bytes; }) },
          { name: "would save", type: "bar", color: COLORS.saved, data: rows.map(function (r) { return r.saved_bytes; }) }
        ]
      };
    },
    stack: function (rows) {
      rows = rows.slice().reverse();  // base at the bottom, like dive
      var label = rows.map(function (r) { return "#" + r.position + " " + short(r.created_by || r.digest, 44); });
      function bars(key) {
        return rows.map(function (r) {
          return { value: r[key], itemStyle: { color: r.shared ? COLORS.shared : COLORS.unique, opacity: key === "size" ? 1 : 0.45 } };
        });
      }
      var series = [{ name: "compressed", type: "bar", data: bars("size"),
                      label: { show: true, position: "right", formatter: function (p) {
                        var n = rows[p.dataIndex].images;
                        return human(p.value) + " · " + n + (n === 1 ? " image" : " images"); } } }];
      if (rows.some(function (r) { return r.uncompressed_size !== null; })) {
        series.push({ name: "uncompressed", type: "bar", data: bars("uncompressed_size") });
      }
      return {
        tooltip: tip, grid: { containLabel: true, left: 10, right: 140 },
        yAxis: { type: "category", data: label }, xAxis: bytesAxis, series: series
      };
    },
    partners: function (rows) {
      rows = rows.slice().reverse();
      return {
        tooltip: tip, grid: { containLabel: true, left: 10, right: 30 },
        yAxis: { type: "category", data: rows.map(function (r) { return r.repository + "@" + r.digest.slice(7, 19); }) },
        xAxis: bytesAxis,
        series: [{ name: "shared bytes", type: "bar", color: COLORS.shared, data: rows.map(function (r) { return r.shared_bytes; }) }]
      };
    },
    lineage: function (nodes) {
      var byId = {}, roots = [];
      var max = Math.max.apply(null, nodes.map(function (n) { return n.size_bytes; }).concat([1]));
      nodes.forEach(function (n) {
        byId[n.id] = { name: n.name, value: n.size_bytes, url: n.url, children: [],
                       symbolSize: 8 + 24 * Math.sqrt(n.size_bytes / max) };
      });
      nodes.forEach(function (n) {
        if (n.base && byId[n.base]) byId[n.base].children.push(byId[n.id]); else roots.push(byId[n.id]);
      });
      return {
        tooltip: { formatter: function (p) { return p.name + "<br>" + human(p.value); } },
        series: [{ type: "tree", data: [{ name: "registry", value: 0, symbolSize: 6, children: roots }],
                   top: 20, bottom: 20, left: 90, right: 260, initialTreeDepth: -1, expandAndCollapse: false,
                   label: { position: "left", verticalAlign: "middle", align: "right",
                            formatter: function (p) { return p.name + (p.value ? " (" + human(p.value) + ")" : ""); } },
                   leaves: { label: { position: "right", align: "left" } } }]
      };
    },
    whatif: function (d) {
      return {
        tooltip: tip, grid: { containLabel: true, left: 10, right: 30 },
        yAxis: { type: "category", data: ["freed manifests", "freed blobs", "stays: manifests", "stays: blobs"] },
        xAxis: bytesAxis,
        series: [{ type: "bar", data: [
          { value: d.freed_manifest_bytes, itemStyle: { color: COLORS.saved } },
          { value: d.freed_blob_bytes, itemStyle: { color: COLORS.saved } },
          { value: d.shared_manifest_bytes, itemStyle: { color: COLORS.shared } },
          { value: d.shared_bytes, itemStyle: { color: COLORS.shared } }
        ], label: { show: true, position: "right", formatter: function (p) { return human(p.value); } } }]
      };
    }
  };

  window.layerlensCharts = {};
  document.querySelectorAll("[data-chart]").forEach(function (el) {
    var rows = JSON.parse(document.getElementById(el.dataset.source).textContent);
    if (el.dataset.chart === "lineage" || el.dataset.chart === "stack" || el.dataset.chart === "layers") {
      el.style.height = Math.max(320, 28 * rows.length + 80) + "px";
    }
    var chart = echarts.init(el, null, { renderer: "canvas" });
    var option = builders[el.dataset.chart](rows, el);
    option.animation = false;  // drawn at once: what a screenshot or a reader sees is final
    chart.setOption(option);
    if (el.dataset.chart === "lineage") {
      chart.on("click", function (p) { if (p.data && p.data.url) window.location = p.data.url; });
    }
    window.layerlensCharts[el.id] = chart;
    window.addEventListener("resize", function () { chart.resize(); });
  });
})();
