// Explore: SQL through the same engine, roles and timeout as Flight SQL;
// results as a table (at most max_rows) and, with a time column, a chart.
// The picker writes "this sensor, last hour" for silver.points.

import { post, session } from './api.js';
import { h, mount, sqlString, errorBox, fmtNumber } from './dom.js';
import { lineChart } from './chart.js';

let lastSql = 'SELECT device_id, metric, count(*) AS points, avg(value) AS avg\nFROM silver.points\nGROUP BY 1, 2\nORDER BY 1, 2\nLIMIT 100';

export function sensorQuery(device, metric) {
  return `SELECT ts, device_id, value\nFROM silver.points\nWHERE device_id = ${sqlString(device)} AND metric = ${sqlString(metric)}\n` +
    `  AND ts > now() - INTERVAL '1 hour'\nORDER BY ts`;
}

function resultTable(result) {
  return h('table', { class: 'grid', 'data-testid': 'result' },
    h('thead', {}, h('tr', {}, result.columns.map((c) => h('th', { title: c.type }, c.name)))),
    h('tbody', {}, result.rows.slice(0, 1000).map((row) =>
      h('tr', {}, row.map((v, i) => h('td', { class: result.columns[i].kind === 'number' ? 'num' : '' },
        v === null ? 'NULL' : String(v)))))));
}

export function render(main, sql) {
  if (sql) lastSql = sql;
  const editor = h('textarea', { rows: 8, spellcheck: 'false', 'data-testid': 'sql' });
  editor.value = lastSql;
  const run = h('button', { 'data-testid': 'run' }, 'Run');
  const cancel = h('button', { 'data-testid': 'cancel', disabled: true }, 'Cancel');
  const status = h('p', { class: 'muted', 'data-testid': 'status' });
  const output = h('div', {});
  const device = h('select', { 'data-testid': 'device' });
  const metric = h('select', { 'data-testid': 'metric' });
  const pick = h('button', { 'data-testid': 'pick' }, 'This sensor, last hour');
  const limit = session.me ? session.me.max_rows : 10000;
  const timeout = session.me && session.me.query_timeout_seconds;
  mount(main, h('h1', {}, 'Explore'),
    h('div', { class: 'picker' }, 'Sensor: ', device, ' ', metric, ' ', pick),
    editor, h('div', { class: 'actions' }, run, cancel,
      h('span', { class: 'muted' }, ` At most ${fmtNumber(limit)} rows are returned` +
        (timeout ? `; statements time out after ${timeout} s.` : '.'))),
    status, output);

  let running = null;
  async function execute() {
    lastSql = editor.value;
    const id = `${Date.now()}-${Math.random().toString(36).slice(2)}`;
    running = id;
    run.disabled = true;
    cancel.disabled = false;
    status.textContent = 'Running…';
    status.className = 'muted';
    mount(output);
    try {
      const result = await post('/api/query', { sql: editor.value, id });
      if (running !== id) return;
      status.textContent = `${fmtNumber(result.rows.length)} rows in ${fmtNumber(result.elapsed_ms)} ms` +
        (result.truncated ? ` (cut at ${fmtNumber(result.max_rows)} rows)` : '') +
        (result.rows.length > 1000 ? ', first 1,000 shown' : '');
      const chart = lineChart(result);
      mount(output, chart, resultTable(result));
    } catch (e) {
      if (running !== id) return;
      status.textContent = '';
      mount(output, errorBox(e));
    } finally {
      if (running === id) {
        running = null;
        run.disabled = false;
        cancel.disabled = true;
      }
    }
  }
  run.addEventListener('click', execute);
  editor.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) execute();
  });
  cancel.addEventListener('click', async () => {
    const id = running;
    if (!id) return;
    status.textContent = 'Cancelling…';
    // The server may not have registered a just-sent statement yet: retry
    // while it is still running here.
    for (let attempt = 0; attempt < 20 && running === id; attempt += 1) {
      try {
        await post('/api/query/cancel', { id });
        return;
      } catch (e) {
        if (e.status !== 404) {
          mount(output, errorBox(e));
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
    }
  });
  pick.addEventListener('click', () => {
    if (!device.value || !metric.value) return;
    editor.value = sensorQuery(device.value, metric.value);
    execute();
  });

  // Opened with a query (a click-through from another page): run it.
  if (sql) execute();

  (async () => {
    try {
      const sensors = await post('/api/query', {
        sql: 'SELECT device_id, metric FROM silver.points GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 2000',
      });
      const byDevice = new Map();
      for (const [d, m] of sensors.rows) {
        if (!byDevice.has(d)) byDevice.set(d, []);
        byDevice.get(d).push(m);
      }
      mount(device, [...byDevice.keys()].map((d) => h('option', { value: d }, d)));
      const fill = () => mount(metric, (byDevice.get(device.value) || []).map((m) => h('option', { value: m }, m)));
      device.addEventListener('change', fill);
      fill();
    } catch (e) {
      mount(device, h('option', { value: '' }, 'no silver.points'));
    }
  })();
  return null;
}
