// What a plain HTTP request gets when no PGWS_ROOT_PATH is set: one line that
// says what this port is, so a curl or a health probe sees something useful.
import type { HttpAnswer } from '../transport/types.js';
import { VERSION } from '../version.js';

export function bannerAnswer(method: string): HttpAnswer {
  if (method !== 'GET' && method !== 'HEAD') {
    return { status: 405, headers: { Allow: 'GET, HEAD' }, body: 'Method not allowed\n' };
  }
  return {
    status: 200,
    headers: { 'Content-Type': 'text/plain; charset=utf-8' },
    body: `pgws ${VERSION}: PostgreSQL LISTEN/NOTIFY over WebSockets. Connect to ws://<host>/<channel>/<jwt> or ws://<host>/<jwt>.\n`,
  };
}
