// Calls (PROTOCOL.md §12) against a real PostgreSQL: src/rpc.ts alone, no server. The calls
// connect as a non-superuser "authenticator" (as PostgREST's users do), so SET ROLE is refused
// for a role not granted to it; the roles are cluster-wide, so each run names its own and drops
// them at the end. Role switching, the default role, request.jwt.claims and row-level security
// per `sub`, names that are not plain identifiers, functions out of reach, SQL errors with their
// SQLSTATE, statement_timeout, the result shapes, and that nothing set for one call is still
// there for the next (one connection, so the next call really reuses it).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRpc, type CallResult, type Rpc, type RpcOptions } from '../src/rpc.js';
import type { Claims, Json } from '../src/types.js';
import { createAuthenticator, todosWithPolicy, type Authenticator } from './harness/authenticator.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';

let roles: Authenticator;
/** The login role the calls connect as. */
let AUTH: string;
let WEB: string;
let ANON: string;
/** Exists, but is not granted to the authenticator. */
let OTHER: string;
const LONG_FN = `f${'x'.repeat(62)}`; // 63 characters: the longest name a call accepts

let db: TestDatabase;
let authUri: string;
const rpcs: Rpc[] = [];

function rpc(options: Partial<RpcOptions> = {}): Rpc {
  const made = createRpc({ uri: authUri, schema: 'api', defaultRole: undefined, timeoutMs: 5000, ...options });
  rpcs.push(made);
  return made;
}

/** The data of a call that must succeed. */
async function data(client: Rpc, claims: Claims, fn: string, args?: Json): Promise<Json> {
  const result = await client.call(claims, fn, args);
  if (!result.ok) throw new Error(`${fn}: ${result.code} ${result.message}`);
  return result.data;
}

async function tableExists(name: string): Promise<boolean> {
  const [row] = await db.sql<{ ok: boolean }[]>`SELECT to_regclass(${name}) IS NOT NULL AS ok`;
  return row?.ok === true;
}

