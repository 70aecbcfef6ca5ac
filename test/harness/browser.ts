// Headless Chromium for tests of the example page (client-example/), driven by
// playwright-core. The browser is Debian's `chromium` package, not a download:
// a test that needs it is skipped, with this reason, when it is not installed.
import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { track } from './leftovers.js';

export const CHROMIUM_PATH = '/usr/bin/chromium';

/** Why browser tests cannot run here, or undefined when they can. */
export const chromiumMissing: string | undefined = existsSync(CHROMIUM_PATH)
  ? undefined
  : `${CHROMIUM_PATH} not found: install it with \`apt-get install chromium\` to run the browser tests`;

/** Default deadline of one auto-waiting check on the page, in ms. */
export const PAGE_TIMEOUT = 5_000;

/** Launches headless Chromium; it is closed when the file's tests end. */
export async function launchChromium(): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    // The background-networking flags stop Chromium from phoning home: on a closed
    // network those attempts are refused and slow every launch down.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  track(() => browser.close());
  return browser;
}

export interface TestPage {
  readonly page: Page;
  readonly context: BrowserContext;
  /** Uncaught exceptions thrown by the page's own scripts, as text. */
  readonly pageErrors: string[];
  close(): Promise<void>;
}

/** A page in a fresh browser context (no cookies, storage or cache shared with other tests). */
export async function openPage(browser: Browser): Promise<TestPage> {
  const context = await browser.newContext();
  context.setDefaultTimeout(PAGE_TIMEOUT);
  track(() => context.close());
  const page = await context.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  return { page, context, pageErrors, close: () => context.close() };
}

/**
 * Waits until `locator` matches at least one element whose text contains every one of
 * `texts` (playwright's auto-waiting `hasText`, substring or RegExp). On timeout it fails
 * with `what` and the text the locator's elements show, not playwright's bare timeout.
 */
export async function seeText(locator: Locator, texts: (string | RegExp)[], what: string, timeout = PAGE_TIMEOUT): Promise<Locator> {
  let match = locator;
  for (const text of texts) match = match.filter({ hasText: text });
  try {
    await match.first().waitFor({ state: 'visible', timeout });
  } catch {
    const shown = (await locator.allInnerTexts().catch(() => [] as string[])).map((t) => t.replace(/\s+/g, ' ').trim());
    throw new Error(
      `${what}: no element of ${locator.toString()} shows ${texts.map(String).join(' + ')} within ${timeout} ms; ` +
        `it shows ${shown.length === 0 ? 'nothing' : JSON.stringify(shown)}`,
    );
  }
  return match;
}
