// Calls (PROTOCOL.md §12): a v2 `call` runs `<schema>.<fn>(args jsonb)` the way PostgREST runs
// an RPC, on a connection pool of its own. Each call is one transaction:
//   1. as the connecting user: is there a plain function <schema>.<fn>(jsonb)? (else not_found)
//   2. set_config('role', <role>, true)             = SET LOCAL ROLE, the name as a parameter
//      set_config('request.jwt.claims', <json>, true) the token's whole payload
//      set_config('statement_timeout', <ms>, true)  = SET LOCAL statement_timeout
//   3. SELECT to_jsonb(<schema>.<fn>($1::jsonb))    identifiers quoted by format('%I')
// Everything set is transaction-scoped (is_local = true): it ends with the COMMIT or ROLLBACK,
// so nothing carries over to the next call on the same connection.
// No SQL text is ever built from the role, the claims or the args: they travel as parameters.
// The function name reaches SQL text only after it matched FN_NAME, and then only as quoted
// by PostgreSQL's own format('%I'), like the schema.
import postgres from 'postgres';
import { describeDbError } from './db/errors.js';
import type { Claims, Json } from './types.js';

export interface RpcOptions {
  readonly uri: string;
  /** PGWS_RPC_SCHEMA: the only schema whose functions can be called. */
  readonly schema: string;
  /** PGWS_RPC_DEFAULT_ROLE: the role of tokens without a `role` claim; undefined refuses them. */
  readonly defaultRole: string | undefined;
  /** PGWS_RPC_TIMEOUT: statement_timeout of each call, milliseconds (0: none). Default 5000. */
  readonly timeoutMs: number;
  /** Connections of the call pool; default 4. */
  readonly poolSize?: number;
}

export type CallResult =
  | { readonly ok: true; readonly data: Json }
  | { readonly ok: false; readonly code: 'forbidden' | 'not_found' | 'db_error'; readonly message: string };

export interface Rpc {
  /** claims: the token's whole verified payload (Claims from src/types.ts). Never throws. */
  call(claims: Claims, fn: string, args: Json | undefined): Promise<CallResult>;
  stop(): Promise<void>;
}