beforeAll(async () => {
  db = await createTestDatabase();
  roles = await createAuthenticator(db, 'pgws_rpc');
  ({ auth: AUTH, web: WEB, anon: ANON, other: OTHER, uri: authUri } = roles);
  await db.sql.unsafe(`
    CREATE TABLE public.t (x int);
    CREATE TABLE public.secrets (x int);
    INSERT INTO public.secrets VALUES (1);
    ${todosWithPolicy(WEB)}

    CREATE SCHEMA api;
    GRANT USAGE ON SCHEMA api TO ${WEB}, ${ANON};
    CREATE FUNCTION api.whoami(args jsonb) RETURNS text LANGUAGE sql AS $$ SELECT current_user::text $$;
    CREATE FUNCTION api.state(args jsonb) RETURNS jsonb LANGUAGE sql AS $$
      SELECT jsonb_build_object('user', current_user::text, 'session', session_user::text,
        'claims', current_setting('request.jwt.claims', true)::jsonb,
        'timeout', current_setting('statement_timeout')) $$;
    CREATE FUNCTION api.pid(args jsonb) RETURNS int LANGUAGE sql AS $$ SELECT pg_backend_pid() $$;
    CREATE FUNCTION api.sub(args jsonb) RETURNS text LANGUAGE sql AS $$
      SELECT current_setting('request.jwt.claims', true)::jsonb->>'sub' $$;
    CREATE FUNCTION api.echo(args jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT args $$;
    CREATE FUNCTION api.is_sql_null(args jsonb) RETURNS boolean LANGUAGE sql AS $$ SELECT args IS NULL $$;
    CREATE FUNCTION api.nothing(args jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
    CREATE FUNCTION api.answer(args jsonb) RETURNS int LANGUAGE sql AS $$ SELECT 42 $$;
    CREATE FUNCTION api.numbers(args jsonb) RETURNS SETOF int LANGUAGE sql AS $$
      SELECT generate_series(1, (args->>'n')::int) $$;
    CREATE FUNCTION api.squares(args jsonb) RETURNS TABLE (n int, sq int) LANGUAGE sql AS $$
      SELECT i, i * i FROM generate_series(1, 3) AS i $$;
    CREATE FUNCTION api.pair(args jsonb, OUT a int, OUT b text) LANGUAGE sql AS $$ SELECT 1, 'one' $$;
    CREATE FUNCTION api.noop(args jsonb) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
    CREATE FUNCTION api.my_todos(args jsonb) RETURNS jsonb LANGUAGE sql AS $$
      SELECT coalesce(jsonb_agg(title ORDER BY title), '[]') FROM public.todos $$;
    CREATE FUNCTION api.add_todo(args jsonb) RETURNS int LANGUAGE sql AS $$
      INSERT INTO public.todos (owner, title) VALUES (args->>'owner', args->>'title') RETURNING id $$;
    CREATE FUNCTION api.boom(args jsonb) RETURNS int LANGUAGE sql AS $$ SELECT 1 / 0 $$;
    CREATE FUNCTION api.fail(args jsonb) RETURNS int LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'custom failure' USING ERRCODE = 'P0042'; END $$;
    CREATE FUNCTION api.read_secrets(args jsonb) RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM public.secrets $$;
    CREATE FUNCTION api.restricted(args jsonb) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
    REVOKE EXECUTE ON FUNCTION api.restricted(jsonb) FROM PUBLIC;
    CREATE FUNCTION api.sleepy(args jsonb) RETURNS int LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_sleep((args->>'s')::float8); RETURN 1; END $$;
    CREATE FUNCTION api.failing_after_set(args jsonb) RETURNS int LANGUAGE plpgsql AS $$
      BEGIN RETURN 1 / 0; END $$;
    CREATE FUNCTION api."Mixed"(args jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'Mixed' $$;
    CREATE FUNCTION api.${LONG_FN}(args jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'long' $$;
    -- Not callable: wrong signatures, a procedure.
    CREATE FUNCTION api.texty(args text) RETURNS text LANGUAGE sql AS $$ SELECT 'texty' $$;
    CREATE FUNCTION api.jsony(args json) RETURNS text LANGUAGE sql AS $$ SELECT 'jsony' $$;
    CREATE FUNCTION api.two(args jsonb, n int) RETURNS int LANGUAGE sql AS $$ SELECT n $$;
    CREATE FUNCTION api.noargs() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
    CREATE PROCEDURE api.proc(args jsonb) LANGUAGE sql AS $$ SELECT 1 $$;
    -- Found, but the call cannot choose: an overload whose extra argument has a default.
    CREATE FUNCTION api.ambiguous(args jsonb) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
    CREATE FUNCTION api.ambiguous(args jsonb, n int DEFAULT 2) RETURNS int LANGUAGE sql AS $$ SELECT n $$;

    -- Out of reach: other schemas.
    CREATE SCHEMA private;
    GRANT USAGE ON SCHEMA private TO ${WEB};
    CREATE FUNCTION private.secret(args jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'secret' $$;
    CREATE FUNCTION public.pub(args jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'pub' $$;

    -- A schema whose name needs quoting.
    CREATE SCHEMA "we""ird api";
    GRANT USAGE ON SCHEMA "we""ird api" TO ${WEB};
    CREATE FUNCTION "we""ird api".hello(args jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'hi' $$;

    -- A schema the roles have no USAGE on.
    CREATE SCHEMA closed;
    CREATE FUNCTION closed.f(args jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'closed' $$;
  `);
});

afterAll(async () => {
  await Promise.all(rpcs.map((r) => r.stop()));
  if (roles === undefined) return;
  expect(await roles.drop()).toBe(0);
});

