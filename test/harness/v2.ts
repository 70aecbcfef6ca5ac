// A raw pgws.v2 test client on top of the `ws` package: it speaks the frames of PROTOCOL.md §9
// by hand (no client library), so tests see exactly what the server sends. Answers are matched
// to requests by id; `message` frames and unsolicited frames (an `unsubscribed` after a
// refresh, an error with id null) are queued in arrival order.
import WebSocket from 'ws';
import { closedOf, frameText, upgradeOutcome, type Closed, type UpgradeOutcome } from './client.js';

export type Frame = Record<string, unknown> & { readonly type: string };

export interface V2Client {
  readonly ws: WebSocket;
  /** Sends a request with a fresh numeric id (unless it has one) and resolves with the answer of that id. */
  request(frame: Record<string, unknown>, timeoutMs?: number): Promise<Frame>;
  /** Sends text as is (for malformed frames). */
  sendRaw(text: string): void;
  /** The next frame that answers no request of ours: a message, an unsolicited unsubscribed, an error with id null. */
  next(timeoutMs?: number): Promise<Frame>;
  /** Resolves if no unsolicited frame arrives within `ms`; rejects with it otherwise. */
  expectNothing(ms?: number): Promise<void>;
  /** Every frame received, in order, as text (for "exactly this text" checks). */
  readonly texts: string[];
  readonly closed: Promise<Closed>;
  close(): Promise<Closed>;
}

export type V2Open = { readonly ok: true; readonly client: V2Client } | Extract<UpgradeOutcome, { ok: false }>;

/**
 * Opens `url` offering pgws.v2; `token` goes in a `pgws.bearer.` subprotocol when given (else it
 * is expected in the URL).
 */
export async function openV2(url: string, token?: string, options: WebSocket.ClientOptions = {}): Promise<V2Open> {
  const protocols = token === undefined ? ['pgws.v2'] : ['pgws.v2', `pgws.bearer.${token}`];
  const ws = new WebSocket(url, protocols, options);
  const texts: string[] = [];
  const pending = new Map<unknown, (frame: Frame) => void>();
  const queue: Frame[] = [];
  const waiting: ((frame: Frame) => void)[] = [];
  let nextId = 1;
  ws.on('message', (data: WebSocket.RawData) => {
    const text = frameText(data);
    texts.push(text);
    const frame = JSON.parse(text) as Frame;
    const answer = frame.type !== 'message' && 'id' in frame && frame.id !== null ? pending.get(frame.id) : undefined;
    if (answer !== undefined) {
      pending.delete(frame.id);
      answer(frame);
      return;
    }
    const waiter = waiting.shift();
    if (waiter) waiter(frame);
    else queue.push(frame);
  });
  const closed = closedOf(ws);
  const outcome = await upgradeOutcome(ws);
  if (!outcome.ok) return outcome;
  const waitFor = <T>(register: (deliver: (value: T) => void) => () => void, timeoutMs: number, what: string): Promise<T> =>
    new Promise((res, rej) => {
      const timer = setTimeout(() => {
        unregister();
        rej(new Error(`${what}: nothing within ${timeoutMs} ms`));
      }, timeoutMs);
      const unregister = register((value) => {
        clearTimeout(timer);
        res(value);
      });
      void closed.then(({ code, reason }) => {
        clearTimeout(timer);
        unregister();
        rej(new Error(`${what}: socket closed (${code} ${reason})`));
      });
    });
  const client: V2Client = {
    ws,
    texts,
    request(frame, timeoutMs = 5000) {
      const id = 'id' in frame ? frame.id : nextId++;
      const answer = waitFor<Frame>(
        (deliver) => {
          pending.set(id, deliver);
          return () => pending.delete(id);
        },
        timeoutMs,
        `answer to ${String(frame.type)} ${JSON.stringify(id)}`,
      );
      ws.send(JSON.stringify({ ...frame, id }));
      return answer;
    },
    sendRaw(text) {
      ws.send(text);
    },
    next(timeoutMs = 5000) {
      const queued = queue.shift();
      if (queued !== undefined) return Promise.resolve(queued);
      return waitFor<Frame>(
        (deliver) => {
          waiting.push(deliver);
          return () => {
            const at = waiting.indexOf(deliver);
            if (at !== -1) waiting.splice(at, 1);
          };
        },
        timeoutMs,
        'next frame',
      );
    },
    async expectNothing(ms = 300) {
      const got = await client.next(ms).then(
        (frame) => frame,
        () => undefined,
      );
      if (got !== undefined) throw new Error(`expected no frame, got ${JSON.stringify(got)}`);
    },
    closed,
    async close() {
      if (ws.readyState === WebSocket.OPEN) ws.close(1000);
      return closed;
    },
  };
  return { ok: true, client };
}

/** openV2 that must succeed. */
export async function connectV2(url: string, token?: string, options?: WebSocket.ClientOptions): Promise<V2Client> {
  const result = await openV2(url, token, options);
  if (!result.ok) throw new Error(`v2 handshake rejected: ${result.status} ${result.body.trim()}`);
  return result.client;
}
