// pgws/client in a real browser: headless Chromium loads the built library
// (dist/client/index.js, compiled by `npm run build`) as an ES module from a page that pgws
// itself serves (PGWS_ROOT_PATH), and uses the browser's own WebSocket against a real pgws and
// a real PostgreSQL: subscribe with a filter, a pg_notify, a publish and its acknowledgement, a
// refusal as a PgwsError, and a reconnect after the server restarts on the same port.
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freePort } from '../src/embedded.js';
import { chromiumMissing, launchChromium, openPage, type TestPage } from './harness/browser.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { track } from './harness/leftovers.js';
import { LISTEN_CHANNEL, startPgws, type TestServer } from './harness/pgws.js';
import { token } from './harness/tokens.js';
import { until } from './harness/within.js';

const BUILT = fileURLToPath(new URL('../dist/client/index.js', import.meta.url));
const WAIT_MS = 5_000;

// The page's own script: it imports the library and hands the tests window.t.
const INDEX_HTML = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>pgws/client test page</title>
<script type="module">
import { connect, PgwsError } from './pgws-client.js';
const seen = { received: [], states: [], errors: [], resubscribed: [] };
let client;
let sub;
window.t = {
  seen,
  async start(token) {
    client = connect('ws://' + location.host + '/', { token, reconnect: { initialDelayMs: 50, maxDelayMs: 250 } });
    client.on('state', (s) => seen.states.push(s));
    client.on('error', (e) => seen.errors.push({ code: e.code, isPgwsError: e instanceof PgwsError }));
    client.on('resubscribed', (e) => seen.resubscribed.push({ channel: e.channel, recovered: e.recovered }));
    sub = client.subscribe('chat', { filter: { 'payload.room': 7 }, onMessage: (data, meta) => seen.received.push({ data, meta }) });
    await sub.ready;
    return { state: client.state, sub: sub.state };
  },
  async publish(channel, payload) {
    try {
      await client.publish(channel, payload);
      return { ok: true };
    } catch (e) {
      return { ok: false, isPgwsError: e instanceof PgwsError, code: e.code, name: e.name };
    }
  },
  state: () => client.state,
  close: () => client.close(),
};
</script>
</html>
`;

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
interface Seen {
  received: { data: Json; meta: { channel: string; sub: string; offset?: string } }[];
  states: string[];
  errors: { code: string; isPgwsError: boolean }[];
  resubscribed: { channel: string; recovered: boolean }[];
}
type PublishOutcome = { ok: true } | { ok: false; isPgwsError: boolean; code: string; name: string };
interface PageApi {
  seen: Seen;
  start(token: string): Promise<{ state: string; sub: string }>;
  publish(channel: string, payload: Json): Promise<PublishOutcome>;
  state(): string;
  close(): Promise<void>;
}
type PageGlobals = { readonly t: PageApi };

if (chromiumMissing !== undefined) {
  it('pgws/client in a browser: needs Chromium', (ctx) => ctx.skip(chromiumMissing));
}

describe.skipIf(chromiumMissing !== undefined)(
  chromiumMissing === undefined ? 'pgws/client in headless Chromium' : `pgws/client in headless Chromium: SKIPPED, ${chromiumMissing}`,
  () => {
    let db: TestDatabase;
    let browser: Browser;
    let root: string;
    let tab: TestPage;
    let page: Page;

    beforeAll(async () => {
      root = await mkdtemp(path.join(tmpdir(), 'pgws-client-browser-'));
      track(() => rm(root, { recursive: true, force: true }));
      await writeFile(path.join(root, 'index.html'), INDEX_HTML);
      await copyFile(BUILT, path.join(root, 'pgws-client.js'));
      [db, browser] = await Promise.all([createTestDatabase(), launchChromium()]);
    });

    beforeEach(async () => {
      tab = await openPage(browser);
      page = tab.page;
    });

    afterEach(async () => {
      const errors = [...tab.pageErrors];
      await tab.close();
      expect(errors, 'uncaught errors in the page').toEqual([]);
    });

    async function serverOnFreePort(): Promise<TestServer> {
      for (let attempt = 1; ; attempt++) {
        const port = await freePort();
        try {
          return await startPgws(db.uri, { port, rootPath: root });
        } catch (err) {
          if (attempt >= 3 || !String(err).includes('cannot listen')) throw err;
        }
      }
    }

    async function load(srv: TestServer): Promise<void> {
      const res = await page.goto(`${srv.http}/`);
      expect(res?.status()).toBe(200);
      await page.waitForFunction(() => (globalThis as unknown as { t?: PageApi }).t !== undefined, undefined, { timeout: WAIT_MS });
    }

    const seen = (): Promise<Seen> => page.evaluate(() => (globalThis as unknown as PageGlobals).t.seen);
    /** Waits until the page has received `n` messages. */
    const received = (n: number): Promise<unknown> =>
      page.waitForFunction((count) => (globalThis as unknown as PageGlobals).t.seen.received.length >= count, n, { timeout: WAIT_MS });

    const notify = async (payload: Json): Promise<void> => {
      await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${JSON.stringify({ channel: 'chat', payload })})`;
    };

    it('the built library as an ES module: subscribe with a filter, a pg_notify, a publish acknowledged and received, a refusal as a PgwsError', async () => {
      const srv = await serverOnFreePort();
      const jwt = await token({ mode: 'rw', channels: ['chat'] });
      await load(srv);
      const started = await page.evaluate((t) => (globalThis as unknown as PageGlobals).t.start(t), jwt);
      expect(started).toEqual({ state: 'open', sub: 'active' });

      await notify({ room: 1, text: 'not for this page' });
      await notify({ room: 7, text: 'from sql' });
      await received(1);
      expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).t.publish('chat', { room: 7, text: 'from the page' }))).toEqual({ ok: true });
      await received(2);
      const { received: messages, errors, states } = await seen();
      expect(messages.map((m) => m.data)).toEqual([
        { channel: 'chat', payload: { room: 7, text: 'from sql' } },
        expect.objectContaining({ event: 'WebsocketMessage', channel: 'chat', payload: { room: 7, text: 'from the page' } }),
      ]);
      expect(messages[0]?.meta).toEqual({ channel: 'chat', sub: expect.any(String) });

      expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).t.publish('elsewhere', 1))).toEqual({
        ok: false,
        isPgwsError: true,
        code: 'forbidden',
        name: 'PgwsError',
      });
      expect(errors).toEqual([]);
      expect(states).toEqual(['open']);
      // The token travelled as a subprotocol: never in a log line.
      expect(srv.rawLogs.filter((line) => line.includes(jwt))).toEqual([]);
      await page.evaluate(() => (globalThis as unknown as PageGlobals).t.close());
      await until(() => srv.server.socketCount() === 0, WAIT_MS, 'socket closed');
    });

    it('reconnects after the server restarts on the same port, resubscribes, and messages flow again', async () => {
      const first = await serverOnFreePort();
      await load(first);
      const started = await page.evaluate((t) => (globalThis as unknown as PageGlobals).t.start(t), await token({ mode: 'rw' }));
      expect(started).toEqual({ state: 'open', sub: 'active' });
      await notify({ room: 7, n: 1 });
      await received(1);

      await first.stop();
      await page.waitForFunction(() => (globalThis as unknown as PageGlobals).t.state() === 'reconnecting', undefined, { timeout: WAIT_MS });
      // The browser shows a failed attempt as a bare close (no status): connect_failed.
      await page.waitForFunction(() => (globalThis as unknown as PageGlobals).t.seen.errors.length > 0, undefined, { timeout: WAIT_MS });
      const second = await startPgws(db.uri, { port: first.port, rootPath: root });
      await page.waitForFunction(() => (globalThis as unknown as PageGlobals).t.seen.resubscribed.length === 1, undefined, { timeout: WAIT_MS });
      await notify({ room: 7, n: 2 });
      await received(2);

      const { received: messages, errors, states, resubscribed } = await seen();
      expect(messages.map((m) => m.data)).toEqual([
        { channel: 'chat', payload: { room: 7, n: 1 } },
        { channel: 'chat', payload: { room: 7, n: 2 } },
      ]);
      expect(resubscribed).toEqual([{ channel: 'chat', recovered: false }]);
      expect(states).toEqual(['open', 'reconnecting', 'open']);
      expect(errors.length).toBeGreaterThan(0);
      expect(errors.every((e) => e.code === 'connect_failed' && e.isPgwsError)).toBe(true);
      await page.evaluate(() => (globalThis as unknown as PageGlobals).t.close());
      await until(() => second.server.socketCount() === 0, WAIT_MS, 'socket closed');
    });
  },
);
