// A WebSocket test client (the `ws` package) that queues frames from the moment
// it opens, so no message is missed between connecting and the first await.
import WebSocket from 'ws';
import { track } from './leftovers.js';

export interface Closed {
  readonly code: number;
  readonly reason: string;
}

export interface TestClient {
  readonly ws: WebSocket;
  /** The next frame as text; rejects after `timeoutMs` without one. */
  next(timeoutMs?: number): Promise<string>;
  nextJson<T = Record<string, unknown>>(timeoutMs?: number): Promise<T>;
  /** "Does not happen" check: resolves if no frame arrives within `ms`, rejects with the frame otherwise. */
  expectNoMessage(ms?: number): Promise<void>;
  send(data: string | Buffer, options?: { binary?: boolean }): void;
  readonly closed: Promise<Closed>;
  close(code?: number): Promise<Closed>;
}

export type Handshake = { readonly ok: true; readonly client: TestClient } | Extract<UpgradeOutcome, { ok: false }>;

/** How an upgrade was answered: the socket opened, or the HTTP refusal with its body. */
export type UpgradeOutcome = { readonly ok: true } | { readonly ok: false; readonly status: number; readonly body: string };

/**
 * Settles once `ws`'s upgrade is answered; rejects on a network error. Attach message listeners
 * before calling it: a first frame can arrive in the same read as the 101. Once open, later
 * socket errors are ignored (the close event reports them).
 */
export function upgradeOutcome(ws: WebSocket): Promise<UpgradeOutcome> {
  return new Promise((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ ok: false, status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    ws.once('error', (err) => reject(err));
    ws.once('open', () => {
      ws.removeAllListeners('error');
      ws.on('error', () => undefined);
      track(() => {
        if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
      });
      resolve({ ok: true });
    });
  });
}

/** The close code and reason of `ws`, once it closes. */
export function closedOf(ws: WebSocket): Promise<Closed> {
  return new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

/** A frame's text, whether ws hands it over as a Buffer or an ArrayBuffer. */
export function frameText(data: WebSocket.RawData): string {
  return Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
}

/** `protocols`: the subprotocols offered (Sec-WebSocket-Protocol); the one selected is `client.ws.protocol`. */
export async function handshake(url: string, options: WebSocket.ClientOptions = {}, protocols: readonly string[] = []): Promise<Handshake> {
  const ws = new WebSocket(url, [...protocols], options);
  const queue: string[] = [];
  const waiting: ((text: string) => void)[] = [];
  ws.on('message', (data: WebSocket.RawData) => {
    const text = frameText(data);
    const waiter = waiting.shift();
    if (waiter) waiter(text);
    else queue.push(text);
  });
  const closed = closedOf(ws);
  const outcome = await upgradeOutcome(ws);
  if (!outcome.ok) return outcome;
  const client: TestClient = {
    ws,
    next(timeoutMs = 5000) {
      const queued = queue.shift();
      if (queued !== undefined) return Promise.resolve(queued);
      return new Promise((res, rej) => {
        const timer = setTimeout(() => {
          waiting.splice(waiting.indexOf(deliver), 1);
          rej(new Error(`no message within ${timeoutMs} ms`));
        }, timeoutMs);
        const deliver = (text: string): void => {
          clearTimeout(timer);
          res(text);
        };
        waiting.push(deliver);
        void closed.then(({ code, reason }) => {
          if (waiting.includes(deliver)) {
            waiting.splice(waiting.indexOf(deliver), 1);
            clearTimeout(timer);
            rej(new Error(`socket closed (${code} ${reason}) while waiting for a message`));
          }
        });
      });
    },
    async nextJson<T>(timeoutMs?: number) {
      return JSON.parse(await client.next(timeoutMs)) as T;
    },
    async expectNoMessage(ms = 300) {
      const got = await client.next(ms).then(
        (text) => text,
        () => undefined,
      );
      if (got !== undefined) throw new Error(`expected no message, got ${got}`);
    },
    send(data, opts) {
      ws.send(data, { binary: opts?.binary ?? false });
    },
    closed,
    async close(code = 1000) {
      if (ws.readyState === WebSocket.OPEN) ws.close(code);
      return closed;
    },
  };
  return { ok: true, client };
}

export async function connect(url: string, options?: WebSocket.ClientOptions): Promise<TestClient> {
  const result = await handshake(url, options);
  if (!result.ok) throw new Error(`handshake rejected: ${result.status} ${result.body.trim()}`);
  return result.client;
}
