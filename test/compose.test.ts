// docker-compose.yml as written: `docker compose config`, then `up` of db and pgws (PostgREST's
// image cannot be had on every machine that runs this), the init SQL's trigger delivering an
// inserted row to a socket, and `down -v` leaving nothing behind. Needs a Docker engine with
// `docker compose` (skipped with the reason when none answers).
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { connect, type TestClient } from './harness/client.js';
import { docker, dockerQuiet, freePort, httpGet, probeEngine, uniqueName, waitForHttp } from './harness/docker.js';
import { track } from './harness/leftovers.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const probe = await probeEngine(true);
if (!probe.ok) console.warn(`compose.test.ts skipped: ${probe.reason}`);

interface ComposeConfig {
  services: Record<string, { environment?: Record<string, string | null>; image?: string; ports?: unknown[] }>;
}

interface MessageRow {
  id: number;
  channel: string;
  body: string;
  created_at: string;
}

describe.skipIf(!probe.ok)(`docker-compose.yml${probe.ok ? '' : ` (skipped: ${probe.reason})`}`, () => {
  const project = uniqueName('pgws-compose-test');
  let env: Record<string, string> = {};
  let port = 0;

  const compose = (args: readonly string[], timeoutMs = 120_000): ReturnType<typeof docker> =>
    docker(['compose', '-p', project, ...args], { cwd: ROOT, env, timeoutMs });
  const psql = (sqlText: string): ReturnType<typeof docker> =>
    compose(['exec', '-T', 'db', 'psql', '-U', 'postgres', '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', sqlText]);

  it('`docker compose config` succeeds and gives postgrest and pgws the same JWT secret', async () => {
    env = { PGWS_HOST_PORT: String(await freePort()), POSTGREST_HOST_PORT: String(await freePort()) };
    port = Number(env.PGWS_HOST_PORT);
    const { stdout } = await compose(['config', '--format', 'json']);
    const config = JSON.parse(stdout) as ComposeConfig;
    expect(Object.keys(config.services).sort()).toEqual(['db', 'pgws', 'postgrest']);
    const postgrest = config.services.postgrest?.environment ?? {};
    const pgws = config.services.pgws?.environment ?? {};
    const secret = pgws.PGWS_JWT_SECRET ?? '';
    expect(secret.length).toBeGreaterThanOrEqual(32); // PostgREST refuses shorter HMAC secrets
    expect(postgrest.PGRST_JWT_SECRET).toBe(secret);
    expect(postgrest).toMatchObject({ PGRST_DB_SCHEMAS: 'api', PGRST_DB_ANON_ROLE: 'anon' });
    expect(postgrest.PGRST_DB_URI).toMatch(/^postgres:\/\/authenticator:[^@]+@db:5432\//);
    expect(pgws.PGWS_DB_URI).toMatch(/@db:5432\//);
  });

  it('`up` of db and pgws serves /ready on the published port, and the page at /', async () => {
    // Registered first: whatever fails below, the project's containers, network and volume go.
    track(() =>
      dockerQuiet(['compose', '-p', project, 'down', '-v', '--remove-orphans', '-t', '10'], { cwd: ROOT, env, timeoutMs: 120_000 }),
    );
    await compose(['up', '-d', '--build', 'db', 'pgws'], 900_000);
    await waitForHttp(`http://127.0.0.1:${port}/ready`, 200, 60_000);
    const health = await httpGet(`http://127.0.0.1:${port}/health`);
    expect(health).toMatchObject({ status: 200, body: 'ok' });
    const page = await httpGet(`http://127.0.0.1:${port}/`);
    expect(page.status).toBe(200);
    expect(page.contentType).toMatch(/^text\/html/);
    // The image's HEALTHCHECK, here on the main port (the stack sets no PGWS_ADMIN_PORT).
    const check = await compose(['exec', '-T', 'pgws', 'node', 'dist/healthcheck.js']);
    expect(check.stdout.trim()).toBe('ok: http://127.0.0.1:3000/health');
  }, 900_000);

  it('delivers an inserted row through the init SQL trigger to a socket', async () => {
    // The README's way to a token: `pgws token` inside the pgws container, with the stack's secret.
    // One token serves both services: `role` for PostgREST, `mode` and `channel` for pgws.
    const made = await compose(
      ['exec', '-T', 'pgws', 'pgws', 'token', '--mode', 'r', '--channel', 'chat', '--claim', 'role=web_user', '--exp', '1h'],
    );
    const jwt = made.stdout.trim();
    const claims = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>;
    expect(claims).toMatchObject({ mode: 'r', channel: 'chat', role: 'web_user' });
    const reader: TestClient = await connect(`ws://127.0.0.1:${port}/chat/${jwt}`);
    await psql("insert into api.messages(body) values ('hi')");
    const first = JSON.parse(await reader.next(10_000)) as { channel: string; payload: MessageRow };
    expect(first).toEqual({
      channel: 'chat',
      payload: { id: expect.any(Number), channel: 'chat', body: 'hi', created_at: expect.any(String) },
    });

    // As PostgREST inserts for a token with `role: web_user`: the grants and trigger work for it.
    await psql("begin; set local role web_user; insert into api.messages(body) values ('via web_user'); commit;");
    const second = JSON.parse(await reader.next(10_000)) as { channel: string; payload: MessageRow };
    expect(second.payload).toMatchObject({ channel: 'chat', body: 'via web_user', id: first.payload.id + 1 });

    // anon (requests without a token) may read but not write.
    const anon = await dockerQuiet(
      ['compose', '-p', project, 'exec', '-T', 'db', 'psql', '-U', 'postgres', '-v', 'ON_ERROR_STOP=1', '-c',
        "begin; set local role anon; insert into api.messages(body) values ('no');"],
      { cwd: ROOT, env },
    );
    expect(anon.ok).toBe(false);
    expect(anon.stderr).toMatch(/permission denied/);
    expect((await psql('begin; set local role anon; select count(*) from api.messages;')).stdout).toMatch(/^2$/m);
    await reader.close();
  }, 60_000);

  it('`down -v` leaves no container, volume or network of the project', async () => {
    await compose(['down', '-v', '--remove-orphans', '-t', '10']);
    const label = `label=com.docker.compose.project=${project}`;
    expect((await docker(['ps', '-a', '-q', '--filter', label])).stdout.trim()).toBe('');
    expect((await docker(['volume', 'ls', '-q', '--filter', label])).stdout.trim()).toBe('');
    expect((await docker(['network', 'ls', '-q', '--filter', label])).stdout.trim()).toBe('');
    // By name too, in case an engine does not filter by label.
    const volumes = (await docker(['volume', 'ls', '--format', '{{.Name}}'])).stdout;
    const networks = (await docker(['network', 'ls', '--format', '{{.Name}}'])).stdout;
    expect(volumes + networks).not.toContain(project);
  }, 120_000);
});
