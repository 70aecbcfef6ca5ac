// Calls (PROTOCOL.md §12) end to end, on both transports: a v2 socket's `call` runs a function
// of PGWS_RPC_SCHEMA as the token's role, with request.jwt.claims, on a pgws that connects as a
// non-superuser "authenticator" (the PostgREST set-up). src/rpc.ts's own cases (injection,
// timeouts, leaks between calls, result shapes) are test/rpc.test.ts; here: the socket's side.
import type { JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthenticator, todosWithPolicy, type Authenticator } from './harness/authenticator.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { startPgws, type TestServer } from './harness/pgws.js';
import { token } from './harness/tokens.js';
import { connectV2, type V2Client } from './harness/v2.js';

let db: TestDatabase;
let roles: Authenticator;
let WEB: string;
let ANON: string;
let srv: TestServer;

async function v2(claims: JWTPayload, server: TestServer = srv): Promise<V2Client> {
  return connectV2(`${server.url}/`, await token(claims));
}

beforeAll(async () => {
  db = await createTestDatabase();
  roles = await createAuthenticator(db, 'pgws_calls');
  ({ web: WEB, anon: ANON } = roles);
  await db.sql.unsafe(`
    ${todosWithPolicy(WEB)}
    CREATE SCHEMA api;
    GRANT USAGE ON SCHEMA api TO ${WEB}, ${ANON};
    CREATE FUNCTION api.whoami(args jsonb) RETURNS jsonb LANGUAGE sql AS $$
      SELECT jsonb_build_object('user', current_user::text, 'sub', current_setting('request.jwt.claims', true)::jsonb->>'sub') $$;
    CREATE FUNCTION api.my_todos(args jsonb) RETURNS jsonb LANGUAGE sql AS $$
      SELECT coalesce(jsonb_agg(title ORDER BY title), '[]') FROM public.todos $$;
    CREATE FUNCTION api.add_todo(args jsonb) RETURNS int LANGUAGE sql AS $$
      INSERT INTO public.todos (owner, title) VALUES (args->>'owner', args->>'title') RETURNING id $$;
    CREATE FUNCTION api.boom(args jsonb) RETURNS int LANGUAGE sql AS $$ SELECT 1 / 0 $$;
    CREATE FUNCTION public.hidden(args jsonb) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
  `);
  srv = await startPgws(roles.uri, { rpcSchema: 'api', rpcDefaultRole: ANON, rpcTimeout: 2000 });
});

afterAll(async () => {
  await srv.stop();
  expect(await roles.drop()).toBe(0);
});

describe('a v2 call', () => {
  it('runs as the token\'s role with its claims, or as PGWS_RPC_DEFAULT_ROLE without a role claim', async () => {
    const alice = await v2({ mode: 'rw', role: WEB, sub: 'alice' });
    expect(await alice.request({ type: 'call', id: 1, fn: 'whoami', args: {} })).toEqual({ type: 'result', id: 1, data: { user: WEB, sub: 'alice' } });
    const anonymous = await v2({ mode: 'w', sub: 'nobody' });
    expect(await anonymous.request({ type: 'call', id: 2, fn: 'whoami' })).toEqual({ type: 'result', id: 2, data: { user: ANON, sub: 'nobody' } });
  });

  it('applies row-level security per sub, as through PostgREST: each sees and writes only their own rows', async () => {
    const alice = await v2({ mode: 'rw', role: WEB, sub: 'alice' });
    const bob = await v2({ mode: 'rw', role: WEB, sub: 'bob' });
    expect(await alice.request({ type: 'call', fn: 'my_todos' })).toMatchObject({ type: 'result', data: ['a1', 'a2'] });
    expect(await bob.request({ type: 'call', fn: 'my_todos' })).toMatchObject({ type: 'result', data: ['b1'] });
    expect(await bob.request({ type: 'call', fn: 'add_todo', args: { owner: 'bob', title: 'b2' } })).toMatchObject({ type: 'result', data: expect.any(Number) });
    expect(await bob.request({ type: 'call', id: 'x', fn: 'add_todo', args: { owner: 'alice', title: 'forged' } })).toMatchObject({
      type: 'error',
      id: 'x',
      code: 'db_error',
      message: expect.stringMatching(/^42501 /),
    });
    expect(await alice.request({ type: 'call', fn: 'my_todos' })).toMatchObject({ data: ['a1', 'a2'] });
  });

  it('refuses mode r (forbidden), a role not granted (forbidden), a name that is not a function of the schema (not_found), and reports SQL errors with their SQLSTATE', async () => {
    const reader = await v2({ mode: 'r', role: WEB });
    expect(await reader.request({ type: 'call', id: 1, fn: 'whoami' })).toMatchObject({ type: 'error', id: 1, code: 'forbidden' });
    const intruder = await v2({ mode: 'rw', role: 'postgres' });
    expect(await intruder.request({ type: 'call', id: 2, fn: 'whoami' })).toMatchObject({ type: 'error', id: 2, code: 'forbidden', message: expect.stringMatching(/^42501 /) });
    const user = await v2({ mode: 'rw', role: WEB, sub: 'alice' });
    for (const fn of ['hidden', 'whoami; DROP TABLE public.todos', 'api.whoami', '"whoami"', 'pg_sleep']) {
      expect(await user.request({ type: 'call', id: fn, fn })).toMatchObject({ type: 'error', id: fn, code: 'not_found' });
    }
    expect(await user.request({ type: 'call', id: 3, fn: 'boom' })).toMatchObject({ type: 'error', id: 3, code: 'db_error', message: expect.stringMatching(/^22012 /) });
    // The socket stays open after every refusal, and the table is still there.
    expect(await user.request({ type: 'call', id: 4, fn: 'my_todos' })).toMatchObject({ type: 'result', id: 4 });
  });

  it('is not_found on a server without PGWS_RPC_SCHEMA', async () => {
    const plain = await startPgws(db.uri);
    const client = await v2({ mode: 'rw', role: WEB }, plain);
    expect(await client.request({ type: 'call', id: 1, fn: 'whoami' })).toMatchObject({ type: 'error', id: 1, code: 'not_found', message: expect.stringContaining('PGWS_RPC_SCHEMA') });
    await plain.stop();
  });
});
