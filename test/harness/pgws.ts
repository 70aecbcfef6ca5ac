// Start real pgws servers in the test process, on a free port, with their log
// lines captured as parsed JSON so tests can assert on them.
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { inject } from 'vitest';
import { createLogger } from '../../src/log.js';
import { start, type RunningServer, type ServerEvents, type StartOptions } from '../../src/server.js';
import type { Config } from '../../src/types.js';
import { track } from './leftovers.js';

export const SECRET = 'test-secret-that-is-long-enough-for-hs256';
export const LISTEN_CHANNEL = 'postgres-websockets-listener';
/** The transport this vitest project tests (uws, ws, or auto for the unit project). */
export const TRANSPORT = inject('transport');

export type LogLine = Record<string, unknown> & { msg?: string; level?: number };

export interface TestServer {
  readonly server: RunningServer;
  readonly port: number;
  /** ws://127.0.0.1:<port>, or wss:// when the server has a certificate */
  readonly url: string;
  readonly http: string;
  readonly logs: LogLine[];
  /** Raw text of every log line, for "never contains the token" checks. */
  readonly rawLogs: string[];
  /** Resolves on the next such event (or at once for listener-ready if it is ready now). */
  waitFor<E extends keyof ServerEvents>(event: E): Promise<ServerEvents[E]>;
  waitForLog(predicate: (line: LogLine) => boolean): Promise<LogLine>;
  stop(): Promise<void>;
}

export function testConfig(dbUri: string, overrides: Partial<Config> = {}): Config {
  return Object.freeze({
    dbUri,
    jwtSecret: SECRET,
    jwtSecretIsBase64: false,
    host: '127.0.0.1',
    port: 0,
    listenChannel: LISTEN_CHANNEL,
    metaChannel: undefined,
    rootPath: undefined,
    poolSize: 4,
    retries: 1,
    checkListenerInterval: 0,
    maxMessageSize: 7999,
    maxBackpressure: 1024 * 1024,
    maxConnections: 10_000,
    handshakeTimeout: 10_000,
    maxMessagesPerSecond: 0,
    maxQueuedMessages: 256,
    maxSubscriptions: 100,
    journal: false,
    journalRetention: 86_400,
    rpcSchema: undefined,
    rpcDefaultRole: undefined,
    rpcTimeout: 5000,
    certificateFile: undefined,
    keyFile: undefined,
    adminPort: undefined,
    adminHost: '127.0.0.1',
    transport: TRANSPORT,
    logLevel: 'debug',
    embedded: false,
    jwksUrl: undefined,
    jwtAudience: undefined,
    jwtIssuer: undefined,
    modeClaim: 'mode',
    channelsClaim: 'channels',
    defaultMode: undefined,
    jwtCookie: undefined,
    allowedOrigins: undefined,
    ...overrides,
  });
}

export async function startPgws(
  dbUri: string,
  overrides: Partial<Config> = {},
  startOptions: Omit<StartOptions, 'log'> = {},
): Promise<TestServer> {
  const logs: LogLine[] = [];
  const rawLogs: string[] = [];
  const waiters = new Set<{ predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>();
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const text of chunk.toString('utf8').split('\n')) {
        if (!text) continue;
        rawLogs.push(text);
        const line = JSON.parse(text) as LogLine;
        logs.push(line);
        for (const w of waiters) {
          if (w.predicate(line)) {
            waiters.delete(w);
            w.resolve(line);
          }
        }
      }
      done();
    },
  });
  const config = testConfig(dbUri, overrides);
  const log = createLogger(config.logLevel, sink);
  const server = await start(config, { ...startOptions, log });
  track(() => server.stop());
  const secure = config.certificateFile !== undefined;
  return {
    server,
    port: server.port,
    url: `${secure ? 'wss' : 'ws'}://127.0.0.1:${server.port}`,
    http: `${secure ? 'https' : 'http'}://127.0.0.1:${server.port}`,
    logs,
    rawLogs,
    async waitFor(event) {
      return (await once(server.events, event)) as never;
    },
    waitForLog(predicate) {
      const found = logs.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve) => waiters.add({ predicate, resolve }));
    },
    stop: () => server.stop(),
  };
}
