/**
 * The schemas themselves, behind PostgREST's back: what the migrations promise and what a user would
 * notice if they broke. Migrations re-apply cleanly; the platform's CHECKs, grants and pool capacity
 * hold (also under concurrency, on the real server); the pool enforces the sidekick limit, tenant
 * isolation and the write fence at SQL level; pool retrieval is the exact top-k of the client's own
 * linked chunks whatever vector index exists (flaw 3); a dedicated project answers its RPCs exactly
 * like the pool does for the same client.
 *
 * Runs on PGlite by default and on the real PostgreSQL server with STACK_POSTGRES_URL. The races
 * (`[real server only]`) need separate backends: on PGlite every connection shares one backend.
 * The HNSW recall test of dedicated projects is in schema-recall.test.ts (real server only).
 */

import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FreshDatabase } from '../src/stack/databases.js';
import { applyMigrations, type DatabaseKind } from '../src/stack/sql.js';
import { TENANT_TABLES } from '../src/tenancy/tenant-query.js';
import { migratedDatabase, ON_REAL_SERVER } from './support/db.js';

type Row = Record<string, unknown>;

/** What a test needs of one connection inside one transaction. */
interface Tx {
  exec(sql: string): Promise<void>;
  query<T = Row>(sql: string, params?: unknown[]): Promise<T[]>;
}

/** A PostgreSQL error as both PGlite and node-postgres report it. */
interface PgError {
  message: string;
  code?: string;
  constraint?: string;
}

/**
 * Runs `fn` in one transaction on one connection, after `setup` (e.g. SET LOCAL ROLE ...). PGlite's
 * query() takes one statement and the real server's executor is a pool, so this is the one way to
 * run several statements in one session on both: PGlite's transaction(), or on the real server a
 * pg.Client kept for the database (calls are queued on it; closeSession() before drop()).
 */