/** A plain identifier: no quotes, no dots, no spaces, at most 63 characters (NAMEDATALEN - 1). */
export const FN_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** PostgreSQL truncates longer names (to some other role's, maybe): refused instead. */
const MAX_NAME_BYTES = 63;

/** What SET ROLE fails with when the role cannot be used: it does not exist, or is not granted. */
const ROLE_REFUSED = new Set(['22023', '42704', '42501']);

const forbidden = (message: string): CallResult => ({ ok: false, code: 'forbidden', message });
const notFound = (message: string): CallResult => ({ ok: false, code: 'not_found', message });

/** A name PostgreSQL can hold exactly: not empty, no NUL, at most 63 bytes. */
function validName(name: string): boolean {
  return name.length > 0 && !name.includes('\u0000') && Buffer.byteLength(name, 'utf8') <= MAX_NAME_BYTES;
}

/**
 * The role a call runs as: the `role` claim, or the default role when the token has none
 * (absent or null). A `role` claim of another type, an empty name, one PostgreSQL would
 * truncate, or `none` (which SET ROLE takes as "back to the connecting user") is refused.
 */
function roleOf(claims: Claims, defaultRole: string | undefined): { role: string } | { refused: string } {
  const claim = claims.role;
  let role: string;
  if (claim === undefined || claim === null) {
    if (defaultRole === undefined) return { refused: 'the token has no role claim and there is no default role' };
    role = defaultRole;
  } else if (typeof claim === 'string') {
    role = claim;
  } else {
    return { refused: 'the role claim is not a string' };
  }
  if (!validName(role)) return { refused: 'the role is not a valid role name' };
  if (role.toLowerCase() === 'none') return { refused: 'the role "none" is not allowed' };
  return { role };
}

/** `<SQLSTATE> <message>` for an error from PostgreSQL; a one-line description for any other. */
function describe(err: unknown): string {
  if (err instanceof postgres.PostgresError) return `${err.code} ${err.message}`;
  return describeDbError(err);
}

/** A name as an identifier in a message (PostgreSQL quotes the SQL itself, with format('%I')). */
function quoted(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

function sqlstate(err: unknown): string | undefined {
  return err instanceof postgres.PostgresError ? err.code : undefined;
}

interface Target {
  /** `<schema>.<fn>`, each quoted by format('%I') (as needed). */
  readonly target: string;
  /** pg_proc.prokind: 'f' function, 'p' procedure, 'a' aggregate, 'w' window. */
  readonly kind: string;
  readonly setof: boolean;
  readonly void: boolean;
}

export function createRpc(options: RpcOptions): Rpc {
  const { schema, defaultRole, timeoutMs } = options;
  const poolSize = options.poolSize ?? 4;
  if (!validName(schema)) throw new TypeError('rpc: the schema must be a name of 1 to 63 bytes without NUL');
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 0) throw new TypeError('rpc: timeoutMs must be an integer >= 0');
  if (!Number.isSafeInteger(poolSize) || poolSize < 1) throw new TypeError('rpc: poolSize must be an integer >= 1');

  const sql = postgres(options.uri, {
    max: poolSize,
    connect_timeout: 10,
    fetch_types: false,
    onnotice: () => undefined,
    connection: { application_name: 'pgws-rpc' },
  });

  async function run(role: string, claims: Claims, fn: string, args: Json | undefined): Promise<CallResult> {
    // Set inside the transaction's callback, read in the catch: not narrowed to 'lookup'.
    let step = 'lookup' as 'lookup' | 'role' | 'call';
    try {
      return await sql.begin(async (tx): Promise<CallResult> => {
        // 1. As the connecting user, before the role switch, from the catalog (as PostgREST's
        // schema cache): exactly <schema>.<fn>(jsonb), what to_regprocedure would find, but
        // without needing USAGE on the schema (a NOINHERIT authenticator has none; a role
        // without it fails at the call with 42501). (proname, proargtypes, pronamespace) is
        // unique: one row at most.
        const [found] = await tx<Target[]>`
          SELECT pg_catalog.format('%I.%I', n.nspname, p.proname) AS target,
                 p.prokind::pg_catalog.text AS kind, p.proretset AS setof,
                 p.prorettype = 'pg_catalog.void'::pg_catalog.regtype AS void
          FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
          WHERE n.nspname = ${schema}::pg_catalog.text AND p.proname = ${fn}::pg_catalog.text
            AND p.pronargs = 1 AND p.proargtypes[0] = 'pg_catalog.jsonb'::pg_catalog.regtype`;
        if (found === undefined || found.kind !== 'f') {
          // Procedures, aggregates and window functions are not callable this way.
          return notFound(`no function ${quoted(schema)}.${fn}(jsonb)`);
        }

        // 2. Transaction-scoped settings, all as parameters. A role that does not exist
        // (22023) or is not granted to the connecting user (42501) fails here.
        step = 'role';
        await tx`
          SELECT pg_catalog.set_config('role', ${role}::pg_catalog.text, true),
                 pg_catalog.set_config('request.jwt.claims', ${JSON.stringify(claims)}::pg_catalog.text, true),
                 pg_catalog.set_config('statement_timeout', ${String(timeoutMs)}::pg_catalog.text, true)`;

        // 3. The call. `target` is PostgreSQL's own quoting of both identifiers; the args are
        // a parameter (as text: told it is json, postgres.js would encode it again).
        step = 'call';
        const argument = `$1::pg_catalog.text::pg_catalog.jsonb`;
        const text = found.setof
          ? `SELECT COALESCE(pg_catalog.jsonb_agg(_pgws_row), '[]'::pg_catalog.jsonb)::pg_catalog.text AS data FROM ${found.target}(${argument}) AS _pgws_row`
          : found.void
            ? `SELECT NULL::pg_catalog.text AS data FROM ${found.target}(${argument}) AS _pgws_row`
            : `SELECT pg_catalog.to_jsonb(${found.target}(${argument}))::pg_catalog.text AS data`;
        const rows = await tx.unsafe<{ data: string | null }[]>(text, [JSON.stringify(args === undefined ? {} : args)]);
        const data = rows[0]?.data ?? null;
        return { ok: true, data: data === null ? null : (JSON.parse(data) as Json) };
      });
    } catch (err) {
      const code = sqlstate(err);
      if (step === 'role' && code !== undefined && ROLE_REFUSED.has(code)) return forbidden(describe(err));
      return { ok: false, code: 'db_error', message: describe(err) };
    }
  }

  return {
    async call(claims, fn, args) {
      try {
        const chosen = roleOf(claims, defaultRole);
        if ('refused' in chosen) return forbidden(chosen.refused);
        if (typeof fn !== 'string' || !FN_NAME.test(fn)) return notFound('fn must be a plain identifier: letters, digits, _ (at most 63)');
        return await run(chosen.role, claims, fn, args);
      } catch (err) {
        // Not reached: run() answers every database error. Kept so call() never throws.
        return { ok: false, code: 'db_error', message: describe(err) };
      }
    },
    async stop() {
      await sql.end({ timeout: 2 });
    },
  };
}
