// Ceiling (a), raw LISTEN: no sockets at all. This process stands where the
// relay would and pipelines `SELECT pg_notify(...)`, one per statement (one per
// transaction, as a relay does for frames it relays one by one), over a pool
// as large as pgws's default (10), as fast as the orchestrator's allowance
// lets it; the orchestrator's LISTEN client counts what arrives.
import postgres from 'postgres';

const LISTEN_CHANNEL = 'postgres-websockets-listener';

export async function start(dbUri) {
  const sql = postgres(dbUri, { max: 10, fetch_types: false, onnotice: () => undefined });
  await sql`SELECT 1`;
  let sent = 0;
  let allow = 0;
  let inflight = 0;
  const MAX_INFLIGHT = 1000;
  function pump() {
    while (sent < allow && inflight < MAX_INFLIGHT) {
      sent++;
      inflight++;
      const payload = `{"event":"WebsocketMessage","channel":"in","payload":"{\\"seq\\":${sent}}","claims":{"mode":"w"}}`;
      sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${payload})`.then(done, done);
    }
  }
  function done() {
    inflight--;
    pump();
  }
  return {
    port: 0,
    onMessage(msg) {
      if (msg.cmd === 'allow') {
        allow = msg.upTo;
        pump();
      } else if (msg.cmd === 'report') {
        // The flood scenario's "frames sent": the NOTIFYs this process issued.
        process.send({ type: 'report', sent });
      }
    },
    stop: () => sql.end({ timeout: 2 }),
  };
}
