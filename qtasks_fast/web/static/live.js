/* Live updates of the WebView: one server-sent event stream per page (htmx's SSE extension on #live, fed by
   /api/v1/events), turned into a throttled "qtf-refresh" event on <body> that the live regions of a page listen
   to (hx-trigger="qtf-refresh from:body": they fetch the page again and swap their part).

   - The stream resumes where it stopped: a browser's own reconnect sends Last-Event-ID, and a stream opened
     again (after a hidden tab, after the extension's retry) asks for ?after=<last event id>.
   - While the tab is hidden the stream is closed and no refresh or poll is sent; when it shows again the stream
     reopens and the page refreshes once.
   - A status change is on screen within a second: the server answers an event as it comes, refreshes are at
     most one per REFRESH_GAP ms (a burst of thousands of events is one refresh, then one per gap while it lasts;
     a gap under a second leaves room for the fetch) and the last event always gets one.
   - A page that only shows counts (no data-watch region) opens the stream with ?summary=true: one small frame at
     most four times a second while the fleet changes, instead of every event (at 20,000 tasks/s, 60,000 events a
     second per tab); the server reads no event for it.
   - Only a change the tab shows refreshes it: a live region with data-watch says what it shows (the Tasks
     table: its task name, queue, worker and status filters, and the uuids of its rows; a task's page: its uuid),
     and an event outside it is ignored (a tab filtered on one task name does not refresh for the others).
   A file, not an inline script: the Content-Security-Policy allows scripts from 'self' only. */
(function () {
  'use strict';
  var REFRESH_GAP = 800;
  var lastId = '';
  var source = null;
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

  // whether the event (a TaskEvent: uuid, task_name, queue, status, worker_id) touches what the page shows
  function shows(ev) {
    var region = document.querySelector('[data-watch]');
    if (!region || !ev) return true; // a page of counts (Overview, Queues, Workers): every change shows
    var d = region.dataset;
    if (d.watchUuid) return ev.uuid === d.watchUuid;
    if (region.querySelector('[data-uuid="' + CSS.escape(ev.uuid) + '"]')) return true; // a row on screen
    if (d.watchTask_name && ev.task_name !== d.watchTask_name) return false;
    if (d.watchQueue && ev.queue !== d.watchQueue) return false;
    if (d.watchWorker_id && ev.worker_id !== d.watchWorker_id) return false;
    if (d.watchStatus && ev.status !== d.watchStatus) return false;
    return true;
  }

  function refresh() {
    if (document.hidden) return;
    if (timer) {
      due = true;
    } else {
      fire();
    }
  }

  htmx.createEventSource = function (url) {
    if (lastId) url += (url.indexOf('?') < 0 ? '?' : '&') + 'after=' + encodeURIComponent(lastId);
    var es = new EventSource(url, {withCredentials: true});
    source = es;
    es.addEventListener('open', function () {
      indicator('on', 'live');
      refresh(); // what changed between the page's render and this stream
    });
    es.addEventListener('error', function () {
      if (source === es) indicator('off', 'reconnecting');
    });
    es.addEventListener('task', function (e) {
      if (e.lastEventId) lastId = e.lastEventId;
      var detail = null;
      try {
        detail = JSON.parse(e.data);
      } catch (err) {
        detail = null;
      }
      document.body.dispatchEvent(new CustomEvent('qtf-task', {detail: detail}));
      if (shows(detail)) refresh();
    });
    // a page of counts (Overview, Queues, ...) follows ?summary=true: a frame of counts (a full state) at most four
    // times a second while the fleet changes, however fast it goes, instead of every event
    es.addEventListener('counts', function (e) {
      if (e.lastEventId) lastId = e.lastEventId;
      refresh();
    });
    return es;
  };

  document.addEventListener('visibilitychange', function () {
    var el = document.getElementById('live');
    if (!el) return;
    if (document.hidden) {
      if (source) source.close();
      source = null;
      indicator('paused', 'paused');
    } else {
      // a changed attribute makes htmx set the node up again: the extension opens a new stream
      el.setAttribute('data-opened', String(Date.now()));
      htmx.process(el);
      refresh();
    }
  });

  // polls (hx-trigger "every 1s") and refreshes wait while the tab is hidden
  document.addEventListener('htmx:beforeRequest', function (e) {
    if (document.hidden && e.detail.requestConfig && e.detail.requestConfig.verb === 'get') e.preventDefault();
  });
})();