describe('roles', () => {
  it('the call runs as the role claim, on the authenticator\'s session', async () => {
    const client = rpc();
    expect(await data(client, { role: WEB }, 'whoami')).toBe(WEB);
    expect(await data(client, { role: ANON }, 'whoami')).toBe(ANON);
    expect(await data(client, { role: WEB }, 'state')).toMatchObject({ user: WEB, session: AUTH });
  });

  it('a token without a role claim runs as the default role; the claim wins over it', async () => {
    const client = rpc({ defaultRole: ANON });
    expect(await data(client, {}, 'whoami')).toBe(ANON);
    expect(await data(client, { sub: 'x', role: null }, 'whoami')).toBe(ANON);
    expect(await data(client, { role: WEB }, 'whoami')).toBe(WEB);
  });

  it('no role claim and no default role: forbidden, without touching the database', async () => {
    // Nothing listens on port 1: anything that reached for the database would be a db_error.
    const offline = rpc({ uri: 'postgres://nobody:nothing@127.0.0.1:1/none' });
    expect(await offline.call({ sub: 'alice' }, 'whoami', {})).toEqual({
      ok: false,
      code: 'forbidden',
      message: 'the token has no role claim and there is no default role',
    });
    expect(await offline.call({ role: WEB }, 'whoami', {})).toMatchObject({ ok: false, code: 'db_error' });
    expect(await rpc().call({ sub: 'alice' }, 'whoami', {})).toMatchObject({ ok: false, code: 'forbidden' });
  });

  it('a role not granted to the connecting user, or that does not exist: forbidden, with the reason', async () => {
    const client = rpc({ defaultRole: ANON });
    const notGranted = await client.call({ role: OTHER }, 'whoami', {});
    expect(notGranted).toEqual({ ok: false, code: 'forbidden', message: `42501 permission denied to set role "${OTHER}"` });
    const missing = await client.call({ role: `${OTHER}_missing` }, 'whoami', {});
    expect(missing).toEqual({ ok: false, code: 'forbidden', message: `22023 role "${OTHER}_missing" does not exist` });
    // Quotes, dots, spaces and SQL in a role name are just a name that does not exist.
    for (const role of [`${WEB}"; DROP TABLE public.t; --`, `"${WEB}"`, `api.${WEB}`, `${WEB} `, 'Ünïcødé']) {
      const result = await client.call({ role }, 'whoami', {});
      expect(result, role).toMatchObject({ ok: false, code: 'forbidden' });
      if (!result.ok) expect(result.message, role).toMatch(/^22023 role ".*" does not exist$/);
    }
    expect(await tableExists('public.t')).toBe(true);
  });

  it('role claims that are not a usable name are refused before the database', async () => {
    const offline = rpc({ uri: 'postgres://nobody:nothing@127.0.0.1:1/none', defaultRole: ANON });
    const refused = async (claims: Claims): Promise<string> => {
      const result = await offline.call(claims, 'whoami', {});
      expect(result.ok, JSON.stringify(claims)).toBe(false);
      expect(result).toMatchObject({ code: 'forbidden' });
      return result.ok ? '' : result.message;
    };
    expect(await refused({ role: 7 })).toBe('the role claim is not a string');
    expect(await refused({ role: [WEB] })).toBe('the role claim is not a string');
    expect(await refused({ role: '' })).toBe('the role is not a valid role name');
    expect(await refused({ role: 'x'.repeat(64) })).toBe('the role is not a valid role name');
    expect(await refused({ role: 'a\u0000b' })).toBe('the role is not a valid role name');
    // SET ROLE takes "none" as "back to the connecting user": never a way to the authenticator.
    expect(await refused({ role: 'none' })).toBe('the role "none" is not allowed');
    expect(await refused({ role: 'NONE' })).toBe('the role "none" is not allowed');
  });

  it('GRANTs apply: no EXECUTE, no table privilege or no schema USAGE is a db_error 42501', async () => {
    const client = rpc();
    expect(await client.call({ role: WEB }, 'restricted', {})).toEqual({
      ok: false,
      code: 'db_error',
      message: '42501 permission denied for function restricted',
    });
    expect(await client.call({ role: WEB }, 'read_secrets', {})).toEqual({
      ok: false,
      code: 'db_error',
      message: '42501 permission denied for table secrets',
    });
    expect(await rpc({ schema: 'closed' }).call({ role: WEB }, 'f', {})).toEqual({
      ok: false,
      code: 'db_error',
      message: '42501 permission denied for schema closed',
    });
  });
});

