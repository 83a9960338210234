/* The Overview's chart: tasks finished per minute (succeeded, failed, cancelled) from /api/v1/throughput, drawn
   with uPlot, reloaded every RELOAD_MS and on live updates (at most once per RELOAD_MIN_MS), never while the tab
   is hidden. Times on the axis are UTC, like every time of the WebView. */
(function () {
  'use strict';
  var RELOAD_MS = 10000;
  var RELOAD_MIN_MS = 3000;
  var el = document.getElementById('throughput');
  if (!el || typeof uPlot === 'undefined') return;
  var plot = null;
  var busy = false;
  var lastLoad = 0;

  function hhmm(ts) {
    var d = new Date(ts * 1000);
    return ('0' + d.getUTCHours()).slice(-2) + ':' + ('0' + d.getUTCMinutes()).slice(-2);
  }

  function options() {
    return {
      width: Math.max(el.clientWidth, 300),
      height: 220,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'); },
      scales: {y: {range: function (u, min, max) { return [0, Math.max(max, 5)]; }}},
      cursor: {points: {size: 6}},
      series: [
        {value: function (u, ts) { return ts == null ? '--' : hhmm(ts); }},
        {label: 'succeeded', stroke: '#15803d', fill: 'rgba(21, 128, 61, 0.12)', width: 2, points: {show: false}},
        {label: 'failed', stroke: '#b91c1c', fill: 'rgba(185, 28, 28, 0.10)', width: 2, points: {show: false}},
        {label: 'cancelled', stroke: '#6b7280', width: 1.5, points: {show: false}}
      ],
      axes: [{values: function (u, splits) { return splits.map(hhmm); }}, {size: 50}]
    };
  }

  function load() {
    if (document.hidden || busy) return;
    busy = true;
    lastLoad = Date.now();
    fetch(el.getAttribute('data-src'), {credentials: 'same-origin', headers: {accept: 'application/json'}})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error(String(r.status))); })
      .then(function (points) {
        var data = [[], [], [], []];
        points.forEach(function (p) {
          data[0].push(p.minute);
          data[1].push(p.success || 0);
          data[2].push(p.error || 0);
          data[3].push(p.cancel || 0);
        });
        if (plot) {
          plot.setData(data);
        } else {
          plot = new uPlot(options(), data, el);
        }
        el.setAttribute('data-loaded', String(points.length));
      })
      .catch(function () { el.setAttribute('data-loaded', 'error'); })
      .then(function () { busy = false; });
  }

  load();
  setInterval(load, RELOAD_MS);
  document.body.addEventListener('qtf-refresh', function () {
    if (Date.now() - lastLoad >= RELOAD_MIN_MS) load();
  });
  window.addEventListener('resize', function () {
    if (plot) plot.setSize({width: Math.max(el.clientWidth, 300), height: 220});
  });
})();
