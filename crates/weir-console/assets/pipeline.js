// Pipeline: each source partition with its rate, lag, last commit and dead
// letters (a click shows those rows), and the hot tier per table.

import { get } from './api.js';
import { h, mount, fmtNumber, fmtAge, fmtBytes, fmtTime, sqlString, errorBox } from './dom.js';

export function deadLetterQuery(source) {
  // Kafka rows carry their topic and partition; MQTT rows carry the message
  // topic (not the broker the metrics are labelled with), Modbus its device.
  const where = [`source = ${sqlString(source.source)}`];
  if (source.source === 'kafka') {
    where.push(`topic = ${sqlString(source.stream)}`);
    if (/^\d+$/.test(source.partition)) where.push(`source_partition = ${source.partition}`);
  }
  return `SELECT received_at, source, topic, source_partition, source_offset, stage, reason, payload\n` +
    `FROM bronze.dead_letters\nWHERE ${where.join(' AND ')}\nORDER BY received_at DESC\nLIMIT 100`;
}

function sourceRow(s, openQuery) {
  const dead = s.dead_letters || 0;
  return h('tr', { 'data-testid': 'source', 'data-source': s.source },
    h('td', {}, s.source), h('td', {}, s.stream), h('td', {}, s.partition),
    h('td', { class: 'num', 'data-testid': 'rate' }, fmtNumber(s.points_per_second, 1)),
    h('td', { class: 'num', 'data-testid': 'points' }, fmtNumber(s.points)),
    h('td', { class: 'num' }, fmtAge(s.lag_seconds)),
    h('td', { class: 'num' }, fmtNumber(s.lag_messages)),
    h('td', {}, s.last_commit ? fmtTime(s.last_commit * 1000) : '–'),
    h('td', { class: 'num' }, fmtAge(s.freshness_seconds)),
    h('td', { class: 'num' }, dead > 0
      ? h('a', { href: '#/explore', class: 'dead', onclick: (e) => { e.preventDefault(); openQuery(deadLetterQuery(s)); } },
        fmtNumber(dead))
      : '0'));
}

export function render(main, ctx) {
  const body = h('div', {});
  const status = h('p', { class: 'muted', 'data-testid': 'updated' });
  mount(main, h('h1', {}, 'Pipeline'), status, body);
  async function refresh() {
    try {
      const data = await get('/api/pipeline');
      const sources = data.sources.length === 0
        ? h('p', { class: 'muted' }, 'No source has reported yet (Kafka, MQTT, Modbus or --demo).')
        : h('table', { class: 'grid', 'data-testid': 'sources' },
          h('thead', {}, h('tr', {}, ['Source', 'Stream', 'Partition', 'Points/s', 'Points',
            'Lag', 'Lag (msgs)', 'Last commit', 'Freshness', 'Dead letters'].map((t) => h('th', {}, t)))),
          h('tbody', {}, data.sources.map((s) => sourceRow(s, ctx.openQuery))));
      const hot = h('table', { class: 'grid', 'data-testid': 'hot' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Table'), h('th', {}, 'Hot rows'), h('th', {}, 'Hot memory'))),
        h('tbody', {}, data.hot.map((t) => h('tr', {}, h('td', {}, t.table),
          h('td', { class: 'num' }, fmtNumber(t.rows)), h('td', { class: 'num' }, fmtBytes(t.bytes))))));
      mount(body, h('h2', {}, 'Sources'), sources, h('h2', {}, 'Hot tier (not yet committed)'),
        data.hot.length ? hot : h('p', { class: 'muted' }, 'Nothing in the hot tier.'));
      status.textContent = `Updated ${new Date().toLocaleTimeString()} (every 2 s)`;
      performance.mark('weir:pipeline-rendered');
    } catch (e) {
      mount(body, errorBox(e));
    }
  }
  refresh();
  return setInterval(refresh, 2000);
}