describe('claims', () => {
  it('request.jwt.claims holds the token\'s whole payload', async () => {
    const client = rpc();
    const claims = { role: WEB, sub: 'alice', exp: 4102444800, nested: { a: [1, 'two', null] } };
    expect(await data(client, claims, 'sub')).toBe('alice');
    expect(await data(client, claims, 'state')).toMatchObject({ claims });
  });

  it('row-level security per sub: each sub sees and writes only its own rows', async () => {
    const client = rpc();
    expect(await data(client, { role: WEB, sub: 'alice' }, 'my_todos')).toEqual(['a1', 'a2']);
    expect(await data(client, { role: WEB, sub: 'bob' }, 'my_todos')).toEqual(['b1']);
    expect(await data(client, { role: WEB, sub: 'carol' }, 'my_todos')).toEqual([]);
    // A write commits, and the policy's WITH CHECK holds.
    expect(typeof (await data(client, { role: WEB, sub: 'bob' }, 'add_todo', { owner: 'bob', title: 'b2' }))).toBe('number');
    expect(await data(client, { role: WEB, sub: 'bob' }, 'my_todos')).toEqual(['b1', 'b2']);
    const stolen = await client.call({ role: WEB, sub: 'bob' }, 'add_todo', { owner: 'alice', title: 'not yours' });
    expect(stolen).toMatchObject({ ok: false, code: 'db_error' });
    if (!stolen.ok) expect(stolen.message).toMatch(/^42501 new row violates row-level security policy/);
    expect(await data(client, { role: WEB, sub: 'alice' }, 'my_todos')).toEqual(['a1', 'a2']);
  });
});

describe('function names', () => {
  it('anything but a plain identifier is not_found, checked before the database, and the table is still there', async () => {
    const offline = rpc({ uri: 'postgres://nobody:nothing@127.0.0.1:1/none' });
    const names = [
      'x; drop table t',
      'whoami; DROP TABLE public.t; --',
      'whoami(); DROP TABLE public.t; --',
      '"quoted"',
      '"whoami"',
      'a.b',
      'api.whoami',
      'pg_catalog.pg_sleep',
      'whoami(jsonb)',
      ' whoami',
      'whoami ',
      'who-ami',
      "who'ami",
      '1whoami',
      '',
      'café',
      'whoamі', // Cyrillic і
      'who\u0000ami',
      `f${'x'.repeat(63)}`, // 64 characters
      `${LONG_FN}x`,
    ];
    for (const fn of names) {
      const result = await offline.call({ role: WEB }, fn, {});
      expect(result, JSON.stringify(fn)).toEqual({
        ok: false,
        code: 'not_found',
        message: 'fn must be a plain identifier: letters, digits, _ (at most 63)',
      });
      // The same through a live database.
      expect(await rpc().call({ role: WEB }, fn, {}), JSON.stringify(fn)).toMatchObject({ ok: false, code: 'not_found' });
    }
    expect(await tableExists('public.t')).toBe(true);
  });

  it('a plain identifier names a function of the schema only, case-sensitively; 63 characters work', async () => {
    const client = rpc();
    expect(await client.call({ role: WEB }, 'pg_sleep', {})).toEqual({ ok: false, code: 'not_found', message: 'no function api.pg_sleep(jsonb)' });
    expect(await client.call({ role: WEB }, 'secret', {})).toEqual({ ok: false, code: 'not_found', message: 'no function api.secret(jsonb)' });
    expect(await client.call({ role: WEB }, 'pub', {})).toMatchObject({ ok: false, code: 'not_found' });
    expect(await client.call({ role: WEB }, 'nope', {})).toMatchObject({ ok: false, code: 'not_found' });
    expect(await client.call({ role: WEB }, 'WHOAMI', {})).toMatchObject({ ok: false, code: 'not_found' });
    expect(await client.call({ role: WEB }, 'mixed', {})).toMatchObject({ ok: false, code: 'not_found' });
    expect(await data(client, { role: WEB }, 'Mixed')).toBe('Mixed');
    expect(await data(client, { role: WEB }, LONG_FN)).toBe('long');
    // Another schema's function is reachable only with that schema configured.
    expect(await data(rpc({ schema: 'private' }), { role: WEB }, 'secret')).toBe('secret');
  });

  it('the schema is quoted as an identifier', async () => {
    const client = rpc({ schema: 'we"ird api' });
    expect(await data(client, { role: WEB }, 'hello')).toBe('hi');
    expect(await client.call({ role: WEB }, 'nope', {})).toEqual({ ok: false, code: 'not_found', message: 'no function "we""ird api".nope(jsonb)' });
    expect(await rpc({ schema: 'no_such_schema' }).call({ role: WEB }, 'whoami', {})).toMatchObject({ ok: false, code: 'not_found' });
  });

  it('a function without exactly one jsonb argument, or a procedure, is not_found', async () => {
    const client = rpc();
    for (const fn of ['texty', 'jsony', 'two', 'noargs', 'proc']) {
      expect(await client.call({ role: WEB }, fn, {}), fn).toEqual({ ok: false, code: 'not_found', message: `no function api.${fn}(jsonb)` });
    }
    const ambiguous = await client.call({ role: WEB }, 'ambiguous', {});
    expect(ambiguous).toMatchObject({ ok: false, code: 'db_error' });
    if (!ambiguous.ok) expect(ambiguous.message).toMatch(/^42725 function api\.ambiguous\(jsonb\) is not unique/);
  });
});

