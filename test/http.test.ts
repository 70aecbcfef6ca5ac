// Plain HTTP on the WebSocket port (PROTOCOL.md §5), end to end through the real server:
// the banner without a root path, static files with one, and traversal attempts written
// byte for byte on a raw TCP socket (fetch would normalize `..` away before sending).
import { promises as fs } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, handshake } from './harness/client.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { LISTEN_CHANNEL, startPgws, type TestServer } from './harness/pgws.js';
import { token } from './harness/tokens.js';
import { within } from './harness/within.js';

const SECRET_CONTENT = 'TOP-SECRET-outside-the-root';
const INDEX = '<!doctype html><title>root index</title>';
const SUB_INDEX = '<!doctype html><title>sub index</title>';
const CSS = 'body { color: rebeccapurple; }';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/**
 * Sends `GET <target>` exactly as written and parses the answer. Resolves once the body
 * announced by Content-Length is in, or when the server closes; rejects after `timeoutMs`.
 */
function rawGet(port: number, target: string, timeoutMs = 5000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    let settled = false;
    const finish = (outcome: RawResponse | Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    const timer = setTimeout(() => finish(new Error(`no complete answer to GET ${target} within ${timeoutMs} ms`)), timeoutMs);

    const parse = (final: boolean): RawResponse | undefined => {
      const headerEnd = received.indexOf('\r\n\r\n');
      if (headerEnd === -1) return undefined;
      const [statusLine = '', ...headerLines] = received.subarray(0, headerEnd).toString('latin1').split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? NaN);
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const body = received.subarray(headerEnd + 4);
      const length = headers['content-length'];
      if (length !== undefined && body.length >= Number(length)) {
        return { status, headers, body: body.subarray(0, Number(length)).toString('utf8') };
      }
      return final ? { status, headers, body: body.toString('utf8') } : undefined;
    };

    socket.on('connect', () => {
      socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 'latin1');
    });
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const done = parse(false);
      if (done) finish(done);
    });
    socket.on('error', (err) => finish(err));
    socket.on('close', () => {
      // A server may also refuse a request line by just closing: report that as status 0.
      finish(parse(true) ?? { status: 0, headers: {}, body: received.toString('utf8') });
    });
  });
}

