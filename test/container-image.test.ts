// The Docker image as users build and run it: `docker build -t pgws .` from the repo root,
// then the container against PostgreSQL 17 on a user network, secrets as files, the admin
// port published, TLS from mounted files, and `docker stop`. Needs a Docker engine (skipped
// with the reason when none answers). Not transport-specific: it tests the image's own uws.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { connect, type TestClient } from './harness/client.js';
import {
  createNetwork,
  docker,
  dockerQuiet,
  followLogs,
  hostPort,
  httpGet,
  inspect,
  metricValue,
  pollUntil,
  probeEngine,
  runContainer,
  uniqueName,
  waitForHttp,
  type LogFollower,
} from './harness/docker.js';
import { track } from './harness/leftovers.js';
import { SECRET } from './harness/pgws.js';
import { hasOpenssl, makeCertificate } from './harness/tls.js';
import { token } from './harness/tokens.js';
import { within } from './harness/within.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const LISTEN_CHANNEL = 'postgres-websockets-listener';
const DB_PASSWORD = 'pgws-image-test';
/** What pgws may add to its base image (docker images counts 1 MB as 10^6 bytes). */
const SIZE_BUDGET = 40e6;

const probe = await probeEngine();
if (!probe.ok) console.warn(`container-image.test.ts skipped: ${probe.reason}`);