describe('results and errors', () => {
  it('the result comes back as JSON: scalars, null, objects, sets as arrays, void as null', async () => {
    const client = rpc();
    const web = { role: WEB };
    expect(await data(client, web, 'answer')).toBe(42);
    expect(await data(client, web, 'nothing')).toBeNull();
    expect(await data(client, web, 'noop')).toBeNull();
    expect(await data(client, web, 'pair')).toEqual({ a: 1, b: 'one' });
    expect(await data(client, web, 'numbers', { n: 3 })).toEqual([1, 2, 3]);
    expect(await data(client, web, 'numbers', { n: 0 })).toEqual([]);
    expect(await data(client, web, 'squares')).toEqual([
      { n: 1, sq: 1 },
      { n: 2, sq: 4 },
      { n: 3, sq: 9 },
    ]);
  });

  it('args travel as one jsonb parameter: undefined is {}, null is JSON null, anything else as given', async () => {
    const client = rpc();
    const web = { role: WEB };
    expect(await data(client, web, 'echo')).toEqual({});
    expect(await data(client, web, 'echo', null)).toBeNull();
    expect(await data(client, web, 'is_sql_null', null)).toBe(false);
    const tricky = { q: "'; DROP TABLE public.t; --", d: '$1 $$ "x"', u: 'ünï 😀', n: [1, 2.5, -0.001, true, null], nested: { a: { b: [] } } };
    expect(await data(client, web, 'echo', tricky)).toEqual(tricky);
    expect(await data(client, web, 'echo', [1, 'two'])).toEqual([1, 'two']);
    expect(await data(client, web, 'echo', 'text')).toBe('text');
    expect(await tableExists('public.t')).toBe(true);
  });

  it('a SQL error is a db_error with its SQLSTATE and message', async () => {
    const client = rpc();
    expect(await client.call({ role: WEB }, 'boom', {})).toEqual({ ok: false, code: 'db_error', message: '22012 division by zero' });
    expect(await client.call({ role: WEB }, 'fail', {})).toEqual({ ok: false, code: 'db_error', message: 'P0042 custom failure' });
    const badArgs = await client.call({ role: WEB }, 'numbers', { n: 'many' });
    expect(badArgs).toMatchObject({ ok: false, code: 'db_error' });
    if (!badArgs.ok) expect(badArgs.message).toMatch(/^22P02 invalid input syntax for type integer/);
  });

  it('a call over the timeout is cancelled: db_error 57014, and the pool goes on', async () => {
    const client = rpc({ timeoutMs: 200, poolSize: 1 });
    const started = Date.now();
    const result = await client.call({ role: WEB }, 'sleepy', { s: 3 });
    const took = Date.now() - started;
    expect(result).toEqual({ ok: false, code: 'db_error', message: '57014 canceling statement due to statement timeout' });
    expect(took).toBeGreaterThanOrEqual(190);
    expect(took).toBeLessThan(2000);
    expect(await data(client, { role: WEB }, 'sleepy', { s: 0.05 })).toBe(1);
    expect(await data(client, { role: WEB }, 'state')).toMatchObject({ timeout: '200ms' });
  });

  it('a database that cannot be reached, or a stopped pool, is a db_error: call never throws', async () => {
    const offline = rpc({ uri: 'postgres://nobody:nothing@127.0.0.1:1/none' });
    const result = await offline.call({ role: WEB }, 'whoami', {});
    expect(result).toMatchObject({ ok: false, code: 'db_error' });
    if (!result.ok) expect(result.message).toMatch(/ECONNREFUSED/);
    const stopped = rpc();
    expect(await data(stopped, { role: WEB }, 'whoami')).toBe(WEB);
    await stopped.stop();
    expect(await stopped.call({ role: WEB }, 'whoami', {})).toMatchObject({ ok: false, code: 'db_error' });
  });

  it('options that cannot be right are refused when the pool is made', () => {
    const base = { uri: 'postgres://nobody:nothing@127.0.0.1:1/none', schema: 'api', defaultRole: undefined, timeoutMs: 5000 };
    expect(() => createRpc({ ...base, schema: '' })).toThrow(TypeError);
    expect(() => createRpc({ ...base, schema: 's'.repeat(64) })).toThrow(TypeError);
    expect(() => createRpc({ ...base, timeoutMs: -1 })).toThrow(TypeError);
    expect(() => createRpc({ ...base, timeoutMs: 1.5 })).toThrow(TypeError);
    expect(() => createRpc({ ...base, poolSize: 0 })).toThrow(TypeError);
  });
});

