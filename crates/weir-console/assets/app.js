// The console's entry: session (login form when needed), navigation by URL
// hash, one polling timer per page (live updates without reloading), and
// the count of firing alerts in the navigation (polled too).

import { get, post, session, ApiError } from './api.js';
import { h, mount, errorBox } from './dom.js';
import * as pipeline from './pipeline.js';
import * as tables from './tables.js';
import * as explore from './explore.js';
import * as alerts from './alerts.js';

const main = document.getElementById('main');
const who = document.getElementById('who');
let timer = null;
let badgeTimer = null;
let page = null;
let pendingSql = null;

// The firing alerts' count beside "Alerts" (hidden at 0).
function badge(count) {
  const el = document.getElementById('alert-badge');
  el.textContent = String(count);
  el.hidden = !count;
  el.title = `${count} firing alert${count === 1 ? '' : 's'}`;
}

async function pollBadge() {
  // The Alerts page keeps the badge itself.
  if (!session.me || page === 'alerts') return;
  try {
    badge((await get('/api/alerts/summary')).firing);
  } catch (e) {
    // Shown by the page; the badge keeps its last count.
  }
}

function openQuery(sql) {
  pendingSql = sql;
  if (location.hash === '#/explore') route();
  else location.hash = '#/explore';
}

function showUser() {
  const me = session.me;
  const logout = h('button', { class: 'link', 'data-testid': 'logout', onclick: async () => {
    await post('/api/logout');
    session.me = null;
    start();
  } }, 'log out');
  const login = h('button', { class: 'link', 'data-testid': 'login-link', onclick: () => loginForm() }, 'log in');
  mount(who, h('span', { 'data-testid': 'user' }, me.user), ` (${me.role}) `,
    me.auth ? (me.user === 'anonymous' ? login : logout) : null);
}

function loginForm(message) {
  clearInterval(timer);
  clearInterval(badgeTimer);
  badgeTimer = null;
  badge(0);
  const user = h('input', { name: 'user', autocomplete: 'username', 'data-testid': 'login-user', required: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password',
    'data-testid': 'login-password' });
  const error = message ? errorBox(message) : h('p', {});
  const form = h('form', { class: 'login', 'data-testid': 'login-form' },
    h('h1', {}, 'Log in to Weir'), h('label', {}, 'User ', user), h('label', {}, 'Password ', password),
    h('button', { type: 'submit', 'data-testid': 'login-submit' }, 'Log in'), error);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      session.me = await post('/api/login', { user: user.value, password: password.value });
      showUser();
      route();
      startBadge();
    } catch (err) {
      mount(error, err.message);
      error.className = 'error';
    }
  });
  mount(who);
  mount(main, form);
  user.focus();
}

function route() {
  clearInterval(timer);
  timer = null;
  if (!session.me) return;
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  page = parts[0] || 'pipeline';
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.page === page);
  }
  const ctx = { openQuery, badge };
  if (page === 'tables' && parts.length >= 3) timer = tables.renderDetail(main, parts[1], parts[2]);
  else if (page === 'tables') timer = tables.renderList(main);
  else if (page === 'explore') {
    const sql = pendingSql;
    pendingSql = null;
    timer = explore.render(main, sql);
  } else if (page === 'alerts') timer = alerts.render(main, ctx);
  else timer = pipeline.render(main, ctx);
}

function startBadge() {
  clearInterval(badgeTimer);
  pollBadge();
  badgeTimer = setInterval(pollBadge, 2000);
}

async function start() {
  try {
    session.me = await get('/api/me');
    showUser();
    route();
    startBadge();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) loginForm();
    else mount(main, errorBox(e));
  }
}

window.addEventListener('hashchange', route);
start();