describe.skipIf(!probe.ok)(`the Docker image${probe.ok ? '' : ` (skipped: ${probe.reason})`}`, () => {
  const run = uniqueName('pgws-image-test');
  const network = run;
  const dbName = `${run}-db`;
  const appName = `${run}-pgws`;
  let dbPort = 0;
  let appPort = 0;
  let adminPort = 0;
  let logs: LogFollower;

  const psql = (sqlText: string): Promise<unknown> =>
    docker(['exec', dbName, 'psql', '-U', 'postgres', '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', sqlText]);
  const notifyFromDb = (channel: string, payload: string): Promise<unknown> =>
    psql(`select pg_notify('${LISTEN_CHANNEL}', json_build_object('channel', '${channel}', 'payload', '${payload}')::text)`);
  const socket = async (claims: Record<string, unknown>, channel = 'chat'): Promise<TestClient> =>
    connect(`ws://127.0.0.1:${appPort}/${channel}/${await token(claims)}`);

  it('builds with `docker build -t pgws .` from the repo root, adding under 40 MB to node:22-trixie-slim', async () => {
    const started = Date.now();
    await docker(['build', '-t', 'pgws', '-t', 'pgws:test', '.'], { cwd: ROOT, timeoutMs: 900_000 });
    const seconds = (Date.now() - started) / 1000;
    const size = Number(await inspect('pgws:test', '{{.Size}}'));
    const base = Number(await inspect('node:22-trixie-slim', '{{.Size}}'));
    console.log(
      `image pgws:test: ${(size / 1e6).toFixed(1)} MB, base node:22-trixie-slim ${(base / 1e6).toFixed(1)} MB, ` +
        `added ${((size - base) / 1e6).toFixed(1)} MB; built in ${seconds.toFixed(0)} s`,
    );
    expect(size - base).toBeLessThan(SIZE_BUDGET);
    // Of the 114 MB uWebSockets.js package, only the binary of the image's own node is left;
    // the static page is there for PGWS_ROOT_PATH, with the client library it loads in v2 mode
    // and pgws/client's build with its types; the process runs as `node`, not root.
    const script =
      "const fs = require('node:fs');" +
      "console.log(JSON.stringify({ binaries: fs.readdirSync('node_modules/uWebSockets.js').filter((f) => f.endsWith('.node')), " +
      "own: `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`, " +
      "page: fs.existsSync('client-example/index.html'), client: fs.existsSync('client-example/pgws-client.js'), " +
      "library: fs.existsSync('dist/client/index.js') && fs.existsSync('dist/client/index.d.ts'), uid: process.getuid() }))";
    const { stdout } = await docker(['run', '--rm', '--entrypoint', 'node', 'pgws:test', '-e', script]);
    const inside = JSON.parse(stdout) as { binaries: string[]; own: string; page: boolean; client: boolean; library: boolean; uid: number };
    expect(inside.binaries).toEqual([inside.own]);
    expect(inside.page).toBe(true);
    expect(inside.client).toBe(true);
    expect(inside.library).toBe(true);
    expect(inside.uid).toBe(1000);
  }, 900_000);

  it('starts against postgres:17 on a user network, with secrets as files', async () => {
    await createNetwork(network);
    await runContainer(dbName, [
      '--network', network, '--stop-timeout', '10', '-p', '127.0.0.1::5432',
      '-e', `POSTGRES_PASSWORD=${DB_PASSWORD}`, 'postgres:17',
    ]);
    dbPort = await hostPort(dbName, '5432/tcp');
    await pollUntil(
      async () => ((await dockerQuiet(['exec', dbName, 'pg_isready', '-U', 'postgres', '-h', '127.0.0.1'])).ok ? true : undefined),
      60_000,
      'postgres:17 accepts connections',
    );

    // Secrets as files, the way the README runs the image: readable by the image's user (1000).
    const secrets = mkdtempSync(join(tmpdir(), 'pgws-secrets-'));
    track(() => rmSync(secrets, { recursive: true, force: true }));
    chmodSync(secrets, 0o755);
    writeFileSync(join(secrets, 'db_uri'), `postgres://postgres:${DB_PASSWORD}@${dbName}:5432/postgres\n`, { mode: 0o644 });
    writeFileSync(join(secrets, 'jwt_secret'), `${SECRET}\n`, { mode: 0o644 });

    await runContainer(appName, [
      '--network', network, '-p', '127.0.0.1::3000', '-p', '127.0.0.1::9090',
      '-v', `${secrets}:/run/secrets:ro`,
      '-e', 'PGWS_DB_URI=@/run/secrets/db_uri',
      '-e', 'PGWS_JWT_SECRET=@/run/secrets/jwt_secret',
      '-e', 'PGWS_ADMIN_PORT=9090',
      'pgws:test',
    ]);
    logs = followLogs(appName);
    appPort = await hostPort(appName, '3000/tcp');
    adminPort = await hostPort(appName, '9090/tcp');
    await logs.waitFor((l) => l.msg === 'pgws ready', 30_000, 'pgws ready');
  }, 120_000);

  it('logs the uws transport with TLS available in its `pgws ready` line', async () => {
    const ready = await logs.waitFor((l) => l.msg === 'pgws ready', 1000, 'pgws ready');
    // The standard build, with its version read from its package (its `exports` hides package.json).
    expect(String(ready.transport)).toMatch(/^uws \(uWebSockets.js 20\.57\.0\)$/);
    expect(ready.tlsAvailable).toBe(true);
  });

  it('answers /health (200 ok) and /ready (200) on the admin port', async () => {
    const health = await waitForHttp(`http://127.0.0.1:${adminPort}/health`, 200, 10_000);
    expect(health.body.trim()).toBe('ok');
    await waitForHttp(`http://127.0.0.1:${adminPort}/ready`, 200, 10_000);
  });

  it('relays a pg_notify run in the postgres container to a WebSocket client on the host', async () => {
    const reader = await socket({ mode: 'r', channel: 'chat' });
    await notifyFromDb('chat', 'hello from the database');
    expect(JSON.parse(await reader.next())).toEqual({ channel: 'chat', payload: 'hello from the database' });
    await reader.close();
  });

  it('relays a socket frame to a raw LISTEN on the published postgres port', async () => {
    const sql = postgres(`postgres://postgres:${DB_PASSWORD}@127.0.0.1:${dbPort}/postgres`, { max: 1, onnotice: () => undefined });
    track(() => sql.end({ timeout: 1 }));
    const heard: string[] = [];
    let wake: (() => void) | undefined;
    await sql.listen(LISTEN_CHANNEL, (payload) => {
      heard.push(payload);
      wake?.();
    });
    const writer = await socket({ mode: 'rw', channel: 'chat', sub: 'image-test' });
    writer.send('hello from a socket');
    const envelope = await within(
      new Promise<string>((res) => {
        const check = (): void => {
          const found = heard.find((p) => p.includes('hello from a socket'));
          if (found) res(found);
        };
        wake = check;
        check();
      }),
      10_000,
      'the frame as a NOTIFY',
    );
    expect(JSON.parse(envelope)).toMatchObject({
      event: 'WebsocketMessage',
      channel: 'chat',
      payload: 'hello from a socket',
      claims: { mode: 'rw', channel: 'chat', sub: 'image-test' },
    });
    await writer.close();
  });

  it('serves /metrics on the admin port, with pgws_ series that move', async () => {
    const before = await httpGet(`http://127.0.0.1:${adminPort}/metrics`);
    expect(before.status).toBe(200);
    expect(before.contentType).toMatch(/^text\/plain/);
    expect(before.body).toMatch(/^pgws_sockets_open /m);

    const client = await socket({ mode: 'rw', channel: 'metrics' }, 'metrics');
    client.send('counted');
    expect(JSON.parse(await client.next())).toMatchObject({ payload: 'counted' }); // processed end to end
    const after = await httpGet(`http://127.0.0.1:${adminPort}/metrics`);
    expect(metricValue(after.body, 'pgws_upgrades_total', { status: '101' })).toBeGreaterThan(
      metricValue(before.body, 'pgws_upgrades_total', { status: '101' }),
    );
    expect(metricValue(after.body, 'pgws_frames_received_total')).toBeGreaterThan(
      metricValue(before.body, 'pgws_frames_received_total'),
    );
    expect(metricValue(after.body, 'pgws_sockets_open')).toBeGreaterThanOrEqual(1);
    await client.close();
  });

  it('turns `healthy` through its HEALTHCHECK', async () => {
    const status = await pollUntil(
      async () => {
        const s = await inspect(appName, '{{.State.Health.Status}}');
        return s === 'healthy' || s === 'unhealthy' ? s : undefined;
      },
      60_000,
      'a health verdict',
      500,
    );
    const log = await inspect(appName, '{{json .State.Health.Log}}');
    expect(status, log).toBe('healthy');
  }, 90_000);

  it.skipIf(!hasOpenssl())('serves wss:// from mounted certificate files, and its healthcheck speaks https', async () => {
    const cert = makeCertificate();
    const dir = dirname(cert.certFile);
    chmodSync(dir, 0o755);
    chmodSync(cert.certFile, 0o644);
    chmodSync(cert.keyFile, 0o644);
    const tlsName = `${run}-tls`;
    await runContainer(tlsName, [
      '--network', network, '-p', '127.0.0.1::3000',
      '-v', `${dir}:/run/secrets:ro`,
      '-e', `PGWS_DB_URI=postgres://postgres:${DB_PASSWORD}@${dbName}:5432/postgres`,
      '-e', `PGWS_JWT_SECRET=${SECRET}`,
      '-e', 'PGWS_CERTIFICATE_FILE=/run/secrets/cert.pem',
      '-e', 'PGWS_KEY_FILE=/run/secrets/key.pem',
      'pgws:test',
    ]);
    const tlsLogs = followLogs(tlsName);
    const ready = await tlsLogs.waitFor((l) => l.msg === 'pgws ready', 30_000, 'pgws ready (TLS)');
    expect(ready.tls).toBe(true);
    expect(String(ready.transport)).toMatch(/^uws/);
    const port = await hostPort(tlsName, '3000/tcp');

    const reader = await connect(`wss://127.0.0.1:${port}/chat/${await token({ mode: 'r', channel: 'chat' })}`, { ca: cert.pem });
    await notifyFromDb('chat', 'over tls');
    expect(JSON.parse(await reader.next())).toEqual({ channel: 'chat', payload: 'over tls' });
    await reader.close();

    const check = await docker(['exec', tlsName, 'node', 'dist/healthcheck.js']);
    expect(check.stdout.trim()).toBe('ok: https://127.0.0.1:3000/health');
    await dockerQuiet(['rm', '-f', '-v', tlsName]);
  }, 90_000);

  it('on `docker stop -t 10` closes sockets with 1001 and exits 0', async () => {
    const client = await socket({ mode: 'r', channel: 'chat' });
    const started = Date.now();
    await docker(['stop', '-t', '10', appName], { timeoutMs: 30_000 });
    const closed = await within(client.closed, 5000, 'the socket closes');
    expect(closed.code).toBe(1001);
    expect(await inspect(appName, '{{.State.ExitCode}}')).toBe('0');
    expect(Date.now() - started).toBeLessThan(10_000); // stopped by itself, not killed at the deadline
    expect(logs.lines.some((l) => l.msg === 'pgws stopped')).toBe(true);
  }, 60_000);
});