describe('without a root path', () => {
  let srv: TestServer;

  beforeAll(async () => {
    srv = await startPgws(db.uri);
  });

  it('answers GET / with a plain-text banner naming pgws', async () => {
    const res = await fetch(`${srv.http}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await res.text()).toContain('pgws');
  });

  it('answers any other GET path with the same banner', async () => {
    const res = await fetch(`${srv.http}/some/where`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('pgws');
  });

  it('answers HEAD / with 200 and no body', async () => {
    const res = await fetch(`${srv.http}/`, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('');
  });

  it.each(['POST', 'PUT', 'DELETE'])('answers %s with 405 and an Allow header', async (method) => {
    const res = await fetch(`${srv.http}/`, { method, body: method === 'DELETE' ? undefined : 'x' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
    await res.text();
  });
});

describe('with a root path', () => {
  let tmp: string;
  let root: string;
  let srv: TestServer;

  beforeAll(async () => {
    // realpath: the temp dir may itself be behind a symlink (macOS /var -> /private/var).
    tmp = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'pgws-http-')));
    root = path.join(tmp, 'www');
    await fs.mkdir(path.join(root, 'sub'), { recursive: true });
    await fs.writeFile(path.join(root, 'index.html'), INDEX);
    await fs.writeFile(path.join(root, 'style.css'), CSS);
    await fs.writeFile(path.join(root, 'sub', 'index.html'), SUB_INDEX);
    // Outside the root, and a link inside the root that points at it.
    await fs.writeFile(path.join(tmp, 'secret.txt'), SECRET_CONTENT);
    await fs.symlink(path.join(tmp, 'secret.txt'), path.join(root, 'link-to-secret.txt'));
    await fs.symlink(tmp, path.join(root, 'link-to-parent'));
    srv = await startPgws(db.uri, { rootPath: root });
  });

  afterAll(async () => {
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  });

  it('serves index.html for / as text/html', async () => {
    const res = await fetch(`${srv.http}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await res.text()).toBe(INDEX);
  });

  it('serves /index.html directly', async () => {
    const res = await fetch(`${srv.http}/index.html`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(INDEX);
  });

  it('serves /style.css as text/css', async () => {
    const res = await fetch(`${srv.http}/style.css`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/css/);
    expect(await res.text()).toBe(CSS);
  });

  it.each(['/sub/', '/sub'])('serves the sub directory index for %s', async (urlPath) => {
    const res = await fetch(`${srv.http}${urlPath}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await res.text()).toBe(SUB_INDEX);
  });

  it('answers 404 for a missing file', async () => {
    const res = await fetch(`${srv.http}/missing.txt`);
    expect(res.status).toBe(404);
    await res.text();
  });

  it('answers POST with 405', async () => {
    const res = await fetch(`${srv.http}/index.html`, { method: 'POST', body: 'x' });
    expect(res.status).toBe(405);
    await res.text();
  });

  it('serves a file to a raw request too (the raw client itself works)', async () => {
    const res = await rawGet(srv.port, '/style.css');
    expect(res.status).toBe(200);
    expect(res.body).toBe(CSS);
  });

  it.each([
    '/../secret.txt',
    '/../../secret.txt',
    '/%2e%2e/secret.txt',
    '/%2E%2E/secret.txt',
    '/..%2fsecret.txt',
    '/..%2Fsecret.txt',
    '/sub/../../secret.txt',
    '/..\\secret.txt',
    '/..%5csecret.txt',
    '//etc/passwd',
    '/%2fetc%2fpasswd',
    '/%2ftmp%2f..%2fetc%2fpasswd',
    '/index.html%00',
    '/index.html%00.css',
    '/link-to-secret.txt',
    '/link-to-parent/secret.txt',
  ])('refuses %s with 400 or 404 and never the secret', async (target) => {
    const res = await rawGet(srv.port, target);
    expect(res.body).not.toContain(SECRET_CONTENT);
    expect(res.body).not.toMatch(/root:.*:0:0:/); // /etc/passwd content
    expect([400, 404]).toContain(res.status);
  });

  it('still accepts a WebSocket upgrade, and relays to it', async () => {
    const client = await connect(`${srv.url}/with-root/${await token({ mode: 'r' })}`);
    const payload = JSON.stringify({ channel: 'with-root', payload: 'hello' });
    await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${payload})`;
    expect(await client.next()).toBe(payload);
  });

  it('still treats an upgrade to a file path as a handshake (rejected), not a file request', async () => {
    const result = await handshake(`${srv.url}/index.html`);
    expect(result).toMatchObject({ ok: false, status: 401 });
  });
});

describe('connection reuse: keep-alive and Connection: close', () => {
  let srv: TestServer;

  beforeAll(async () => {
    srv = await startPgws(db.uri);
  });

  /** GET through a keep-alive agent; resolves with the status and whether the connection was reused. */
  function agentGet(agent: http.Agent, target: string): Promise<{ status: number; reused: boolean }> {
    return new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: srv.port, path: target, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
      });
      req.on('error', reject);
    });
  }

  it('answers a keep-alive client several times on one connection', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const answers = [];
      for (const target of ['/', '/health', '/ready', '/']) answers.push(await agentGet(agent, target));
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
      expect(answers.map((a) => a.reused)).toEqual([false, true, true, true]);
    } finally {
      agent.destroy();
    }
  });

  it('says Connection: close when it closes after a request that asked for it, then closes', async () => {
    const socket = net.connect(srv.port, '127.0.0.1');
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('error', () => undefined);
    socket.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await within(closed, 5000, 'the server closing the connection');
    const [head = '', body] = received.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 200 /);
    expect(head).toMatch(/\r\nconnection: close(\r\n|$)/i);
    expect(body).toBe('ok');
  });
});
