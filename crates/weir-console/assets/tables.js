// Tables: every namespace/table with its size, and one table's details:
// files (small-file warning), partitioning, snapshot timeline, maintenance
// jobs and (admin) buttons to compact, expire or refresh.

import { get, post, isAdmin } from './api.js';
import { h, mount, fmtNumber, fmtBytes, fmtTime, fmtAge, errorBox } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';

export function renderList(main) {
  const filter = h('input', { type: 'search', placeholder: 'filter tables', 'data-testid': 'table-filter' });
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  mount(main, h('h1', {}, 'Tables'), filter, body);
  let namespaces = [];
  function draw() {
    const needle = filter.value.trim().toLowerCase();
    const rows = [];
    for (const ns of namespaces) {
      for (const t of ns.tables) {
        const full = `${ns.name}.${t.name}`;
        if (needle && !full.toLowerCase().includes(needle)) continue;
        const href = `#/tables/${encodeURIComponent(ns.name)}/${encodeURIComponent(t.name)}`;
        rows.push(h('tr', { 'data-testid': 'table-row', 'data-table': full },
          h('td', {}, ns.name), h('td', {}, h('a', { href }, t.name)),
          h('td', { class: 'num' }, fmtNumber(t.rows)), h('td', { class: 'num' }, fmtBytes(t.bytes)),
          h('td', { class: 'num' }, fmtNumber(t.files)), h('td', { class: 'num' }, fmtNumber(t.snapshots))));
      }
    }
    const count = namespaces.reduce((n, ns) => n + ns.tables.length, 0);
    mount(body, h('p', { class: 'muted', 'data-testid': 'table-count' },
      `${count} tables in ${namespaces.length} namespaces (sizes as of the last refresh of the table gauges)`),
    h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, ['Namespace', 'Table', 'Rows', 'Bytes', 'Files', 'Snapshots'].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows)));
    // Read by the page-load measurement (benches/console.py).
    performance.mark('weir:tables-rendered');
  }
  filter.addEventListener('input', draw);
  let last = null;
  async function refresh() {
    try {
      const data = await get('/api/tables');
      // Redraw (1,000 rows) only when something changed.
      const key = JSON.stringify(data);
      if (key === last) return;
      last = key;
      namespaces = data.namespaces;
      draw();
    } catch (e) {
      last = null;
      mount(body, errorBox(e));
    }
  }
  refresh();
  return setInterval(refresh, 2000);
}

function timeline(snapshots) {
  const width = 900;
  const height = 60;
  const root = document.createElementNS(NS, 'svg');
  root.setAttribute('viewBox', `0 0 ${width} ${height}`);
  root.setAttribute('class', 'timeline');
  if (snapshots.length === 0) return root;
  const t0 = snapshots[0].timestamp_ms;
  const t1 = Math.max(snapshots[snapshots.length - 1].timestamp_ms, t0 + 1);
  const line = document.createElementNS(NS, 'line');
  Object.entries({ x1: 10, x2: width - 10, y1: 30, y2: 30, class: 'axis' }).forEach(([k, v]) => line.setAttribute(k, v));
  root.append(line);
  for (const s of snapshots) {
    const c = document.createElementNS(NS, 'circle');
    const x = 10 + ((s.timestamp_ms - t0) / (t1 - t0)) * (width - 20);
    Object.entries({ cx: x.toFixed(1), cy: 30, r: 5, class: `snap op-${s.operation}` }).forEach(([k, v]) => c.setAttribute(k, v));
    const title = document.createElementNS(NS, 'title');
    title.textContent = `${fmtTime(s.timestamp_ms)} ${s.operation} +${s.added_records ?? 0} rows`;
    c.append(title);
    root.append(c);
  }
  return root;
}

function jobRow(j) {
  const p = j.progress;
  const progress = p && p.bytes_total ? `${Math.round((100 * p.bytes_done) / p.bytes_total)}%` : '';
  const outcome = j.error ? j.error : j.report ? JSON.stringify(j.report) : '';
  return h('tr', { 'data-testid': 'job', 'data-kind': j.kind, 'data-state': j.state },
    h('td', {}, j.kind), h('td', { class: `state-${j.state}` }, j.state, progress ? ` ${progress}` : ''),
    h('td', {}, fmtTime(j.started_ms)), h('td', {}, j.finished_ms ? fmtTime(j.finished_ms) : '–'),
    h('td', {}, j.user), h('td', { class: 'outcome' }, outcome));
}

