// Alerts: the firing alerts (latest transition ACTIVE or ACKNOWLEDGED) with
// an Acknowledge button (Write role; the server runs ACKNOWLEDGE ALERT as
// the user, so the role is checked there too), the last transitions of
// gold.alerts and the rules of alert_rules().

import { get, post, canWrite } from './api.js';
import { h, mount, fmtNumber, fmtTime, fmtAge, sqlString, errorBox } from './dom.js';

function value(v) {
  return v === null || v === undefined ? '–' : fmtNumber(v, 3);
}

function since(ms) {
  return h('span', {}, fmtTime(ms), ' (', h('span', { 'data-since': ms }, fmtAge((Date.now() - ms) / 1000)), ' ago)');
}

function firingRow(a, act) {
  const acked = a.state === 'ACKNOWLEDGED';
  const action = acked
    ? h('span', { class: 'muted' }, `by ${a.actor ?? '?'} at ${fmtTime(a.changed_ms)}`)
    : h('button', { 'data-testid': 'acknowledge', disabled: !canWrite(),
      title: canWrite() ? 'ACKNOWLEDGE ALERT' : 'write role needed', onclick: () => act(a) }, 'Acknowledge');
  return h('tr', { 'data-testid': 'alert', 'data-alert-id': a.alert_id, 'data-state': a.state,
    'data-rule': a.rule, 'data-series': a.series },
  h('td', { class: `sev sev-${a.severity}` }, a.severity), h('td', {}, a.rule), h('td', { class: 'nowrap' }, a.series),
  h('td', { class: `alert-${a.state}`, 'data-testid': 'alert-state' }, a.state),
  h('td', { class: 'nowrap' }, a.since_ms ? since(a.since_ms) : '–'),
  h('td', { class: 'num' }, value(a.value)), h('td', {}, a.message ?? ''), h('td', {}, action));
}

function transitionRow(t) {
  return h('tr', { 'data-testid': 'transition', 'data-state': t.state },
    h('td', { class: 'nowrap' }, fmtTime(t.at_ms)), h('td', { class: `alert-${t.state}` }, t.state),
    h('td', { class: `sev sev-${t.severity}` }, t.severity), h('td', {}, t.rule), h('td', { class: 'nowrap' }, t.series),
    h('td', { class: 'num' }, value(t.value)), h('td', {}, t.message ?? ''), h('td', {}, t.actor ?? ''),
    h('td', { class: 'muted id' }, t.alert_id));
}

function rulesTable(rules, openQuery) {
  if (!rules.length) {
    return h('p', { class: 'muted' }, 'No alert rules: CREATE ALERT on the Explore page (admin) or --alert-rules.');
  }
  return h('table', { class: 'grid', 'data-testid': 'rules' },
    h('thead', {}, h('tr', {}, ['Rule', 'Table', 'Severity', 'Declared', 'Definition'].map((x) => h('th', {}, x)))),
    h('tbody', {}, rules.map((r) => h('tr', { 'data-testid': 'rule', 'data-rule': r.name },
      h('td', {}, h('a', { href: '#/explore', title: 'its transitions in Explore', onclick: (e) => {
        e.preventDefault();
        openQuery(`SELECT * FROM gold.alerts\nWHERE rule = ${sqlString(r.name)}\nORDER BY at DESC\nLIMIT 1000`);
      } }, r.name)),
      h('td', {}, r.table_name), h('td', { class: `sev sev-${r.severity}` }, r.severity),
      h('td', {}, r.declared ? 'TOML' : 'SQL'), h('td', { class: 'outcome' }, r.definition)))));
}

export function render(main, ctx) {
  const status = h('p', { class: 'muted', 'data-testid': 'updated' });
  const message = h('p', { 'data-testid': 'action-message' });
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  mount(main, h('h1', {}, 'Alerts'), status, message, body);
  let last = null;
  async function act(alert) {
    try {
      await post('/api/alerts/acknowledge', { alert_id: alert.alert_id });
      message.className = '';
      message.textContent = `Acknowledged ${alert.rule} on ${alert.series}.`;
    } catch (e) {
      message.className = 'error';
      message.textContent = e.message;
    }
    refresh();
  }
  function draw(data) {
    const firing = data.firing.length
      ? h('table', { class: 'grid', 'data-testid': 'firing' },
        h('thead', {}, h('tr', {}, ['Severity', 'Rule', 'Series', 'State', 'Since', 'Value', 'Message', '']
          .map((x) => h('th', {}, x)))),
        h('tbody', {}, data.firing.map((a) => firingRow(a, act))))
      : h('p', { class: 'muted', 'data-testid': 'none-firing' }, 'No alert is firing.');
    mount(body,
      h('h2', {}, `Firing (${data.firing.length}${data.firing_truncated ? '+' : ''})`), firing,
      h('h2', {}, `Recent transitions (last ${data.recent_limit})`),
      data.recent.length
        ? h('table', { class: 'grid', 'data-testid': 'transitions' },
          h('thead', {}, h('tr', {}, ['Time', 'State', 'Severity', 'Rule', 'Series', 'Value', 'Message', 'By', 'Alert id']
            .map((x) => h('th', {}, x)))),
          h('tbody', {}, data.recent.map(transitionRow)))
        : h('p', { class: 'muted' }, 'No transitions yet.'),
      h('h2', {}, 'Rules'), rulesTable(data.rules, ctx.openQuery));
  }
  async function refresh() {
    try {
      const data = await get('/api/alerts');
      ctx.badge(data.firing.length);
      // Redraw only when something changed (buttons stay put); ages move.
      const key = JSON.stringify(data);
      if (key !== last) {
        last = key;
        draw(data);
      }
      for (const el of body.querySelectorAll('[data-since]')) {
        el.textContent = fmtAge((Date.now() - Number(el.dataset.since)) / 1000);
      }
      status.textContent = `Updated ${new Date().toLocaleTimeString()} (every 2 s)`;
      performance.mark('weir:alerts-rendered');
    } catch (e) {
      last = null;
      mount(body, errorBox(e));
    }
  }
  refresh();
  return setInterval(refresh, 2000);
}
