// The example page (client-example/) in headless Chromium against a real pgws and a
// real PostgreSQL: what a person clicking through it sees. Checks are on text the page
// shows (status pill, panes, claims, subscriptions), found by element id, never on the
// page's internals. v1 mode is the browser's own WebSocket, as postgres-websockets clients
// use it; v2 mode is pgws/client, which the page loads from the server that serves it
// (client-example/pgws-client.js, copied there by `npm run build`).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Locator, Page } from 'playwright-core';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { chromiumMissing, launchChromium, openPage, seeText, type TestPage } from './harness/browser.js';
import { connect } from './harness/client.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { LISTEN_CHANNEL, startPgws, type TestServer } from './harness/pgws.js';
import { token } from './harness/tokens.js';
import { until } from './harness/within.js';

const ROOT = path.resolve(fileURLToPath(new URL('../client-example', import.meta.url)));
const META = 'meta';

// Without Chromium the page tests below are skipped, never passed: this test says why in
// the run's summary (a skipped describe alone shows no reason).
if (chromiumMissing !== undefined) {
  it('example page: needs Chromium', (ctx) => ctx.skip(chromiumMissing));
}

describe.skipIf(chromiumMissing !== undefined)(
  chromiumMissing === undefined ? 'example page in headless Chromium' : `example page in headless Chromium: SKIPPED, ${chromiumMissing}`,
  () => {
    let db: TestDatabase;
    let srv: TestServer;
    let browser: Browser;
    let jwt: string;
    let tab: TestPage;
    let page: Page;

    beforeAll(async () => {
      [db, browser, jwt] = await Promise.all([createTestDatabase(), launchChromium(), token({ mode: 'rw', channels: ['chat', META] })]);
      srv = await startPgws(db.uri, { rootPath: ROOT, metaChannel: META });
    });

    beforeEach(async () => {
      tab = await openPage(browser);
      page = tab.page;
      const res = await page.goto(`${srv.http}/#token=${jwt}`);
      expect(res?.status()).toBe(200);
    });

    afterEach(async () => {
      const errors = [...tab.pageErrors];
      await tab.close();
      expect(errors, 'uncaught errors in the page').toEqual([]);
    });

    const status = (): Locator => page.locator('#status');
    const messages = (): Locator => page.locator('#messages-log > li');
    const metaEvents = (): Locator => page.locator('#meta-log > li');

    async function expectStatus(state: string, text: string | RegExp): Promise<void> {
      await seeText(status(), [text], `status pill (${state})`);
      expect(await status().getAttribute('data-state')).toBe(state);
    }

    async function connectPage(label: string): Promise<void> {
      await page.locator('#connect').click();
      await expectStatus('open', `Open · ${label}`);
      await seeText(page.locator('#connect'), ['Disconnect'], 'connect button while open');
    }

    it('reads the token from the address fragment and shows its claims', async () => {
      await expectStatus('idle', 'Not connected');
      await seeText(page.locator('#claim-mode'), ['rw — read and write'], 'mode claim');
      await seeText(page.locator('#claim-channels button'), ['chat'], 'channel chip chat');
      await seeText(page.locator('#claim-channels button'), [META], 'channel chip meta');
      await seeText(page.locator('#claim-exp'), ['never (no exp claim)'], 'expiry');
      await seeText(page.locator('#url-preview'), ['/chat/<token>'], 'URL preview');
      expect(await page.locator('#token-problems').isHidden(), 'no warnings about a good token').toBe(true);
    });

    it('connects on one channel, gets its own message back as a WebsocketMessage envelope and a pg_notify from SQL', async () => {
      await connectPage('chat');

      await page.locator('#message').fill('hello from the browser');
      await page.locator('#send').click();
      await seeText(
        messages(),
        ['WebsocketMessage', 'chat', 'hello from the browser', 'Claims · mode rw · delivered'],
        'own message echoed as an envelope',
      );
      expect(await page.locator('#message').inputValue(), 'message box emptied after sending').toBe('');

      await db.sql.unsafe(
        `SELECT pg_notify('${LISTEN_CHANNEL}', json_build_object('channel','chat','payload','from sql')::text)`,
      );
      await seeText(messages(), ['chat', 'from sql'], 'pg_notify from SQL');
      await seeText(page.locator('#messages-count'), [/^2$/], 'received count');
      // The connection notes show the address with the token left out.
      await seeText(messages(), ['Connected to ws://', '/chat/<token>'], 'connection note');
      expect(await page.locator('body').innerText(), 'the token is never written into the page').not.toContain(jwt);

      await page.locator('#connect').click();
      await expectStatus('closed', 'Closed · 1000 normal closure');
      await seeText(page.locator('#connect'), ['Connect'], 'connect button after disconnect');
      expect(await page.locator('#message').isDisabled(), 'message box disabled when not connected').toBe(true);
    });

    it('on all channels of the token, shows ConnectionOpen and ConnectionClose of another socket in the Meta events pane', async () => {
      await page.locator('#all-channels').check();
      await seeText(page.locator('#url-preview'), [/^\/<token>$/], 'URL preview for all channels');
      await connectPage('all token channels');
      // The page's own socket: its ConnectionOpen names both channels of the token.
      await seeText(metaEvents(), ['ConnectionOpen', `Channels: chat, ${META}`], "the page's own ConnectionOpen");

      // Another socket, on the meta channel only: no other socket of this file has just that channel.
      const other = await connect(`${srv.url}/${META}/${jwt}`);
      const othersEvents = metaEvents().filter({ has: page.getByText(`Channels: ${META}`, { exact: true }) });
      await seeText(othersEvents, ['ConnectionOpen'], "the other socket's ConnectionOpen");
      await other.close();
      await seeText(othersEvents, ['ConnectionClose'], "the other socket's ConnectionClose");
      await seeText(page.locator('#meta-count'), [/^3$/], 'meta event count');
      const order = (await metaEvents().allInnerTexts()).map((t) => /Connection(Open|Close)/.exec(t)?.[0]);
      expect(order).toEqual(['ConnectionOpen', 'ConnectionOpen', 'ConnectionClose']);
      // Meta events go to their own pane, not to Messages.
      expect(await messages().filter({ hasText: /Connection(Open|Close)/ }).count()).toBe(0);

      await page.locator('#connect').click();
      await expectStatus('closed', 'Closed · 1000 normal closure');
    });

    // ---- v2 mode

    const subRow = (label: string): Locator => page.locator('#subs-list > li').filter({ has: page.locator('.sub-label', { hasText: label }) });
    const messagesOf = (label: string): Locator => messages().filter({ has: page.locator('.sub-label', { hasText: label }) });
    const notify = (payload: unknown): Promise<unknown> =>
      db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${JSON.stringify({ channel: 'chat', payload })})`;

    async function connectV2(): Promise<void> {
      await page.locator('label[for="protocol-v2"]').click();
      expect(await page.locator('#v1-fields').isHidden(), 'v1 channel fields hidden in v2').toBe(true);
      expect(await page.locator('#subs-card').isVisible(), 'subscriptions card shown in v2').toBe(true);
      await seeText(page.locator('#v2-target'), ['pgws.bearer.<token>', 'never in the address'], 'where v2 puts the token');
      await page.locator('#connect').click();
      await expectStatus('open', 'Open · v2');
      await seeText(messages(), ['Connected to ws://', '(pgws.v2)'], 'connection note');
    }

    async function subscribe(channel: string, filter: string, label: string): Promise<Locator> {
      await page.locator('#sub-channel').fill(channel);
      await page.locator('#sub-filter').fill(filter);
      await page.locator('#subscribe').click();
      return seeText(subRow(label), [label, channel], `subscription ${label} listed`);
    }

    it('v2: on one socket, adds a filtered and an unfiltered subscription; a pg_notify reaches the ones it matches, tagged with each; removes one', async () => {
      await connectV2();
      await seeText(await subscribe('chat', '{"payload.room": 7}', 'S1'), ['active', 'filter {"payload.room":7}'], 'S1 active');
      await seeText(await subscribe('chat', '', 'S2'), ['active', 'no filter'], 'S2 active');
      await seeText(page.locator('#subs-count'), [/^2$/], 'subscription count');
      await until(() => srv.server.socketCount() === 1, 5_000, 'one socket for both subscriptions');

      await notify({ room: 1, text: 'for S2 only' });
      await notify({ room: 7, text: 'for both' });
      await seeText(messagesOf('S2'), ['for S2 only'], 'S2 gets room 1');
      await seeText(messagesOf('S2'), ['for both'], 'S2 gets room 7');
      await seeText(messagesOf('S1'), ['for both'], 'S1 gets room 7');
      await seeText(subRow('S1').locator('.count'), [/^1$/], 'S1 received count');
      await seeText(subRow('S2').locator('.count'), [/^2$/], 'S2 received count');
      expect(await messagesOf('S1').count(), 'S1 got only the match').toBe(1);

      await subRow('S1').getByRole('button', { name: /Unsubscribe S1/ }).click();
      await seeText(messages(), ['Unsubscribed S1 on chat'], 'unsubscribe note');
      expect(await subRow('S1').count(), 'S1 row removed').toBe(0);
      await seeText(page.locator('#subs-count'), [/^1$/], 'subscription count after removal');
      await notify({ room: 7, text: 'after S1 left' });
      await seeText(messagesOf('S2'), ['after S1 left'], 'S2 still subscribed');
      expect(await messagesOf('S1').count(), 'nothing more for S1').toBe(1);
      expect(srv.server.socketCount()).toBe(1);
      expect(await page.locator('body').innerText(), 'the token is never written into the page').not.toContain(jwt);

      await page.locator('#connect').click();
      await expectStatus('closed', 'Closed · v2');
      await until(() => srv.server.socketCount() === 0, 5_000, 'socket closed');
    });

    it('v2: a publish shows the server\'s acknowledgement and comes back through a subscription; a refused one shows its code', async () => {
      await connectV2();
      await subscribe('chat', '', 'S1');
      await seeText(subRow('S1'), ['active'], 'S1 active');
      expect(await page.locator('#send-channel').isVisible(), 'publish channel field in v2').toBe(true);

      await page.locator('#send-channel').fill('chat');
      await page.locator('#message').fill('{"text": "hello v2", "n": 1}');
      await page.locator('#send').click();
      const sent = page.locator('#messages-log > li.sent');
      await seeText(sent, ['hello v2', 'published ✓'], 'acknowledged publish');
      await seeText(messagesOf('S1'), ['WebsocketMessage', 'chat', 'hello v2', 'Claims · mode rw'], 'own publish received as an envelope');
      expect(await page.locator('#message').inputValue(), 'message box emptied').toBe('');

      await page.locator('#send-channel').fill('not-allowed');
      await page.locator('#message').fill('nope');
      await page.locator('#send').click();
      await seeText(sent, ['nope', 'refused · forbidden'], 'refused publish');

      await subscribe('not-allowed', '', 'S2');
      await seeText(subRow('S2'), ['ended', 'forbidden'], 'refused subscription');
      await subRow('S2').getByRole('button', { name: /Remove S2/ }).click();
      expect(await subRow('S2').count(), 'ended row removed').toBe(0);
      await seeText(subRow('S1'), ['active'], 'S1 still active');

      await page.locator('#connect').click();
      await expectStatus('closed', 'Closed · v2');
    });
  },
);