async function inTransaction<T>(db: FreshDatabase, setup: string[], fn: (tx: Tx) => Promise<T>): Promise<T> {
  if (db.pglite) {
    return db.pglite.transaction(async (t) => {
      const tx: Tx = {
        exec: async (sql) => {
          await t.exec(sql);
        },
        query: async <R = Row>(sql: string, params?: unknown[]) => (await t.query<R>(sql, params)).rows,
      };
      for (const s of setup) await t.query(s);
      return fn(tx);
    });
  }
  let session = sessions.get(db);
  if (!session) {
    session = { client: connect(db), tail: Promise.resolve() };
    sessions.set(db, session);
  }
  const run = async () => {
    const client = await session.client;
    try {
      await client.query('BEGIN');
      for (const s of setup) await client.query(s);
      const out = await fn(pgTx(client));
      await client.query('COMMIT');
      return out;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  };
  const result = session.tail.then(run, run);
  session.tail = result.catch(() => undefined);
  return result;
}

/** One connection per real-server database for inTransaction, used by one transaction at a time. */
const sessions = new Map<FreshDatabase, { client: Promise<pg.Client>; tail: Promise<unknown> }>();

/** Ends the database's session connection (before drop(), which would terminate it). */
async function closeSession(db: FreshDatabase | undefined): Promise<void> {
  const session = db && sessions.get(db);
  if (!session || !db) return;
  sessions.delete(db);
  await session.tail;
  await (await session.client).end();
}

function pgTx(client: pg.Client): Tx {
  return {
    exec: async (sql) => {
      await client.query(sql);
    },
    query: async <R = Row>(sql: string, params?: unknown[]) => (await client.query(sql, params)).rows as R[],
  };
}

/** A new connection of its own to a database of the real server (superuser). */
async function connect(db: FreshDatabase): Promise<pg.Client> {
  if (!db.url) throw new Error('a separate connection needs the real server (STACK_POSTGRES_URL)');
  const client = new pg.Client({ connectionString: db.url });
  client.on('error', () => undefined); // a dropped database ends its connections; the query that ran reports it
  await client.connect();
  return client;
}

/** The statements that make a session act as `role`, with these JWT claims. */
function roleSetup(role: 'anon' | 'authenticated' | 'service_role', claims?: Row): string[] {
  const out = [`SET LOCAL ROLE ${role}`];
  if (claims) {
    const json = JSON.stringify(claims).replaceAll("'", "''");
    out.push(`SELECT set_config('request.jwt.claims', '${json}', true)`);
  }
  return out;
}

function tenantClaims(clientId: string): Row {
  return { role: 'authenticated', client_id: clientId };
}

/** As PostgREST runs a request holding client `clientId`'s tenant JWT: role authenticated + claims. */
function asTenant<T>(db: FreshDatabase, clientId: string, fn: (tx: Tx) => Promise<T>, extra: string[] = []) {
  return inTransaction(db, [...roleSetup('authenticated', tenantClaims(clientId)), ...extra], fn);
}

function asRole<T>(
  db: FreshDatabase,
  role: 'anon' | 'authenticated' | 'service_role',
  fn: (tx: Tx) => Promise<T>,
) {
  return inTransaction(db, roleSetup(role, { role }), fn);
}

/** The error `p` rejects with (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<PgError> {
  try {
    await p;
  } catch (err) {
    return err as PgError;
  }
  throw new Error('expected the statement to fail, but it succeeded');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A small seeded PRNG (mulberry32), so the generated data is the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DIMS = 1024;

function randomVector(rand: () => number): number[] {
  return Array.from({ length: DIMS }, () => rand() - 0.5);
}

/** `base` plus a little noise: a query that has near neighbours. */
function near(base: number[], rand: () => number, noise = 0.05): number[] {
  return base.map((x) => x + (rand() - 0.5) * noise);
}

function lit(v: number[]): string {
  return `[${v.map((x) => x.toFixed(6)).join(',')}]`;
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

/** Applies `kind`'s migrations again on a migrated database; nothing may change but must not fail. */
async function expectReapplies(db: FreshDatabase, kind: DatabaseKind): Promise<void> {
  const before = await catalog(db);
  expect(before.length).toBeGreaterThan(20);
  await applyMigrations(db.sql, kind, { bootstrap: true });
  await applyMigrations(db.sql, kind, { bootstrap: true });
  expect(await catalog(db)).toEqual(before);
}

// =============================================================================================
// Platform
// =============================================================================================

describe('platform database', () => {
  let db: FreshDatabase;

  beforeAll(async () => {
    db = await migratedDatabase('platform');
  });
  afterAll(async () => {
    await closeSession(db);
    await db?.drop();
  });

  /** Removes every client and pool, so each capacity test starts from an empty platform. */
  async function resetPools(): Promise<void> {
    await db.sql.exec('DELETE FROM clients; DELETE FROM shared_pool_config;');
  }

  async function addPool(name: string, maxClients: number, active = true): Promise<string> {
    const [row] = await db.sql.query<{ id: string }>(
      `INSERT INTO shared_pool_config (pool_name, supabase_url, supabase_service_role_key, jwt_secret, max_clients, is_active)
       VALUES ($1, 'http://127.0.0.1:1', 'service-key', 'jwt-secret', $2, $3) RETURNING id`,
      [name, maxClients, active],
    );
    return row!.id;
  }

  async function addAdventurers(n: number): Promise<string[]> {
    const rows = await db.sql.query<{ id: string }>(
      `INSERT INTO clients (name, tier, hosting_type, max_sidekicks)
       SELECT 'adventurer ' || g, 'adventurer', 'shared', 1 FROM generate_series(1, $1::int) g RETURNING id`,
      [n],
    );
    return rows.map((r) => r.id);
  }

  async function assign(clientId: string): Promise<string> {
    const [row] = await db.sql.query<{ pool: string }>('SELECT assign_shared_pool($1) AS pool', [clientId]);
    return row!.pool;
  }

  /** Per pool: the trigger-kept count and the real number of clients in it. */
  async function poolCounts(): Promise<{ pool_name: string; kept: number; real: number }[]> {
    return db.sql.query(
      `SELECT p.pool_name, p.current_client_count AS kept,
              (SELECT count(*) FROM clients c WHERE c.shared_pool_id = p.id)::int AS real
         FROM shared_pool_config p ORDER BY p.pool_name`,
    );
  }

  it('migrations apply again on a migrated database and change nothing', async () => {
    await resetPools();
    const pool = await addPool('reapply', 10);
    const [client] = await addAdventurers(1);
    await assign(client!);
    await expectReapplies(db, 'platform');
    // Existing rows survive, and the pool-count trigger still fires exactly once per change.
    const [second] = await addAdventurers(1);
    expect(await assign(second!)).toBe(pool);
    expect(await poolCounts()).toEqual([{ pool_name: 'reapply', kept: 2, real: 2 }]);
  });

  it('the tier CHECKs reject an adventurer that is dedicated or has more than one sidekick, and a shared champion', async () => {
    const insert = (tier: string, hosting: string, max: number | null) =>
      db.sql.query('INSERT INTO clients (name, tier, hosting_type, max_sidekicks) VALUES ($1, $2, $3, $4)', [
        'check probe',
        tier,
        hosting,
        max,
      ]);
    expect((await rejection(insert('adventurer', 'dedicated', 1))).constraint).toBe(
      'check_adventurer_limits',
    );
    expect((await rejection(insert('adventurer', 'shared', 2))).constraint).toBe('check_adventurer_limits');
    expect((await rejection(insert('champion', 'shared', null))).constraint).toBe('check_champion_dedicated');
    expect((await rejection(insert('paragon', 'shared', null))).constraint).toBe('check_champion_dedicated');
    // Controls: the same inserts with valid values pass, so only the CHECKs refused the ones above.
    await insert('adventurer', 'shared', 1);
    await insert('champion', 'dedicated', null);
    await db.sql.exec(`DELETE FROM clients WHERE name = 'check probe'`);
  });

  // A CHECK passes when it yields NULL: the plan's `max_sidekicks = 1` let an adventurer with
  // max_sidekicks NULL (the column default: unlimited) through.
  it('the tier CHECK rejects an adventurer with max_sidekicks NULL (unlimited)', async () => {
    const err = await rejection(
      db.sql.query(
        `INSERT INTO clients (name, tier, hosting_type) VALUES ('null limit probe', 'adventurer', 'shared')`,
      ),
    ).finally(() => db.sql.exec(`DELETE FROM clients WHERE name = 'null limit probe'`));
    expect(err.constraint).toBe('check_adventurer_limits');
  });

  it('anon and authenticated cannot read clients or shared_pool_config, nor assign pools', async () => {
    for (const role of ['anon', 'authenticated'] as const) {
      for (const table of ['clients', 'shared_pool_config']) {
        const err = await rejection(asRole(db, role, (tx) => tx.query(`SELECT * FROM ${table}`)));
        expect(err.message, `${role} on ${table}`).toMatch(
          new RegExp(`permission denied for table ${table}`),
        );
      }
      const err = await rejection(
        asRole(db, role, (tx) => tx.query('SELECT assign_shared_pool(gen_random_uuid())')),
      );
      expect(err.message).toMatch(/permission denied for function assign_shared_pool/);
    }
    // Control: the service role reads both.
    await asRole(db, 'service_role', async (tx) => {
      await tx.query('SELECT * FROM clients');
      await tx.query('SELECT * FROM shared_pool_config');
    });
  });

  it('assign_shared_pool fills a pool to max_clients and refuses the next client', async () => {
    await resetPools();
    const pool = await addPool('small', 2);
    const [c1, c2, c3] = await addAdventurers(3);
    expect(await assign(c1!)).toBe(pool);
    expect(await assign(c2!)).toBe(pool);
    // Idempotent: a client that has a pool keeps it, and the count does not move.
    expect(await assign(c1!)).toBe(pool);
    const err = await rejection(assign(c3!));
    expect(err.message).toMatch(/no shared pool has room/);
    expect(await poolCounts()).toEqual([{ pool_name: 'small', kept: 2, real: 2 }]);
    // The CHECK holds even against a direct write that bypasses the function.
    const direct = await rejection(
      db.sql.query('UPDATE clients SET shared_pool_id = $1 WHERE id = $2', [pool, c3]),
    );
    expect(direct.constraint).toBe('shared_pool_capacity');
  });

  it('an inactive pool with room is never chosen', async () => {
    await resetPools();
    // Sorted first by name and empty: any ordering bug would pick it.
    await addPool('a-inactive', 100, false);
    const active = await addPool('b-active', 1);
    const [c1, c2] = await addAdventurers(2);
    expect(await assign(c1!)).toBe(active);
    expect((await rejection(assign(c2!))).message).toMatch(/no shared pool has room/);
    expect(await poolCounts()).toEqual([
      { pool_name: 'a-inactive', kept: 0, real: 0 },
      { pool_name: 'b-active', kept: 1, real: 1 },
    ]);
  });

  it('deleting or moving a client frees its slot (the count follows)', async () => {
    await resetPools();
    const pool = await addPool('churn', 2);
    const [c1, c2, c3] = await addAdventurers(3);
    await assign(c1!);
    await assign(c2!);
    await db.sql.query('DELETE FROM clients WHERE id = $1', [c1]);
    expect(await poolCounts()).toEqual([{ pool_name: 'churn', kept: 1, real: 1 }]);
    expect(await assign(c3!)).toBe(pool);
    expect(await poolCounts()).toEqual([{ pool_name: 'churn', kept: 2, real: 2 }]);
    // A tier move takes the client out of the pool: the slot is freed too.
    await db.sql.query(
      `UPDATE clients SET tier = 'champion', hosting_type = 'dedicated', max_sidekicks = NULL, shared_pool_id = NULL
        WHERE id = $1`,
      [c2],
    );
    expect(await poolCounts()).toEqual([{ pool_name: 'churn', kept: 1, real: 1 }]);
  });

  it.runIf(ON_REAL_SERVER)(
    '[real server only] 20 concurrent assignments to two pools of 5: exactly 10 succeed, 5 and 5',
    async () => {
      await resetPools();
      await addPool('race-a', 5);
      await addPool('race-b', 5);
      const ids = await addAdventurers(20);
      const conns = await Promise.all(ids.map(() => connect(db)));
      try {
        await Promise.all(conns.map((c) => c.query('SET ROLE service_role')));
        const results = await Promise.allSettled(
          conns.map((c, i) => c.query('SELECT assign_shared_pool($1) AS pool', [ids[i]])),
        );
        const failures = results
          .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
          .map((r) => String(r.reason));
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
        // The refused ten are refused for want of room, never by a deadlock.
        for (const f of failures) expect(f).toMatch(/no shared pool has room/);
        expect(await poolCounts()).toEqual([
          { pool_name: 'race-a', kept: 5, real: 5 },
          { pool_name: 'race-b', kept: 5, real: 5 },
        ]);
      } finally {
        await Promise.all(conns.map((c) => c.end()));
      }
    },
  );
});

// =============================================================================================
// Shared pool (and dedicated, for the comparison)
// =============================================================================================

/** One client's rows in the pool, as the isolation probes need them. */
interface Seeded {
  clientId: string;
  agentId: string;
  slug: string;
  documentId: string;
  conversationId: string;
  userId: string;
}

async function registerInPool(
  db: FreshDatabase,
  clientId: string,
  maxSidekicks: number | null,
): Promise<void> {
  await db.sql.query('INSERT INTO pool_clients (client_id, max_sidekicks) VALUES ($1, $2)', [
    clientId,
    maxSidekicks,
  ]);
}

/** A registered client with one row in every tenant table (as the service role would provision it). */
async function seedTenant(db: FreshDatabase, rand: () => number): Promise<Seeded> {
  const s: Seeded = {
    clientId: randomUUID(),
    agentId: randomUUID(),
    slug: 'sidekick', // the same slug for every client: slugs are unique per client only
    documentId: randomUUID(),
    conversationId: randomUUID(),
    userId: randomUUID(),
  };
  await registerInPool(db, s.clientId, 1);
  await db.sql.query(`INSERT INTO agents (id, client_id, name, slug) VALUES ($1, $2, 'Sidekick', $3)`, [
    s.agentId,
    s.clientId,
    s.slug,
  ]);
  await db.sql.query(`INSERT INTO documents (id, client_id, title, content) VALUES ($1, $2, 'doc', 'text')`, [
    s.documentId,
    s.clientId,
  ]);
  await db.sql.query('INSERT INTO agent_documents (client_id, agent_id, document_id) VALUES ($1, $2, $3)', [
    s.clientId,
    s.agentId,
    s.documentId,
  ]);
  await db.sql.query(
    `INSERT INTO document_chunks (client_id, document_id, chunk_index, content, embeddings) VALUES ($1, $2, 0, 'chunk', $3)`,
    [s.clientId, s.documentId, lit(randomVector(rand))],
  );
  await db.sql.query(
    `INSERT INTO conversations (id, client_id, agent_id, user_id, title) VALUES ($1, $2, $3, $4, 'talk')`,
    [s.conversationId, s.clientId, s.agentId, s.userId],
  );
  await db.sql.query(
    `INSERT INTO conversation_transcripts (client_id, conversation_id, agent_id, user_id, role, content, embeddings)
     VALUES ($1, $2, $3, $4, 'user', 'hello', $5)`,
    [s.clientId, s.conversationId, s.agentId, s.userId, lit(randomVector(rand))],
  );
  await db.sql.query(
    `INSERT INTO user_overviews (client_id, user_id, agent_id, sections) VALUES ($1, $2, $3, '{"likes":"tea"}')`,
    [s.clientId, s.userId, s.agentId],
  );
  return s;
}

describe('shared pool and dedicated databases', () => {
  let pool: FreshDatabase;
  let dedicated: FreshDatabase;

  beforeAll(async () => {
    [pool, dedicated] = await Promise.all([migratedDatabase('shared_pool'), migratedDatabase('dedicated')]);
  });
  afterAll(async () => {
    await Promise.all([closeSession(pool), closeSession(dedicated)]);
    await Promise.all([pool?.drop(), dedicated?.drop()]);
  });

  it('TENANT_TABLES lists parents before the tables that reference them (the copy and delete order)', async () => {
    const order: readonly string[] = TENANT_TABLES;
    for (const db of [pool, dedicated]) {
      const fks = await db.sql.query<{ child: string; parent: string }>(
        `SELECT conrelid::regclass::text AS child, confrelid::regclass::text AS parent
           FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace`,
      );
      const between = fks.filter(
        (f) => f.child !== f.parent && order.includes(f.child) && order.includes(f.parent),
      );
      expect(between.length).toBeGreaterThan(5);
      for (const { child, parent } of between) {
        expect(order.indexOf(parent), `${parent} before ${child}`).toBeLessThan(order.indexOf(child));
      }
    }
  });

  it('shared_pool migrations apply again on a migrated database and change nothing', async () => {
    const a = await seedTenant(pool, prng(1));
    await expectReapplies(pool, 'shared_pool');
    const [row] = await pool.sql.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM agents WHERE client_id = $1',
      [a.clientId],
    );
    expect(row!.n).toBe(1);
  });

  it('dedicated migrations apply again on a migrated database and change nothing', async () => {
    await dedicated.sql.exec(`INSERT INTO agents (name, slug) VALUES ('kept', 'reapply-probe')`);
    await expectReapplies(dedicated, 'dedicated');
    const rows = await dedicated.sql.query(`SELECT 1 FROM agents WHERE slug = 'reapply-probe'`);
    expect(rows).toHaveLength(1);
    await dedicated.sql.exec(`DELETE FROM agents WHERE slug = 'reapply-probe'`);
  });

  describe('sidekick limit', () => {
    const insertAgent = (tx: Tx, clientId: string, slug: string) =>
      tx.query(`INSERT INTO agents (client_id, name, slug) VALUES ($1, 'Sidekick', $2)`, [clientId, slug]);

    it('a client with max_sidekicks 1 gets its first sidekick and not a second, whoever inserts it', async () => {
      const client = randomUUID();
      await registerInPool(pool, client, 1);
      await asTenant(pool, client, (tx) => insertAgent(tx, client, 'first'));
      const err = await rejection(asTenant(pool, client, (tx) => insertAgent(tx, client, 'second')));
      expect(err.message).toMatch(/sidekick limit reached/);
      // The database enforces it for the service role too: not only an API-side count.
      const asService = await rejection(
        asRole(pool, 'service_role', (tx) => insertAgent(tx, client, 'second')),
      );
      expect(asService.message).toMatch(/sidekick limit reached/);
      // Deleting the first frees the slot.
      await asTenant(pool, client, (tx) => tx.query(`DELETE FROM agents WHERE slug = 'first'`));
      await asTenant(pool, client, (tx) => insertAgent(tx, client, 'second'));
      const rows = await pool.sql.query<{ slug: string }>('SELECT slug FROM agents WHERE client_id = $1', [
        client,
      ]);
      expect(rows.map((r) => r.slug)).toEqual(['second']);
    });

    it('a client without a limit (NULL) gets several sidekicks', async () => {
      const client = randomUUID();
      await registerInPool(pool, client, null);
      for (const slug of ['one', 'two', 'three'])
        await asTenant(pool, client, (tx) => insertAgent(tx, client, slug));
      const [row] = await pool.sql.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM agents WHERE client_id = $1',
        [client],
      );
      expect(row!.n).toBe(3);
    });

    it('a client missing from pool_clients cannot get a sidekick', async () => {
      const client = randomUUID();
      const err = await rejection(asTenant(pool, client, (tx) => insertAgent(tx, client, 'orphan')));
      expect(err.message).toMatch(/is not registered/);
      const asService = await rejection(
        asRole(pool, 'service_role', (tx) => insertAgent(tx, client, 'orphan')),
      );
      expect(asService.message).toMatch(/is not registered/);
    });

    it.runIf(ON_REAL_SERVER)(
      '[real server only] 10 concurrent sidekick creations of one client with limit 1: exactly one succeeds',
      async () => {
        const client = randomUUID();
        await registerInPool(pool, client, 1);
        const conns = await Promise.all(Array.from({ length: 10 }, () => connect(pool)));
        try {
          for (const c of conns) {
            await c.query('BEGIN');
            for (const s of roleSetup('authenticated', tenantClaims(client))) await c.query(s);
          }
          // Every INSERT is sent before any transaction commits, and the first commit waits until all
          // have had time to run: a count-then-insert without a lock would let all ten pass.
          const inserts = conns.map((c, i) =>
            insertAgent(pgTx(c), client, `racer-${i}`).then(
              () => true as const,
              (err: PgError) => err,
            ),
          );
          await sleep(300);
          const outcomes = await Promise.all(
            inserts.map(async (p, i) => {
              const outcome = await p;
              await conns[i]!.query(outcome === true ? 'COMMIT' : 'ROLLBACK');
              return outcome;
            }),
          );
          expect(outcomes.filter((o) => o === true)).toHaveLength(1);
          for (const o of outcomes) if (o !== true) expect(o.message).toMatch(/sidekick limit reached/);
          const [row] = await pool.sql.query<{ n: number }>(
            'SELECT count(*)::int AS n FROM agents WHERE client_id = $1',
            [client],
          );
          expect(row!.n).toBe(1);
        } finally {
          await Promise.all(conns.map((c) => c.end()));
        }
      },
    );
  });

  describe('isolation at SQL level (tenant A against client B)', () => {
    let A: Seeded;
    let B: Seeded;
    const q = lit(randomVector(prng(7)));

    beforeAll(async () => {
      A = await seedTenant(pool, prng(11));
      B = await seedTenant(pool, prng(12));
    });

    it("A sees none of B's rows in any table, and all of its own", async () => {
      for (const table of TENANT_TABLES) {
        const [total] = await pool.sql.query<{ a: number; b: number }>(
          `SELECT count(*) FILTER (WHERE client_id = $1)::int AS a, count(*) FILTER (WHERE client_id = $2)::int AS b
             FROM ${table}`,
          [A.clientId, B.clientId],
        );
        expect(total!.b, `B has rows in ${table}`).toBeGreaterThan(0);
        const seen = await asTenant(pool, A.clientId, (tx) =>
          tx.query<{ b: number; all: number }>(
            `SELECT count(*) FILTER (WHERE client_id = $1)::int AS b, count(*)::int AS all FROM ${table}`,
            [B.clientId],
          ),
        );
        expect(seen[0], table).toEqual({ b: 0, all: total!.a });
      }
      // pool_clients: A reads its own row (limit, fence) and no other.
      const own = await asTenant(pool, A.clientId, (tx) =>
        tx.query<{ client_id: string }>('SELECT * FROM pool_clients'),
      );
      expect(own.map((r) => r.client_id)).toEqual([A.clientId]);
    });

    it('A cannot insert rows tagged B, nor move its rows to B', async () => {
      const attempts: [string, string, unknown[]][] = [
        ['documents', `INSERT INTO documents (client_id, title) VALUES ($1, 'x')`, [B.clientId]],
        ['agents', `INSERT INTO agents (client_id, name, slug) VALUES ($1, 'x', 'planted')`, [B.clientId]],
        [
          'conversations',
          `INSERT INTO conversations (client_id, agent_id, user_id) VALUES ($1, $2, $3)`,
          [B.clientId, B.agentId, B.userId],
        ],
        [
          'documents (update)',
          'UPDATE documents SET client_id = $1 WHERE id = $2',
          [B.clientId, A.documentId],
        ],
      ];
      for (const [label, sql, params] of attempts) {
        const err = await rejection(asTenant(pool, A.clientId, (tx) => tx.query(sql, params)));
        // RLS's own refusal, not a trigger's answer about B (registered? its sidekick limit?).
        expect(err.message, label).toMatch(/row-level security/);
        expect(err.code, label).toBe('42501');
      }
      // Control: B itself may insert that document.
      await asTenant(pool, B.clientId, (tx) =>
        tx.query(`INSERT INTO documents (client_id, title) VALUES ($1, 'x')`, [B.clientId]),
      );
    });

    it("A cannot link its rows to B's rows (composite foreign keys)", async () => {
      const links: [string, string, unknown[]][] = [
        [
          'agent_documents_document',
          'INSERT INTO agent_documents (client_id, agent_id, document_id) VALUES ($1, $2, $3)',
          [A.clientId, A.agentId, B.documentId],
        ],
        [
          'chunks_document',
          `INSERT INTO document_chunks (client_id, document_id, chunk_index, content) VALUES ($1, $2, 9, 'x')`,
          [A.clientId, B.documentId],
        ],
        [
          'transcripts_conversation',
          `INSERT INTO conversation_transcripts (client_id, conversation_id, agent_id, role, content)
           VALUES ($1, $2, $3, 'user', 'x')`,
          [A.clientId, B.conversationId, A.agentId],
        ],
        [
          'conversations_agent',
          'INSERT INTO conversations (client_id, agent_id, user_id) VALUES ($1, $2, $3)',
          [A.clientId, B.agentId, A.userId],
        ],
      ];
      for (const [constraint, sql, params] of links) {
        const err = await rejection(asTenant(pool, A.clientId, (tx) => tx.query(sql, params)));
        expect(err.constraint, err.message).toBe(constraint);
      }
    });

    it("the RPCs refuse p_client_id = B with 'does not match', and answer for A", async () => {
      const calls: [string, (c: Seeded) => unknown[]][] = [
        ['SELECT * FROM match_documents($1, $2, $3, -1, 5)', (c) => [c.clientId, q, c.slug]],
        [
          'SELECT * FROM match_conversation_transcripts_secure($1, $2, $3, $4, -1, 5)',
          (c) => [c.clientId, q, c.slug, c.userId],
        ],
        ['SELECT get_user_overview_for_agent($1, $2, $3) AS o', (c) => [c.clientId, c.userId, c.agentId]],
      ];
      for (const [sql, params] of calls) {
        const err = await rejection(asTenant(pool, A.clientId, (tx) => tx.query(sql, params(B))));
        expect(err.message, sql).toMatch(/does not match/);
        // Control: the same call for A's own id returns A's rows.
        const rows = await asTenant(pool, A.clientId, (tx) => tx.query(sql, params(A)));
        expect(rows.length, sql).toBe(1);
        expect(rows, sql).not.toEqual([{ o: {} }]); // the overview RPC answers {} when it finds none
      }
      // anon gets nothing at all: neither the tables nor the RPCs.
      expect(
        (await rejection(asRole(pool, 'anon', (tx) => tx.query('SELECT * FROM agents')))).message,
      ).toMatch(/permission denied/);
      const anonRpc = await rejection(
        asRole(pool, 'anon', (tx) =>
          tx.query('SELECT * FROM match_documents($1, $2, $3, -1, 5)', [B.clientId, q, 'x']),
        ),
      );
      expect(anonRpc.message).toMatch(/permission denied for function match_documents/);
    });

    it("writes while A's write fence is up fail with 55000; reads go on and the service role still writes", async () => {
      const write = (tx: Tx) =>
        tx.query(`INSERT INTO documents (client_id, title) VALUES ($1, 'during the move')`, [A.clientId]);
      try {
        for (const fence of ['fenced', 'moved']) {
          await pool.sql.query('UPDATE pool_clients SET write_fence = $1 WHERE client_id = $2', [
            fence,
            A.clientId,
          ]);
          for (const [label, op] of [
            ['insert', write],
            [
              'update',
              (tx: Tx) => tx.query(`UPDATE documents SET title = 'x' WHERE id = $1`, [A.documentId]),
            ],
            ['delete', (tx: Tx) => tx.query('DELETE FROM user_overviews WHERE client_id = $1', [A.clientId])],
          ] as const) {
            const err = await rejection(asTenant(pool, A.clientId, op));
            expect(err.code, `${fence} ${label}: ${err.message}`).toBe('55000');
          }
          const read = await asTenant(pool, A.clientId, (tx) => tx.query('SELECT id FROM documents'));
          expect(read.length).toBeGreaterThan(0);
          // B is not fenced.
          await asTenant(pool, B.clientId, (tx) =>
            tx.query(`INSERT INTO documents (client_id, title) VALUES ($1, 'b is open')`, [B.clientId]),
          );
          // The mover (service role) writes A's rows.
          await asRole(pool, 'service_role', write);
        }
      } finally {
        await pool.sql.query(`UPDATE pool_clients SET write_fence = 'open' WHERE client_id = $1`, [
          A.clientId,
        ]);
      }
      await asTenant(pool, A.clientId, write);
    });
  });

  it('dedicated RPCs answer exactly like the pool RPCs for the same client', async () => {
    const rand = prng(42);
    const clientId = randomUUID();
    const main = { id: randomUUID(), slug: 'main' };
    const other = { id: randomUUID(), slug: 'other' };
    const users = { U: randomUUID(), V: randomUUID(), W: randomUUID() };
    // d1, d2 linked to main; d3 to other; d4 linked to main but disabled.
    const docs = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    const links = [
      [main.id, docs[0], true],
      [main.id, docs[1], true],
      [other.id, docs[2], true],
      [main.id, docs[3], false],
    ] as const;
    const at = (n: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString();
    const chunkVectors: number[][] = [];
    const chunks: unknown[][] = [];
    docs.forEach((doc, d) => {
      for (let i = 0; i < 8; i++) {
        const v = randomVector(rand);
        chunkVectors.push(v);
        chunks.push([randomUUID(), doc, i, `doc ${d} chunk ${i}`, lit(v)]);
      }
    });
    chunks.push([randomUUID(), docs[0], 99, 'not embedded yet', null]);
    const conversations = [
      [randomUUID(), main.id, users.U],
      [randomUUID(), main.id, users.U],
      [randomUUID(), main.id, users.V],
      [randomUUID(), other.id, users.U],
    ] as const;
    const transcriptVectors: number[][] = [];
    const transcripts: unknown[][] = [];
    conversations.forEach(([conv, agent, user], c) => {
      for (let i = 0; i < 5; i++) {
        const v = randomVector(rand);
        transcriptVectors.push(v);
        transcripts.push([
          randomUUID(),
          conv,
          agent,
          user,
          i % 2 ? 'assistant' : 'user',
          `c${c} t${i}`,
          lit(v),
          at(c * 10 + i),
        ]);
      }
    });
    transcripts.push([
      randomUUID(),
      conversations[0][0],
      main.id,
      users.U,
      'user',
      'no vector',
      null,
      at(99),
    ]);
    const overviews = [
      [users.U, main.id, { for: 'U with main' }],
      [users.U, null, { for: 'U, any agent' }],
      [users.V, null, { for: 'V, any agent' }],
    ] as const;

    // The same rows in both: the pool's carry client_id.
    for (const [db, tagged] of [
      [pool, true],
      [dedicated, false],
    ] as const) {
      const cid = tagged ? [clientId] : [];
      const col = tagged ? 'client_id, ' : '';
      const ph = (n: number) => Array.from({ length: n + cid.length }, (_, i) => `$${i + 1}`).join(', ');
      const ins = (table: string, cols: string, values: unknown[]) =>
        db.sql.query(`INSERT INTO ${table} (${col}${cols}) VALUES (${ph(values.length)})`, [
          ...cid,
          ...values,
        ]);
      if (tagged) await registerInPool(db, clientId, null);
      for (const a of [main, other]) await ins('agents', 'id, name, slug', [a.id, a.slug, a.slug]);
      for (const [i, doc] of docs.entries())
        await ins('documents', 'id, title, source_url', [doc, `Doc ${i}`, `https://example.test/${i}`]);
      for (const [agent, doc, enabled] of links)
        await ins('agent_documents', 'agent_id, document_id, enabled', [agent, doc, enabled]);
      for (const c of chunks)
        await ins('document_chunks', 'id, document_id, chunk_index, content, embeddings', c);
      for (const [i, [conv, agent, user]] of conversations.entries())
        await ins('conversations', 'id, agent_id, user_id, created_at', [conv, agent, user, at(i)]);
      for (const t of transcripts)
        await ins(
          'conversation_transcripts',
          'id, conversation_id, agent_id, user_id, role, content, embeddings, created_at',
          t,
        );
      for (const [user, agent, sections] of overviews)
        await ins('user_overviews', 'user_id, agent_id, sections', [user, agent, JSON.stringify(sections)]);
    }

    const queries = [
      near(chunkVectors[0]!, rand),
      near(chunkVectors[9]!, rand),
      near(chunkVectors[17]!, rand), // a chunk of the document only `other` sees
      near(chunkVectors[25]!, rand), // a chunk of the disabled link
      randomVector(rand),
    ].map(lit);
    const tQueries = [
      near(transcriptVectors[0]!, rand),
      near(transcriptVectors[12]!, rand),
      randomVector(rand),
    ].map(lit);
    const fromPool = (sql: string, params: unknown[]) =>
      asTenant(pool, clientId, (tx) => tx.query(sql, [clientId, ...params]));
    const fromDedicated = (sql: string, params: unknown[]) =>
      asRole(dedicated, 'service_role', (tx) => tx.query(sql, params));

    let compared = 0;
    let nonEmpty = 0;
    const same = async (poolSql: string, dedicatedSql: string, params: unknown[]) => {
      const [p, d] = await Promise.all([fromPool(poolSql, params), fromDedicated(dedicatedSql, params)]);
      expect(d, `${dedicatedSql} ${JSON.stringify(params).slice(0, 200)}`).toEqual(p);
      compared++;
      if (p.length > 0) nonEmpty++;
      return p;
    };

    for (const query of queries)
      for (const slug of ['main', 'other', 'nobody'])
        for (const [threshold, count] of [
          [-1, 3],
          [-1, 100],
          [0.5, 5],
        ] as const) {
          const rows = await same(
            'SELECT * FROM match_documents($1, $2, $3, $4, $5)',
            'SELECT * FROM match_documents($1, $2, $3, $4)',
            [query, slug, threshold, count],
          );
          // Only chunks of enabled links of that sidekick, never the disabled link's or a NULL vector.
          const allowed = slug === 'main' ? 16 : slug === 'other' ? 8 : 0;
          if (threshold === -1) expect(rows).toHaveLength(Math.min(count, allowed));
        }

    for (const query of tQueries)
      for (const [slug, user] of [
        ['main', users.U],
        ['main', users.V],
        ['other', users.U],
        ['main', users.W],
      ] as const)
        for (const exclude of [null, conversations[0][0]])
          for (const [threshold, count] of [
            [-1, 3],
            [-1, 100],
            [0.5, 5],
          ] as const) {
            const rows = await same(
              'SELECT * FROM match_conversation_transcripts_secure($1, $2, $3, $4, $5, $6, $7)',
              'SELECT * FROM match_conversation_transcripts_secure($1, $2, $3, $4, $5, $6)',
              [query, slug, user, threshold, count, exclude],
            );
            if (threshold === -1 && count === 100) {
              const expected = transcripts.filter(
                (t) =>
                  t[6] !== null &&
                  t[3] === user &&
                  t[2] === (slug === 'main' ? main.id : other.id) &&
                  t[1] !== exclude,
              ).length;
              expect(rows).toHaveLength(expected);
            }
          }

    for (const [user, agent, expected] of [
      [users.U, main.id, { for: 'U with main' }],
      [users.U, other.id, { for: 'U, any agent' }],
      [users.V, main.id, { for: 'V, any agent' }],
      [users.W, main.id, {}],
    ] as const) {
      const [row] = await same(
        'SELECT get_user_overview_for_agent($1, $2, $3) AS o',
        'SELECT get_user_overview_for_agent($1, $2) AS o',
        [user, agent],
      );
      expect(row).toEqual({ o: expected });
    }
    console.log(`dedicated vs pool: ${compared} RPC calls compared, ${nonEmpty} with rows, 0 differences`);
  });

  it('pool retrieval is the exact top-k of the client’s linked chunks, with an HNSW index and ef_search 10 (200 clients)', async () => {
    const started = performance.now();
    const CLIENTS = 200;
    const K = 5;
    // Everything is generated inside the database: parsing 1024-float text literals costs PGlite
    // ~4 ms a vector, random() there costs a fraction of that.
    await pool.sql.exec(`
        SELECT setseed(0.31);
        CREATE FUNCTION zz_random_vector() RETURNS vector LANGUAGE sql VOLATILE AS
          $$ SELECT array_agg(random() - 0.5)::vector(${DIMS}) FROM generate_series(1, ${DIMS}) $$;
        CREATE TABLE zz_exact_clients AS
          SELECT g AS n, gen_random_uuid() AS client_id, gen_random_uuid() AS agent_id
            FROM generate_series(0, ${CLIENTS - 1}) g;
        INSERT INTO pool_clients (client_id, max_sidekicks) SELECT client_id, 1 FROM zz_exact_clients;
        INSERT INTO agents (id, client_id, name, slug) SELECT agent_id, client_id, 'Sidekick', 'sidekick' FROM zz_exact_clients;
        -- 2 or 3 linked documents per client, and one document no sidekick links to.
        CREATE TABLE zz_exact_docs AS
          SELECT c.client_id, gen_random_uuid() AS id, d < 2 + c.n % 2 AS linked
            FROM zz_exact_clients c, generate_series(0, 2) d
           WHERE d < 2 + c.n % 2 OR d = 2 AND c.n % 2 = 0
          UNION ALL
          SELECT c.client_id, gen_random_uuid(), false FROM zz_exact_clients c WHERE c.n % 2 = 1;
        INSERT INTO documents (id, client_id, title)
          SELECT id, client_id, CASE WHEN linked THEN 'linked' ELSE 'unlinked' END FROM zz_exact_docs;
        INSERT INTO agent_documents (client_id, agent_id, document_id)
          SELECT d.client_id, c.agent_id, d.id FROM zz_exact_docs d JOIN zz_exact_clients c USING (client_id) WHERE d.linked;
        -- 5 to 8 chunks per linked document (10 to 24 per client), 2 per unlinked document.
        INSERT INTO document_chunks (client_id, document_id, chunk_index, content, embeddings)
          SELECT d.client_id, d.id, i, 'chunk ' || i, zz_random_vector()
            FROM zz_exact_docs d, generate_series(0, 7) i
           WHERE i < CASE WHEN d.linked THEN 5 + (hashtext(d.id::text) & 3) ELSE 2 END;
        -- The HNSW index an operator might add (small m/ef_construction: PGlite builds it in seconds).
        CREATE INDEX zz_exact_hnsw ON document_chunks USING hnsw (embeddings vector_cosine_ops)
          WITH (m = 4, ef_construction = 10);
        ANALYZE;
        -- Each client's query is close to two chunks it must never get: one of its own unlinked
        -- document and one of the next client's linked documents (same slug, other client).
        CREATE TABLE zz_exact_queries AS
          SELECT c.client_id, c.agent_id,
                 (SELECT dc.embeddings FROM document_chunks dc JOIN zz_exact_docs d ON d.id = dc.document_id
                   WHERE d.client_id = c.client_id AND NOT d.linked LIMIT 1)
               + (SELECT dc.embeddings FROM document_chunks dc JOIN zz_exact_docs d ON d.id = dc.document_id
                   JOIN zz_exact_clients nx ON nx.client_id = d.client_id
                   WHERE nx.n = (c.n + 1) % ${CLIENTS} AND d.linked LIMIT 1) AS embedding
            FROM zz_exact_clients c;
      `);
    const loaded = performance.now();
    try {
      const [{ chunks } = { chunks: 0 }] = await pool.sql.query<{ chunks: number }>(
        'SELECT count(*)::int AS chunks FROM document_chunks dc JOIN zz_exact_clients USING (client_id)',
      );
      // Who owns every chunk, and may it be returned (linked to that client's sidekick)?
      const owners = new Map(
        (
          await pool.sql.query<{ id: string; client_id: string; linked: boolean }>(
            'SELECT dc.id, dc.client_id, d.linked FROM document_chunks dc JOIN zz_exact_docs d ON d.id = dc.document_id',
          )
        ).map((r) => [r.id, r]),
      );
      const queries = await pool.sql.query<{ client_id: string; embedding: string }>(
        'SELECT client_id, embedding::text AS embedding FROM zz_exact_queries',
      );
      expect(queries).toHaveLength(CLIENTS);
      expect(queries.every((x) => x.embedding !== null)).toBe(true);

      // The reference: brute force over the client's chunks of linked documents, no index allowed.
      const exactSql = (limit: number) => `
          SELECT q.client_id, array(
            SELECT dc.id FROM document_chunks dc
             WHERE dc.client_id = q.client_id AND dc.embeddings IS NOT NULL
               AND dc.document_id IN (SELECT ad.document_id FROM agent_documents ad
                                       WHERE ad.client_id = q.client_id AND ad.agent_id = q.agent_id AND ad.enabled)
             ORDER BY dc.embeddings <=> q.embedding, dc.id LIMIT ${limit}) AS ids
            FROM zz_exact_queries q`;
      const exact = new Map(
        (
          await inTransaction(pool, ['SET LOCAL enable_indexscan = off'], (tx) =>
            tx.query<{ client_id: string; ids: string[] }>(exactSql(K)),
          )
        ).map((r) => [r.client_id, r.ids]),
      );

      // Per client, as that tenant, with the planner pushed towards approximate plans (ef_search 10,
      // no sequential scans, no sorts where an index can order): match_documents, and as a control
      // the seed's kind of query (ORDER BY distance LIMIT k over the client's linked chunks). The
      // control must go through the HNSW index and miss rows: that proves the index is usable and
      // that this comparison can fail.
      const approxSetup = [
        'SET LOCAL hnsw.ef_search = 10',
        'SET LOCAL enable_seqscan = off',
        'SET LOCAL enable_bitmapscan = off',
        'SET LOCAL enable_sort = off',
        // The disabled sort adds 1e10 to the plan's cost, which would make the real server JIT-compile
        // every call (~1 s each); the plan is the same without JIT.
        'SET LOCAL jit = off',
      ];
      const naive = `SELECT dc.id FROM document_chunks dc
         WHERE dc.client_id = $1
           AND dc.document_id IN (SELECT ad.document_id FROM agent_documents ad
                                   JOIN agents a ON a.client_id = ad.client_id AND a.id = ad.agent_id
                                  WHERE a.client_id = $1 AND a.slug = 'sidekick' AND ad.enabled)
         ORDER BY dc.embeddings <=> $2 LIMIT ${K}`;
      const wrong = (client: string, got: string[]) =>
        got.length !== K ||
        got.some((id) => owners.get(id)?.client_id !== client || !owners.get(id)?.linked) ||
        got.join() !== exact.get(client)!.join();
      let mismatches = 0;
      let approxMismatches = 0;
      const examples: string[] = [];
      for (const [i, x] of queries.entries()) {
        const [got, control] = await asTenant(
          pool,
          x.client_id,
          async (tx) => {
            if (i === 0) {
              const plan = await tx.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${naive}`, [
                x.client_id,
                x.embedding,
              ]);
              expect(plan.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/zz_exact_hnsw/);
            }
            const rpc = await tx.query<{ id: string }>(
              `SELECT id FROM match_documents($1, $2, 'sidekick', -1, ${K})`,
              [x.client_id, x.embedding],
            );
            const approx = await tx.query<{ id: string }>(naive, [x.client_id, x.embedding]);
            return [rpc.map((r) => r.id), approx.map((r) => r.id)];
          },
          approxSetup,
        );
        if (wrong(x.client_id, control)) approxMismatches++;
        if (wrong(x.client_id, got)) {
          mismatches++;
          if (examples.length < 3)
            examples.push(`${x.client_id}: got ${got.join()} want ${exact.get(x.client_id)!.join()}`);
        }
      }
      const finished = performance.now();
      console.log(
        `exact retrieval: ${queries.length} clients checked (${chunks} chunks), ${mismatches} mismatches; ` +
          `an approximate filtered HNSW plan (ef_search 10) differs for ${approxMismatches} clients; ` +
          `load ${((loaded - started) / 1000).toFixed(1)} s, checks ${((finished - loaded) / 1000).toFixed(1)} s`,
      );
      expect(examples).toEqual([]);
      expect(mismatches).toBe(0);
      expect(approxMismatches).toBeGreaterThan(CLIENTS / 2);
    } finally {
      await pool.sql.exec(`
          DROP INDEX zz_exact_hnsw;
          DROP TABLE zz_exact_queries;
          DROP FUNCTION zz_random_vector();
        `);
    }
  }, 180_000);
});
