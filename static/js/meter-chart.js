/*
 * The meter page's interval chart (uPlot, vendored in static/vendor/uplot/).
 *
 * Data comes from the JSON data island <script type="application/json" id="meter-chart-data">
 * written by demo/site/usage.py chart_data(): a regular grid of UTC epochs t0 + i * step, and
 * per series integers in units of 1/scale ("mean", plus "min"/"max" when downsampled). x stays
 * in UTC epochs (DST never makes it go backwards); "tz" lists the meter's UTC offsets over
 * time ([[epoch, offset], ...], from ESPI LocalTimeParameters) and uPlot's tzDate hook labels
 * the axis and legend in the meter's local time, whatever the browser's time zone.
 *
 * Zoom: drag across the chart (uPlot); double-click or "Reset zoom" to go back. When the data
 * is downsampled, a link offers the zoomed dates at full resolution (a new page load).
 * Without this script the page still shows every number in its tables.
 */
(function () {
  "use strict";

  var HEIGHT = 352;
  var FALLBACK_COLORS = { forward: "#0b5cad", reverse: "#1d6b35", net: "#5b3fa6" };

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function rgba(color, alpha) {
    var m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color);
    if (m) {
      return "rgba(" + parseInt(m[1], 16) + "," + parseInt(m[2], 16) + "," + parseInt(m[3], 16) + "," + alpha + ")";
    }
    m = /^rgba?\(\s*(\d+)[,\s]+(\d+)[,\s]+(\d+)/i.exec(color);
    if (m) {
      return "rgba(" + m[1] + "," + m[2] + "," + m[3] + "," + alpha + ")";
    }
    return "rgba(60,76,94," + alpha + ")";
  }

  function scaled(values, scale) {
    var out = new Array(values.length);
    for (var i = 0; i < values.length; i++) {
      out[i] = values[i] === null ? null : values[i] / scale;
    }
    return out;
  }

  function localClock(changes) {
    // changes: [[epoch, offset seconds], ...] sorted; the offset in force at ts
    function offsetAt(ts) {
      var off = changes.length ? changes[0][1] : 0;
      for (var i = 0; i < changes.length && changes[i][0] <= ts; i++) {
        off = changes[i][1];
      }
      return off;
    }
    // a Date whose *local* fields show the meter's wall-clock time (what uPlot's tzDate expects)
    function tzDate(ts) {
      var d = new Date((ts + offsetAt(ts)) * 1000);
      return new Date(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours(),
                      d.getUTCMinutes(), d.getUTCSeconds());
    }
    function isoDate(ts) {
      var d = tzDate(ts);
      var m = d.getMonth() + 1, day = d.getDate();
      return d.getFullYear() + "-" + (m < 10 ? "0" : "") + m + "-" + (day < 10 ? "0" : "") + day;
    }
    return { tzDate: tzDate, isoDate: isoDate };
  }

  function build(host, data) {
    var clock = localClock(data.tz || []);
    var n = data.n, xs = new Array(n);
    for (var i = 0; i < n; i++) {
      xs[i] = data.t0 + i * data.step;
    }
    var unit = data.unit || "";
    var fmt = function (u, v) { return v == null ? "—" : v.toFixed(2) + " " + unit; };
    var series = [{ label: "Local time", value: "{YYYY}-{MM}-{DD} {HH}:{mm}" }];
    var columns = [xs];
    var bands = [];
    var bandRows = [];

    // net first, thin and dashed: drawn under the two flows it is made of
    var ordered = data.series.filter(function (s) { return s.key === "net"; })
      .concat(data.series.filter(function (s) { return s.key !== "net"; }));
    ordered.forEach(function (s) {
      var net = s.key === "net";
      var color = cssVar("--chart-" + s.key, FALLBACK_COLORS[s.key] || "#3e4c5e");
      if (s.min && s.max) {
        columns.push(scaled(s.max, s.scale));
        series.push({ label: s.label + " max", stroke: rgba(color, 0.35), width: 1, value: fmt, spanGaps: false });
        var maxIdx = series.length - 1;
        columns.push(scaled(s.min, s.scale));
        series.push({ label: s.label + " min", stroke: rgba(color, 0.35), width: 1, value: fmt, spanGaps: false });
        var minIdx = series.length - 1;
        bands.push({ series: [maxIdx, minIdx], fill: rgba(color, 0.14) });
        bandRows.push(maxIdx, minIdx);
      }
      columns.push(scaled(s.mean, s.scale));
      series.push({ label: s.label + (s.min ? " (mean)" : ""), stroke: color, width: net ? 1 : 1.5,
                    dash: net ? [5, 3] : undefined, value: fmt, spanGaps: false });
    });

    var axisColor = cssVar("--chart-axis", "#3b4656");
    var gridColor = cssVar("--chart-grid", "#dde2e9");
    var opts = {
      width: Math.max(280, host.clientWidth),
      height: HEIGHT,
      tzDate: clock.tzDate,
      series: series,
      bands: bands,
      scales: { x: { time: true } },
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      axes: [
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor } },
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor },
          label: unit, size: 64, values: function (u, splits) {
            return splits.map(function (v) { return v == null ? "" : +v.toFixed(3) + ""; });
          } }
      ],
      hooks: { setScale: [function (u, key) { if (key === "x") { zoomed(u); } }] }
    };

    host.textContent = "";
    var chart = new uPlot(opts, columns, host);
    var rows = chart.root.querySelectorAll(".u-legend .u-series");
    bandRows.forEach(function (idx) {
      if (rows[idx]) { rows[idx].classList.add("is-band"); }
    });

    var reset = document.getElementById("chart-reset");
    var detail = document.getElementById("chart-detail");
    function zoomed(u) {
      var min = u.scales.x.min, max = u.scales.x.max;
      var isZoomed = min > xs[0] + data.step / 2 || max < xs[n - 1] - data.step / 2;
      if (reset) { reset.hidden = !isZoomed; }
      if (detail) {
        detail.hidden = !isZoomed || data.full_resolution;
        if (isZoomed) {
          var url = new URL(detail.getAttribute("href"), window.location.href);
          url.search = "?from=" + clock.isoDate(min) + "&to=" + clock.isoDate(max);
          detail.href = url.pathname + url.search;
        }
      }
    }
    if (reset) {
      reset.addEventListener("click", function () {
        chart.setScale("x", { min: xs[0], max: xs[n - 1] });
      });
    }
    if (typeof ResizeObserver === "function") {
      var lastWidth = host.clientWidth;
      new ResizeObserver(function () {
        var width = host.clientWidth;
        if (width > 0 && Math.abs(width - lastWidth) > 4) {
          lastWidth = width;
          chart.setSize({ width: Math.max(280, width), height: HEIGHT });
        }
      }).observe(host);
    }
    host.setAttribute("data-chart-ready", "true");
    return chart;
  }

  function start() {
    var island = document.getElementById("meter-chart-data");
    var host = document.getElementById("meter-chart");
    if (!island || !host || typeof uPlot !== "function") { return; }
    var data;
    try {
      data = JSON.parse(island.textContent);
    } catch (e) {
      return;   // the tables still show everything
    }
    if (!data || !data.n || !data.series || !data.series.length) { return; }
    build(host, data);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
