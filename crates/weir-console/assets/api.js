// Calls to the console's JSON API. The session cookie is HttpOnly; the CSRF
// token from /api/me or /api/login is kept here and sent on every POST.

export const session = { me: null };

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function call(method, path, body) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') {
    headers['content-type'] = 'application/json';
    if (session.me && session.me.csrf) headers['x-weir-csrf'] = session.me.csrf;
  }
  const response = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch (e) {
    throw new ApiError(response.status, `HTTP ${response.status}: not JSON`);
  }
  if (!response.ok) {
    throw new ApiError(response.status, (data && data.error) || `HTTP ${response.status}`);
  }
  return data;
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body ?? {});
export const isAdmin = () => session.me && session.me.role === 'admin';
export const canWrite = () => session.me && (session.me.role === 'write' || session.me.role === 'admin');
