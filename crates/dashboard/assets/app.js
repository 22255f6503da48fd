// Dockhand dashboard: live updates over server-sent events. The pages work without it;
// this only refreshes the main content when the agent records an event (and every few
// seconds), and streams a service's log lines.
(function () {
  'use strict';
  var main = document.getElementById('main');
  var status = document.getElementById('live-status');
  if (!main || !window.EventSource || !window.fetch) return;
  // Set once per page load: a test can tell an update that came without a reload.
  window.dockhandLoadedAt = Date.now();

  var busy = false;
  var again = false;
  function say(text) { if (status) status.textContent = text; }
  function refresh() {
    if (!main.hasAttribute('data-live')) return;
    if (busy) { again = true; return; }
    var active = document.activeElement;
    if (active && main.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) return;
    busy = true;
    var url = location.pathname + (location.search ? location.search + '&' : '?') + 'partial=1';
    fetch(url, { credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.text(); })
      .then(function (html) { main.innerHTML = html; })
      .catch(function () { say('Live updates paused: the dashboard did not answer.'); })
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }

  var live = new EventSource('/live');
  live.addEventListener('hello', function () { say('Live: updates appear as they happen.'); });
  live.addEventListener('event', function (m) {
    var e = JSON.parse(m.data);
    say('Latest event: ' + e.kind + ': ' + e.message);
    refresh();
  });
  live.addEventListener('tick', refresh);
  live.onerror = function () { say('Live updates paused: reconnecting.'); };

  var logs = document.getElementById('logs');
  if (logs && logs.getAttribute('data-stream')) {
    var level = document.getElementById('log-level');
    var search = document.getElementById('log-search');
    var rank = { debug: 0, info: 1, warn: 2, error: 3 };
    var shown = function (li) {
      var want = level.value;
      var q = search.value.toLowerCase();
      var l = li.getAttribute('data-level');
      var levelOk = !want || (l && rank[l] >= rank[want]);
      var textOk = !q || li.textContent.toLowerCase().indexOf(q) >= 0;
      li.hidden = !(levelOk && textOk);
    };
    var filter = function () { Array.prototype.forEach.call(logs.children, shown); };
    level.addEventListener('change', filter);
    search.addEventListener('input', filter);
    var cleared = false;
    var stream = new EventSource(logs.getAttribute('data-stream'));
    stream.addEventListener('log', function (m) {
      if (!cleared) { logs.textContent = ''; cleared = true; }
      var l = JSON.parse(m.data);
      var li = document.createElement('li');
      li.setAttribute('data-level', l.level || '');
      var t = document.createElement('time');
      t.textContent = l.ts.slice(0, 19).replace('T', ' ');
      li.appendChild(t);
      li.appendChild(document.createTextNode(' ' + l.instance + ' ' + l.text));
      shown(li);
      logs.appendChild(li);
      while (logs.children.length > 1000) logs.removeChild(logs.firstChild);
    });
  }
})();
