// The example page (client-example/) in headless Chromium against a real pgws and a
// real PostgreSQL: what a person clicking through it sees. Checks are on text the page
// shows (status pill, panes, claims), found by element id, never on the page's internals.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Locator, Page } from 'playwright-core';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { chromiumMissing, launchChromium, openPage, seeText, type TestPage } from './harness/browser.js';
import { connect } from './harness/client.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { LISTEN_CHANNEL, startPgws, type TestServer } from './harness/pgws.js';
import { token } from './harness/tokens.js';

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
  },
);
