// What puts notifications into a system. For a relay (pgws, baseline) that is
// PostgreSQL: pipelined `SELECT pg_notify(...)` statements, several per
// statement when the scenario asks for batches. For the bare-uWS ceiling it is
// a plain TCP feed of lines the server publishes, with no database.
import postgres from 'postgres';
import { once } from 'node:events';
import net from 'node:net';
import { now } from './wsclient.mjs';

export const LISTEN_CHANNEL = 'postgres-websockets-listener';
const PAD = '0123456789abcdef0123456789abcdef';

/** The notification text a reader receives: routing needs `channel`, the reader reads `t`. */
export function notificationText(channel, seq) {
  return `{"channel":"${channel}","t":${now().toFixed(3)},"seq":${seq},"payload":"${PAD}"}`;
}

/**
 * What a notification is, by default: an entry is a channel name, the notification is
 * notificationText(), and the ceiling publishes it as is to the topic of that name.
 * A scenario may give its own: `text(entry, seq)` the notification text (its `"channel"`
 * routes it in a relay) and `lines(entry, text)` the ceiling's feed lines for it, each
 * "<topic>\t<frame text>\n": the frames a relay would publish, so the ceiling publishes the same.
 */
export const DEFAULT_FORMAT = {
  text: (channel, seq) => notificationText(channel, seq),
  lines: (channel, text) => `${channel}\t${text}\n`,
};

/** { send(entries[]) -> Promise, close() }: one notification per entry (a channel name by default; see `format`). */
export async function createProducer(system, { dbUri, feedPort, format = DEFAULT_FORMAT }) {
  if (system.role === 'fanout-ceiling') {
    const socket = net.connect({ port: feedPort, host: '127.0.0.1', noDelay: true });
    await once(socket, 'connect');
    let seq = 0;
    return {
      async send(entries) {
        let text = '';
        for (const entry of entries) text += format.lines(entry, format.text(entry, ++seq));
        socket.write(text);
      },
      async close() {
        socket.destroy();
      },
    };
  }
  const sql = postgres(dbUri, { max: 4, fetch_types: false, onnotice: () => undefined });
  const statements = new Map();
  let seq = 0;
  return {
    async send(entries) {
      const n = entries.length;
      let text = statements.get(n);
      if (!text) {
        text = `SELECT ${Array.from({ length: n }, (_, i) => `pg_notify($1, $${i + 2})`).join(', ')}`;
        statements.set(n, text);
      }
      await sql.unsafe(text, [LISTEN_CHANNEL, ...entries.map((e) => format.text(e, ++seq))], { prepare: true });
    },
    close: () => sql.end({ timeout: 2 }),
  };
}
