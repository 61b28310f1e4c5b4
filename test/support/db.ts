import pg from 'pg';
import { expect } from 'vitest';
import { createDatabase, type FreshDatabase } from '../../src/stack/databases.js';
import { applyMigrations, type DatabaseKind } from '../../src/stack/sql.js';

/**
 * Tests run on PGlite by default. With STACK_POSTGRES_URL set (a superuser URL of the real
 * PostgreSQL server started by scripts/real-postgres.sh), the same tests run on that server.
 */
export const REAL_SERVER_URL = process.env.STACK_POSTGRES_URL || undefined;
export const ON_REAL_SERVER = REAL_SERVER_URL !== undefined;

export type Row = Record<string, unknown>;
/** One statement (with $1..$n parameters) inside a transaction; its rows. */
export type Query = <R = Row>(sql: string, params?: unknown[]) => Promise<R[]>;

/** An API role and the JWT claims PostgREST would put in request.jwt.claims (JSON text). */
export interface Actor {
  role: 'anon' | 'authenticated' | 'service_role';
  claims: string;
}
export const ANON: Actor = { role: 'anon', claims: '{"role":"anon"}' };
export const SERVICE: Actor = { role: 'service_role', claims: '{"role":"service_role"}' };
/** A request holding client `clientId`'s tenant JWT. */
export const tenant = (clientId: string): Actor => ({
  role: 'authenticated',
  claims: JSON.stringify({ role: 'authenticated', client_id: clientId }),
});

/** A migrated database, and the SQL-level ways a test acts on it as an API role. */
export interface TestDatabase extends FreshDatabase {
  /**
   * Runs `fn` in one transaction as `actor`, the way PostgREST runs a request (SET LOCAL ROLE and
   * the claims in request.jwt.claims), after `setup` (e.g. SET LOCAL ...). PGlite: its transaction
   * API; real server: one connection of a small pool.
   */
  as<T>(actor: Actor, fn: (q: Query) => Promise<T>, setup?: readonly string[]): Promise<T>;
  /** One statement as `actor`. */
  one<R = Row>(actor: Actor, sql: string, params?: unknown[]): Promise<R[]>;
  /** A connection of its own (real server only: on PGlite every connection shares one backend). */
  connect(): Promise<pg.Client>;
}

/** A new database with the local bootstrap and the migrations of `kind` applied. */
export async function migratedDatabase(kind: DatabaseKind): Promise<TestDatabase> {
  const db = await createDatabase({ serverUrl: REAL_SERVER_URL, label: kind });
  await applyMigrations(db.sql, kind, { bootstrap: true });
  return withRoles(db);
}

const ROLE_SETUP = `SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)`;

function withRoles(db: FreshDatabase): TestDatabase {
  const pool = db.url ? new pg.Pool({ connectionString: db.url, max: 4 }) : undefined;
  // An idle connection killed by DROP DATABASE ... WITH (FORCE) must not crash the run.
  pool?.on('error', () => undefined);

  async function as<T>(actor: Actor, fn: (q: Query) => Promise<T>, setup: readonly string[] = []) {
    if (!pool) {
      return db.pglite!.transaction(async (tx) => {
        await tx.query(ROLE_SETUP, [actor.role, actor.claims]);
        for (const s of setup) await tx.exec(s);
        return fn(async <R>(sql: string, params?: unknown[]) => (await tx.query<R>(sql, params ?? [])).rows);
      });
    }
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(ROLE_SETUP, [actor.role, actor.claims]);
      for (const s of setup) await client.query(s);
      const out = await fn(async <R>(sql: string, params?: unknown[]) => {
        return (await client.query(sql, params ?? [])).rows as R[];
      });
      await client.query('COMMIT');
      return out;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  return {
    ...db,
    as,
    one: <R = Row>(actor: Actor, sql: string, params?: unknown[]) => as(actor, (q) => q<R>(sql, params)),
    async connect() {
      if (!db.url) throw new Error('a connection of its own needs the real server (STACK_POSTGRES_URL)');
      const client = new pg.Client({ connectionString: db.url });
      client.on('error', () => undefined); // a dropped database ends it; the query that ran reports it
      await client.connect();
      return client;
    },
    async drop() {
      await pool?.end();
      await db.drop();
    },
  };
}

/** A PostgreSQL error as both PGlite and node-postgres report it. */
export interface PgError {
  code: string;
  message: string;
  constraint?: string;
}

/** The error `p` rejects with (fails the test if it resolves). */
export async function failure(p: Promise<unknown>): Promise<PgError> {
  try {
    await p;
  } catch (err) {
    const e = err as Partial<PgError>;
    return { code: String(e.code), message: String(e.message), constraint: e.constraint };
  }
  throw new Error('expected the statement to fail, it succeeded');
}

/** The objects of the public schema a migration creates, with their definitions and grants. */
async function catalog(db: FreshDatabase): Promise<string[]> {
  const rows = await db.sql.query<{ item: string }>(`
    SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || ' default ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-') AS item
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'table ' || relname || ' rls=' || relrowsecurity || ' acl=' || coalesce(relacl::text, '-')
      FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
     WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'constraint ' || conrelid::regclass::text || '.' || conname || ' ' || pg_get_constraintdef(oid)
      FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger
     WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
    UNION ALL
    SELECT 'policy ' || polrelid::regclass::text || '.' || polname || ' ' || polcmd::text || ' '
           || coalesce(pg_get_expr(polqual, polrelid), '-') || ' ' || coalesce(pg_get_expr(polwithcheck, polrelid), '-')
      FROM pg_policy
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure::text || ' secdef=' || prosecdef || ' acl=' || coalesce(proacl::text, '-')
           || ' config=' || coalesce(proconfig::text, '-') || ' md5=' || md5(prosrc)
      FROM pg_proc p
     WHERE pronamespace = 'public'::regnamespace
       AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.objid = p.oid AND dep.deptype = 'e')
    UNION ALL
    SELECT 'type ' || typname FROM pg_type t
     WHERE typnamespace = 'public'::regnamespace AND typtype = 'e'
    UNION ALL
    SELECT 'publication ' || pubname || ' ' || tablename FROM pg_publication_tables
  `);
  return rows.map((r) => r.item).sort();
}

/** Applies `kind`'s migrations twice more on a migrated database: neither fails nor changes the schema. */
export async function expectReapplies(db: FreshDatabase, kind: DatabaseKind): Promise<void> {
  const before = await catalog(db);
  expect(before.length).toBeGreaterThan(20);
  await applyMigrations(db.sql, kind, { bootstrap: true });
  await applyMigrations(db.sql, kind, { bootstrap: true });
  expect(await catalog(db)).toEqual(before);
}
