// The PostgREST set-up that calls (PROTOCOL.md §12) are tested against: a non-superuser
// "authenticator" login that holds no privileges of its own and may switch to the roles a
// token names, and a table whose row-level security reads `sub` from request.jwt.claims.
// Roles are cluster-wide, so each file names its own (a random suffix) and drops them after.
import { randomBytes } from 'node:crypto';
import type { TestDatabase } from './db.js';

export interface Authenticator {
  /** The login role, NOINHERIT, granted `web` and `anon`. */
  readonly auth: string;
  readonly web: string;
  readonly anon: string;
  /** A role that exists but is not granted to `auth`. */
  readonly other: string;
  /** The test database's URI, as `auth`. */
  readonly uri: string;
  /** Drops what the roles own in this database, then the roles; resolves with how many are left (0). */
  drop(): Promise<number>;
}

/** Creates the four roles, named `<prefix>_<role>_<suffix>`. */
export async function createAuthenticator(db: TestDatabase, prefix: string): Promise<Authenticator> {
  const suffix = randomBytes(4).toString('hex');
  const [auth, web, anon, other] = ['auth', 'web', 'anon', 'other'].map((role) => `${prefix}_${role}_${suffix}`) as [string, string, string, string];
  const password = randomBytes(12).toString('hex');
  // The role names are ours (hex suffix); the password is a literal PostgreSQL must see.
  await db.sql.unsafe(`
    CREATE ROLE ${auth} LOGIN NOINHERIT PASSWORD '${password}';
    CREATE ROLE ${web} NOLOGIN;
    CREATE ROLE ${anon} NOLOGIN;
    CREATE ROLE ${other} NOLOGIN;
    GRANT ${web}, ${anon} TO ${auth};
  `);
  const url = new URL(db.uri);
  url.username = auth;
  url.password = password;
  const roles = [auth, web, anon, other];
  return {
    auth,
    web,
    anon,
    other,
    uri: url.toString(),
    async drop() {
      // Privileges in this database first (DROP ROLE refuses a role that still holds some); the
      // database itself is dropped by the harness.
      await db.sql.unsafe(`DROP OWNED BY ${roles.join(', ')}`).catch(() => undefined);
      for (const role of roles) await db.sql.unsafe(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
      const [left] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_roles WHERE rolname = ANY(string_to_array(${roles.join(',')}, ','))`;
      return left?.n ?? 0;
    },
  };
}

/**
 * `public.todos` (id, owner, title) under the policy the README shows: each `sub` sees and
 * writes only its own rows. `web` may read and insert; alice owns a1 and a2, bob owns b1.
 */
export function todosWithPolicy(web: string): string {
  return `
    CREATE TABLE public.todos (id serial PRIMARY KEY, owner text NOT NULL, title text NOT NULL);
    ALTER TABLE public.todos ENABLE ROW LEVEL SECURITY;
    CREATE POLICY own ON public.todos
      USING (owner = current_setting('request.jwt.claims', true)::jsonb->>'sub')
      WITH CHECK (owner = current_setting('request.jwt.claims', true)::jsonb->>'sub');
    GRANT SELECT, INSERT ON public.todos TO ${web};
    GRANT USAGE ON SEQUENCE public.todos_id_seq TO ${web};
    INSERT INTO public.todos (owner, title) VALUES ('alice', 'a1'), ('alice', 'a2'), ('bob', 'b1');
  `;
}
