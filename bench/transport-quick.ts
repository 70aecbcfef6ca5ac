// A quick fan-out measurement of the two transports, not the benchmark suite: one pgws
// server per transport on an embedded PostgreSQL, SOCKETS readers on one channel in a
// separate client process (pinned to another core with taskset when it exists), MESSAGES
// pg_notify calls; it reports delivered frames per second for each transport.
//
//   npx vite-node bench/transport-quick.ts [sockets] [messages]
//
// It reports and never fails on a slow machine.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import postgres from 'postgres';
import WebSocket from 'ws';
import { startEmbeddedPostgres } from '../src/embedded.js';
import { createLogger } from '../src/log.js';
import { start } from '../src/server.js';
import type { Config } from '../src/types.js';

const SECRET = 'bench-secret-that-is-long-enough-for-hs256';
const LISTEN_CHANNEL = 'postgres-websockets-listener';
const CHANNEL = 'fanout';

if (process.argv[2] === '--client') await runClients(process.argv[3] ?? '', Number(process.argv[4]), Number(process.argv[5]));
else await main(Number(process.argv[2] ?? 2000), Number(process.argv[3] ?? 200));

async function main(sockets: number, messages: number): Promise<void> {
  const db = await startEmbeddedPostgres();
  const sql = postgres(db.uri, { max: 1, onnotice: () => undefined });
  const rows: Record<string, string | number>[] = [];
  try {
    for (const transport of ['uws', 'ws'] as const) rows.push(await measure(db.uri, sql, transport, sockets, messages));
  } finally {
    await sql.end();
    await db.stop();
  }
  console.table(rows);
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, ${sockets} sockets x ${messages} messages`);
}

async function measure(
  uri: string,
  sql: postgres.Sql,
  transport: 'uws' | 'ws',
  sockets: number,
  messages: number,
): Promise<Record<string, string | number>> {
  const config: Config = {
    dbUri: uri, jwtSecret: SECRET, jwtSecretIsBase64: false, host: '127.0.0.1', port: 0,
    listenChannel: LISTEN_CHANNEL, metaChannel: undefined, rootPath: undefined, poolSize: 2, retries: 1,
    checkListenerInterval: 0, certificateFile: undefined, keyFile: undefined, adminPort: undefined, adminHost: '127.0.0.1', transport, logLevel: 'silent', embedded: false,
    jwksUrl: undefined, jwtAudience: undefined, jwtIssuer: undefined, modeClaim: 'mode', channelsClaim: 'channels', defaultMode: undefined, jwtCookie: undefined, allowedOrigins: undefined,
  };
  const server = await start(config, { log: createLogger('silent') });
  const jwt = await new SignJWT({ mode: 'r' }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET));
  const url = `ws://127.0.0.1:${server.port}/${CHANNEL}/${jwt}`;
  const self = fileURLToPath(import.meta.url);
  const args = [fileURLToPath(new URL('../node_modules/vite-node/vite-node.mjs', import.meta.url)), self, '--client', url, String(sockets), String(messages)];
  const child = hasTaskset() ? spawn('taskset', ['-c', '1', process.execPath, ...args]) : spawn(process.execPath, args);
  child.stderr.pipe(process.stderr);
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => String((await lines.next()).value ?? '');
  if ((await next()) !== 'ready') throw new Error('client process did not open its sockets');

  const started = process.hrtime.bigint();
  // All NOTIFYs in one statement, so they arrive together and the fan-out, not the commit path,
  // is measured; payloads differ (PostgreSQL folds identical ones within a transaction).
  await sql`
    SELECT pg_notify(${LISTEN_CHANNEL}, json_build_object('channel', ${CHANNEL}::text, 'payload', 'message ' || i)::text)
    FROM generate_series(1, ${messages}::int) AS i`;
  const done = await next();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await once(child, 'exit');
  await server.stop();
  const frames = sockets * messages;
  return { transport, sockets, messages, frames, 'seconds': Number(seconds.toFixed(2)), 'frames/s': Math.round(frames / seconds), client: done };
}

/** The client process: opens the sockets, says "ready", then "done" once every frame arrived. */
async function runClients(url: string, sockets: number, messages: number): Promise<void> {
  let received = 0;
  const expected = sockets * messages;
  const all: WebSocket[] = [];
  const finished = new Promise<void>((resolve) => {
    const onMessage = (): void => {
      received += 1;
      if (received === expected) resolve();
    };
    for (let i = 0; i < sockets; i++) {
      const ws = new WebSocket(url);
      ws.on('message', onMessage);
      all.push(ws);
    }
  });
  await Promise.all(all.map((ws) => once(ws, 'open')));
  process.stdout.write('ready\n');
  await finished;
  process.stdout.write(`done ${received}\n`);
  for (const ws of all) ws.terminate();
  process.exit(0);
}

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return os.cpus().length > 1;
  } catch {
    return false;
  }
}