describe('isolation between calls', () => {
  it('on one connection, nothing of a call is still there for the next: role, claims, timeout', async () => {
    // One connection: every call below runs on the same session.
    const client = rpc({ poolSize: 1, timeoutMs: 1234, defaultRole: ANON });
    const pid = await data(client, { role: WEB }, 'pid');
    const a = await data(client, { role: WEB, sub: 'alice', extra: 'only-a' }, 'state');
    expect(a).toEqual({ user: WEB, session: AUTH, claims: { role: WEB, sub: 'alice', extra: 'only-a' }, timeout: '1234ms' });
    const b = await data(client, { role: ANON, sub: 'bob' }, 'state');
    expect(b).toEqual({ user: ANON, session: AUTH, claims: { role: ANON, sub: 'bob' }, timeout: '1234ms' });
    // The default role, and claims without a sub: nothing of A or B.
    expect(await data(client, {}, 'state')).toEqual({ user: ANON, session: AUTH, claims: {}, timeout: '1234ms' });
    expect(await data(client, { role: ANON }, 'pid')).toBe(pid);

    // After a failed call (an error in the function), a refused role, a missing function.
    expect(await client.call({ role: WEB, sub: 'mallory' }, 'failing_after_set', {})).toMatchObject({ code: 'db_error' });
    expect(await data(client, { role: ANON, sub: 'bob' }, 'state')).toEqual(b);
    expect(await client.call({ role: OTHER, sub: 'mallory' }, 'state', {})).toMatchObject({ code: 'forbidden' });
    expect(await data(client, { role: ANON, sub: 'bob' }, 'state')).toEqual(b);
    expect(await client.call({ role: WEB, sub: 'mallory' }, 'nope', {})).toMatchObject({ code: 'not_found' });
    expect(await data(client, { role: ANON, sub: 'bob' }, 'state')).toEqual(b);
    expect(await data(client, { role: WEB, sub: 'alice' }, 'my_todos')).toEqual(['a1', 'a2']);
    expect(await client.call({ role: ANON, sub: 'alice' }, 'my_todos', {})).toMatchObject({
      ok: false,
      code: 'db_error',
      message: '42501 permission denied for table todos',
    });
    expect(await data(client, { role: ANON }, 'pid')).toBe(pid);
  });

  it('after a timeout, the next call on the connection has its own timeout and role', async () => {
    const client = rpc({ poolSize: 1, timeoutMs: 200 });
    expect(await client.call({ role: WEB, sub: 'slow' }, 'sleepy', { s: 2 })).toMatchObject({ code: 'db_error' });
    expect(await data(client, { role: ANON, sub: 'fast' }, 'state')).toEqual({
      user: ANON,
      session: AUTH,
      claims: { role: ANON, sub: 'fast' },
      timeout: '200ms',
    });
  });

  it('concurrent calls with different roles and subs each see their own', async () => {
    const client = rpc({ poolSize: 4 });
    const calls: Promise<CallResult>[] = [];
    for (let i = 0; i < 40; i++) {
      const role = i % 2 === 0 ? WEB : ANON;
      calls.push(client.call({ role, sub: `user-${i}` }, 'state', {}));
    }
    const results = await Promise.all(calls);
    results.forEach((result, i) => {
      expect(result).toEqual({
        ok: true,
        data: { user: i % 2 === 0 ? WEB : ANON, session: AUTH, claims: { role: i % 2 === 0 ? WEB : ANON, sub: `user-${i}` }, timeout: '5s' },
      });
    });
  });
});
