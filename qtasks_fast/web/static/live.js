/* Live updates of the WebView: one server-sent event stream per page (htmx's SSE extension on #live, fed by
   /api/v1/events), turned into a throttled "qtf-refresh" event on <body> that the live regions of a page listen
   to (hx-trigger="qtf-refresh from:body": they fetch the page again and swap their part).

   - The stream resumes where it stopped: a browser's own reconnect sends Last-Event-ID, and a stream opened
     again after the extension's retry (or for other rows, below) asks for ?after=<last event id>; the server
     then says what changed since. A stream opened afresh (a new page, a tab shown again) refreshes the page
     once, when the server says where it starts watching.
   - While the tab is hidden the stream is closed and no refresh or poll is sent; when it shows again the stream
     reopens and the page refreshes once (what happened meanwhile is in that fetch: nothing is replayed).
   - A status change is on screen within a second: the server signals a change as it comes, at most one per
     0.8 s, refreshes are at most one per REFRESH_GAP ms (a burst of thousands of events is one refresh, then
     one per gap while it lasts; a gap under a second leaves room for the fetch) and the last change always
     gets one.
   - A page without a data-watch region (counts; the Tasks table unfiltered, or filtered on an error text or a
     time, which no watch takes) opens the stream with
     ?summary=true: one small frame at most four times a second while the fleet changes, instead of every event
     (at 20,000 tasks/s, 60,000 events a second per tab); the server reads no event for it.
   - Only a change the tab shows refreshes it: a live region with data-watch says what it shows (the Tasks
     table: its task name, queue, worker and status filters and its page, limit and cursor; a task's page: its
     uuid) and the page opens ?watch=true with that filter: the server reads that page of that filter a few
     times a second while the fleet moves and sends an "event: changed" frame, at most one per 0.8 s, only when
     it changed (a tab filtered on one task name hears nothing of the others; a table paged back hears its own
     rows).
     A table filtered on a worker also names its rows' uuids (their records are read: a worker's rows are no
     index's); when a refresh brings other rows, the stream is reopened for them, resuming from the last frame.
   A file, not an inline script: the Content-Security-Policy allows scripts from 'self' only. */
(function () {
  'use strict';
  var REFRESH_GAP = 800;
  // rows named in a watch stream at most (a longer table names none: the server reads its page of its filter);
  // 100 uuids keep the URL under 4 KB, within what proxies take for a request line (nginx: 8 KB)
  var ROWS = 100;
  var lastId = '';
  var source = null;
  var watched = null; // the filter of the open watch stream (to see whether a refresh changed it)
  var timer = null;
  var due = false;

  function indicator(state, text) {
    var el = document.getElementById('live');
    if (el) {
      el.className = 'live ' + state;
      el.textContent = text;
    }
  }

  function fire() {
    due = false;
    htmx.trigger(document.body, 'qtf-refresh');
    timer = setTimeout(function () {
      timer = null;
      if (due) fire();
    }, REFRESH_GAP);
  }

  function refresh() {
    if (document.hidden) return;
    if (timer) {
      due = true;
    } else {
      fire();
    }
  }

  // the query of what the page shows, for ?watch=true (see the header)
  function watchQuery() {
    var region = document.querySelector('[data-watch]');
    if (!region) return '';
    var d = region.dataset;
    if (d.watchUuid) return '&uuid=' + encodeURIComponent(d.watchUuid);
    var fields = {task_name: d.watchTask_name, queue: d.watchQueue, worker_id: d.watchWorker_id,
      status: d.watchStatus, limit: d.watchLimit, cursor: d.watchCursor};
    var rows = [];
    if (fields.worker_id) {
      region.querySelectorAll('[data-uuid]').forEach(function (r) { rows.push(r.dataset.uuid); });
      if (rows.length > ROWS) rows = [];
    }
    var q = '';
    Object.keys(fields).forEach(function (k) {
      if (fields[k]) q += '&' + k + '=' + encodeURIComponent(fields[k]);
    });
    if (rows.length) q += '&uuid=' + encodeURIComponent(rows.join(','));
    return q;
  }

  htmx.createEventSource = function (url) {
    var watching = url.indexOf('watch=true') >= 0;
    if (watching) {
      watched = watchQuery();
      url += watched;
    }
    var resumed = !!lastId;
    if (lastId) url += (url.indexOf('?') < 0 ? '?' : '&') + 'after=' + encodeURIComponent(lastId);
    var es = new EventSource(url, {withCredentials: true});
    source = es;
    es.addEventListener('open', function () {
      indicator('on', 'live');
      if (!watching && !resumed) refresh(); // what changed between the page's render and this stream
    });
    es.addEventListener('error', function () {
      if (source === es) indicator('off', 'reconnecting');
    });
    // a watch stream: where the server starts watching (a fresh stream refreshes once: what changed between the
    // page's render and that point), then a frame per change it shows, at most one per 0.8 s
    es.addEventListener('watching', function (e) {
      if (e.lastEventId) lastId = e.lastEventId;
      if (!resumed) refresh();
      resumed = true; // the browser's own reconnect sends Last-Event-ID: the server says what changed
    });
    es.addEventListener('changed', function (e) {
      if (e.lastEventId) lastId = e.lastEventId;
      refresh();
    });
    // a page of counts (Overview, Queues, ...) follows ?summary=true: a frame of counts (a full state) at most four
    // times a second while the fleet changes, however fast it goes, instead of every event
    es.addEventListener('counts', function (e) {
      if (e.lastEventId) lastId = e.lastEventId;
      refresh();
    });
    return es;
  };

  // a changed attribute makes htmx set the node up again: the extension opens a new stream
  function reopen(el) {
    if (source) source.close();
    source = null;
    el.setAttribute('data-opened', String(Date.now()));
    htmx.process(el);
  }

  // a refresh brought other rows into a table that names its rows: watch those (from the last frame: no gap)
  document.addEventListener('htmx:afterSettle', function () {
    var el = document.getElementById('live');
    if (!el || !source || document.hidden || watched === null || watchQuery() === watched) return;
    reopen(el);
  });

  document.addEventListener('visibilitychange', function () {
    var el = document.getElementById('live');
    if (!el) return;
    if (document.hidden) {
      if (source) source.close();
      source = null;
      indicator('paused', 'paused');
    } else {
      lastId = ''; // afresh: the refresh below shows what happened meanwhile (a hidden hour is not replayed)
      reopen(el);
      refresh();
    }
  });

  // polls (hx-trigger "every 1s") and refreshes wait while the tab is hidden
  document.addEventListener('htmx:beforeRequest', function (e) {
    if (document.hidden && e.detail.requestConfig && e.detail.requestConfig.verb === 'get') e.preventDefault();
  });
})();
