// Many processes, one database (issue 4, item 7): PostgreSQL is the bus. Two real
// pgws processes on different ports share a database; a frame written through
// either reaches readers on both, and killing one leaves the other serving.
import { describe, expect, it } from 'vitest';
import { freePort } from '../src/embedded.js';
import { logMsg, runPgws, type Child } from './harness/child.js';
import { connect } from './harness/client.js';
import { createTestDatabase } from './harness/db.js';
import { LISTEN_CHANNEL, SECRET } from './harness/pgws.js';
import { token } from './harness/tokens.js';
import { within } from './harness/within.js';

async function pgwsProcess(dbUri: string): Promise<{ child: Child; url: string }> {
  const port = await freePort();
  const child = runPgws(['--db-uri', dbUri, '--jwt-secret', SECRET, '--host', '127.0.0.1', '--port', String(port), '--retries', '1']);
  await child.waitForLine(logMsg('pgws ready'));
  return { child, url: `ws://127.0.0.1:${port}` };
}

describe('two pgws processes on one database', () => {
  it('relays across processes, and the survivor keeps serving when one is killed', async () => {
    const db = await createTestDatabase();
    const [a, b] = await Promise.all([pgwsProcess(db.uri), pgwsProcess(db.uri)]);
    const jwt = await token({ mode: 'rw' });
    const onA = await connect(`${a.url}/room/${jwt}`);
    const onB = await connect(`${b.url}/room/${jwt}`);

    onA.send('written via A');
    expect(await onB.nextJson()).toMatchObject({ event: 'WebsocketMessage', channel: 'room', payload: 'written via A' });
    expect(await onA.nextJson()).toMatchObject({ payload: 'written via A' });
    onB.send('written via B');
    expect(await onA.nextJson()).toMatchObject({ payload: 'written via B' });
    expect(await onB.nextJson()).toMatchObject({ payload: 'written via B' });

    a.child.proc.kill('SIGKILL');
    expect((await within(onA.closed, 5000, 'A socket close')).code).toBe(1006);
    await a.child.exited;

    onB.send('after A died');
    expect(await onB.nextJson()).toMatchObject({ payload: 'after A died' });
    await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${JSON.stringify({ channel: 'room', payload: 'from the database' })})`;
    expect(await onB.nextJson()).toEqual({ channel: 'room', payload: 'from the database' });
    const late = await connect(`${b.url}/room/${await token({ mode: 'r' })}`);
    onB.send('to a new reader');
    expect(await late.nextJson()).toMatchObject({ payload: 'to a new reader' });
  });
});