function scheduled(jobs, isView) {
  if (!jobs) return h('p', { class: 'muted' }, 'Scheduled maintenance is off in this server.');
  // Refreshes only apply to materialized views.
  const kinds = Object.keys(jobs).filter((k) => k !== 'refresh' || isView);
  if (!kinds.length) return h('p', { class: 'muted' }, 'The scheduler has not looked at this table yet.');
  return h('table', { class: 'grid', 'data-testid': 'scheduled' },
    h('thead', {}, h('tr', {}, ['Job', 'Last run', 'Outcome', 'Next due'].map((x) => h('th', {}, x)))),
    h('tbody', {}, kinds.map((k) => {
      const j = jobs[k];
      const state = j.last_ok === null || j.last_ok === undefined ? '' : j.last_ok ? 'succeeded' : 'failed';
      return h('tr', {}, h('td', {}, k), h('td', {}, j.last_finished_ms ? fmtTime(j.last_finished_ms) : 'not yet'),
        h('td', { class: `outcome state-${state}` }, j.last_outcome ?? ''),
        h('td', {}, j.next_due_ms ? fmtTime(j.next_due_ms) : '–'));
    })));
}

export function renderDetail(main, namespace, table) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const message = h('p', { 'data-testid': 'action-message' });
  mount(main, h('p', {}, h('a', { href: '#/tables' }, '← all tables')),
    h('h1', { 'data-testid': 'table-title' }, `${namespace}.${table}`), message, body);
  async function act(kind) {
    try {
      const job = await post('/api/jobs', { namespace, table, kind });
      message.className = '';
      message.textContent = `${kind} started (job ${job.id})`;
      refresh();
    } catch (e) {
      message.className = 'error';
      message.textContent = e.message;
    }
  }
  async function refresh() {
    try {
      const t = await get(`/api/table?namespace=${encodeURIComponent(namespace)}&table=${encodeURIComponent(table)}`);
      const buttons = h('div', { class: 'actions' },
        ['compact', 'expire'].concat(t.materialized_view ? ['refresh'] : []).map((kind) =>
          h('button', { 'data-testid': `action-${kind}`, disabled: !isAdmin(),
            title: isAdmin() ? '' : 'admin role needed', onclick: () => act(kind) }, kind)));
      const facts = [
        ['Rows', fmtNumber(t.rows)], ['Bytes', fmtBytes(t.bytes)],
        ['Data files', fmtNumber(t.files)], ['Delete files', fmtNumber(t.delete_files)],
        ['Average file', fmtBytes(t.average_file_bytes)],
        ['Partitioning', t.partitioning.length ? t.partitioning.join(', ') : 'unpartitioned'],
        ['Partitions', t.partitions],
        ['Partitions changed by the last commit', t.partitions_changed_last ?? '–'],
        ['Snapshots', fmtNumber(t.snapshot_count)], ['Last commit', fmtTime(t.last_commit_ms)],
      ];
      if (t.materialized_view) {
        facts.push(['Materialized view: last refresh', t.last_commit_ms
          ? `${fmtAge((Date.now() - t.last_commit_ms) / 1000)} ago` : 'never']);
        const bases = t.view_bases || [];
        const stale = bases.filter((b) => b.stale_since_ms);
        facts.push(['Staleness', !t.last_commit_ms ? 'never refreshed'
          : stale.length === 0 ? 'up to date with its base tables'
            : stale.map((b) => `${b.base}: behind by ${fmtAge((Date.now() - b.stale_since_ms) / 1000)}`).join('; ')]);
      }
      mount(body,
        t.small_files ? h('p', { class: 'warning', 'data-testid': 'small-files' },
          `Small files: ${fmtNumber(t.files)} files averaging ${fmtBytes(t.average_file_bytes)} — compaction would help.`) : null,
        h('dl', { class: 'facts', 'data-testid': 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
        buttons,
        h('h2', {}, 'Scheduled maintenance'),
        scheduled(t.scheduled, Boolean(t.materialized_view)),
        h('h2', {}, 'Maintenance started here'),
        t.jobs.length ? h('table', { class: 'grid', 'data-testid': 'jobs' },
          h('thead', {}, h('tr', {}, ['Job', 'State', 'Started', 'Finished', 'By', 'Outcome'].map((x) => h('th', {}, x)))),
          h('tbody', {}, t.jobs.map(jobRow))) : h('p', { class: 'muted' }, 'None yet (scheduled maintenance shows in the snapshot timeline).'),
        h('h2', {}, `Snapshots (newest ${t.snapshots.length})`), timeline(t.snapshots),
        h('table', { class: 'grid compact' },
          h('thead', {}, h('tr', {}, ['Time', 'Operation', 'Added rows', 'Added files', 'Removed files'].map((x) => h('th', {}, x)))),
          h('tbody', {}, t.snapshots.slice(-20).reverse().map((s) => h('tr', {},
            h('td', {}, fmtTime(s.timestamp_ms)), h('td', {}, s.operation), h('td', { class: 'num' }, s.added_records ?? ''),
            h('td', { class: 'num' }, s.added_files ?? ''), h('td', { class: 'num' }, s.removed_files ?? ''))))),
        h('h2', {}, 'Columns'),
        h('ul', { class: 'columns' }, t.columns.map((c) => h('li', {}, h('code', {}, c.name), ` ${c.type}`))));
    } catch (e) {
      mount(body, errorBox(e));
    }
  }
  refresh();
  return setInterval(refresh, 2000);
}
