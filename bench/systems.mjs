// The systems a scenario runs against. A system is
//   { id, name, role, start(dbUri, secret, port) -> Promise<{ port, stop() }> }
// `secret` is an HMAC secret or a public JWK (JSON); `port` 0 means any free port.
// and runs in its own process (bench/server.mjs), pinned to the server core.
// role: 'relay' (speaks the pgws protocol), 'journal-relay' (pgws with PGWS_JOURNAL=on: the
// journal scenarios alone), 'fanout-ceiling' (bare uWS, no database, no auth) or
// 'listen-ceiling' (no sockets: pipelines pg_notify itself).
// To add a system, add an entry here; every scenario picks it up by role.
import { existsSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const dist = new URL('../dist/', import.meta.url);

async function startPgws(dbUri, secret, transport, port = 0, extraEnv = {}) {
  const { loadConfig } = await import(new URL('config.js', dist));
  const { start } = await import(new URL('server.js', dist));
  const env = {
    PGWS_DB_URI: dbUri,
    PGWS_JWT_SECRET: secret,
    PGWS_HOST: '127.0.0.1',
    PGWS_PORT: String(port),
    PGWS_LOG_LEVEL: 'warn',
    // The connections scenario holds ~19k sockets: above the 10000 default limit.
    PGWS_MAX_CONNECTIONS: '0',
    ...(transport ? { PGWS_TRANSPORT: transport } : {}),
    ...extraEnv,
  };
  // An empty folder as cwd, so no stray .env is read.
  const loaded = loadConfig({ argv: ['node', 'pgws'], env, cwd: mkdtempSync(path.join(tmpdir(), 'pgws-bench-')) });
  if (!loaded.ok) throw new Error(`pgws config: ${loaded.errors.join('; ')}`);
  const server = await start(loaded.config);
  if (transport && server.transport !== transport) {
    await server.stop();
    throw new Error(`this pgws build ran transport ${server.transport}, not ${transport}`);
  }
  return { port: server.port, stop: () => server.stop() };
}

export const SYSTEMS = [
  { id: 'pgws-uws', name: 'pgws (uws)', role: 'relay', start: (db, secret, port) => startPgws(db, secret, undefined, port) },
  {
    id: 'pgws-ws',
    name: 'pgws (ws)',
    role: 'relay',
    // Present once the `ws` transport (PGWS_TRANSPORT=ws) has landed.
    available: () => existsSync(new URL('transport/ws.js', dist)),
    start: (db, secret, port) => startPgws(db, secret, 'ws', port),
  },
  {
    // pgws with the journal (PROTOCOL.md section 10): socket frames go through pgws.publish.
    // Its own role, so only the journal scenarios run it; they install the journal's SQL in the
    // bench's database first (bench/scenarios/journal-shared.mjs).
    id: 'pgws-uws-journal',
    name: 'pgws (uws, journal)',
    role: 'journal-relay',
    available: () => existsSync(new URL('sql/journal.js', dist)),
    start: (db, secret, port) => startPgws(db, secret, undefined, port, { PGWS_JOURNAL: 'on' }),
  },
  {
    id: 'baseline',
    name: 'baseline (ws + pg)',
    role: 'relay',
    start: async (db, secret, port) => (await import('./baseline/server.mjs')).start(db, secret, port),
  },
  {
    id: 'bare-uws',
    name: 'ceiling: bare uWS',
    role: 'fanout-ceiling',
    start: async (_db, _secret, port) => (await import('./ceilings/bare-uws.mjs')).start(port),
  },
  {
    id: 'raw-listen',
    name: 'ceiling: raw LISTEN',
    role: 'listen-ceiling',
    start: async (db) => (await import('./ceilings/raw-notify.mjs')).start(db),
  },
];

export function systemsFor(roles) {
  return SYSTEMS.filter((s) => roles.includes(s.role) && (s.available?.() ?? true));
}

export function systemById(id) {
  const system = SYSTEMS.find((s) => s.id === id);
  if (!system) throw new Error(`unknown system ${id}`);
  return system;
}
