/**
 * The migrations, tested in SQL (no PostgREST): idempotency, the platform's constraints and pool
 * capacity, the shared pool's isolation (RLS, composite keys, RPC caller checks, sidekick limit,
 * write fence), exact top-k retrieval in the pool whatever indexes exist, and the dedicated
 * project's RPCs (same answers as the pool's; recall of its HNSW search on 20,000 chunks).
 *
 * Runs on PGlite, or on a real PostgreSQL server with STACK_POSTGRES_URL (the concurrency tests
 * run there only: PGlite has one connection, so everything on it is serial).
 */

import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FreshDatabase } from '../src/stack/databases.js';
import { applyMigrations, type DatabaseKind } from '../src/stack/sql.js';
import { TENANT_TABLES } from '../src/tenancy/tenant-query.js';
import { migratedDatabase, ON_REAL_SERVER } from './support/db.js';
import { cosine } from './support/vectors.js';

// ---------------------------------------------------------------------------------------------
// Helpers: acting as a Supabase API role, errors, vectors

type Row = Record<string, unknown>;
type Query = <R = Row>(text: string, params?: unknown[]) => Promise<R[]>;
/** An API role and the JWT claims PostgREST would put in request.jwt.claims. */
interface Actor {
  role: 'authenticated' | 'anon' | 'service_role';
  claims: string;
}

/**
 * Runs `fn` in one transaction as an API role, the way PostgREST does: SET LOCAL ROLE and the JWT
 * claims in request.jwt.claims. PGlite: its transaction API; real server: one pooled connection.
 */
class Sessions {
  private readonly pool: pg.Pool | undefined;
  constructor(private readonly db: FreshDatabase) {
    this.pool = db.url ? new pg.Pool({ connectionString: db.url, max: 4 }) : undefined;
    // An idle connection killed by DROP DATABASE ... WITH (FORCE) must not crash the run.
    this.pool?.on('error', () => undefined);
  }

  async as<T>(actor: Actor, fn: (q: Query) => Promise<T>): Promise<T> {
    const { role, claims } = actor;
    const setup = `SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)`;
    if (!this.pool) {
      return this.db.pglite!.transaction(async (tx) => {
        await tx.query(setup, [role, claims]);
        return fn(
          async <R>(text: string, params?: unknown[]) => (await tx.query<R>(text, params ?? [])).rows,
        );
      });
    }
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(setup, [role, claims]);
      const out = await fn(async <R>(text: string, params?: unknown[]) => {
        return (await client.query(text, params ?? [])).rows as R[];
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

  /** One statement as `actor`. */
  one<R = Row>(actor: Actor, text: string, params?: unknown[]): Promise<R[]> {
    return this.as(actor, (q) => q<R>(text, params));
  }

  async close(): Promise<void> {
    await this.pool?.end();
  }
}

interface PgErr {
  code: string;
  message: string;
}

/** The error a promise rejects with (fails the test if it resolves). */
async function failure(p: Promise<unknown>): Promise<PgErr> {
  try {
    await p;
  } catch (err) {
    const e = err as { code?: string; message?: string };
    return { code: String(e.code), message: String(e.message) };
  }
  throw new Error('expected the statement to fail, it succeeded');
}

const tenant = (clientId: string): Actor => ({
  role: 'authenticated',
  claims: JSON.stringify({ role: 'authenticated', client_id: clientId }),
});
const SERVICE: Actor = { role: 'service_role', claims: '{"role":"service_role"}' };
const ANON: Actor = { role: 'anon', claims: '{"role":"anon"}' };

/** mulberry32: a small seeded PRNG, so every run builds the same vectors. */
function prng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DIM = 1024;

/** A random 1024-dim vector with small integer components (cosine ignores scale; short text). */
function randomVector(rand: () => number): number[] {
  const v = new Array<number>(DIM);
  for (let i = 0; i < DIM; i++) v[i] = Math.round((rand() - 0.5) * 200);
  return v;
}

const literal = (v: readonly number[]) => `[${v.join(',')}]`;

async function elapsed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    console.log(`${label}: ${Math.round(performance.now() - t0)} ms`);
  }
}

/** Multi-row INSERTs of literal rows, `batch` rows per statement. */
async function insertRows(
  db: FreshDatabase,
  head: string,
  rows: readonly string[],
  batch = 200,
): Promise<void> {
  for (let i = 0; i < rows.length; i += batch) {
    await db.sql.exec(`${head} VALUES ${rows.slice(i, i + batch).join(',\n')}`);
  }
}

// ---------------------------------------------------------------------------------------------

describe('every migration folder applies twice in a row', () => {
  for (const kind of ['platform', 'shared_pool', 'dedicated'] as const) {
    it(`${kind}: bootstrap + migrations, then all of them again`, async () => {
      const db = await migratedDatabase(kind);
      try {
        await applyMigrations(db.sql, kind, { bootstrap: true });
        const [row] = await db.sql.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_roles
            WHERE rolname IN ('anon', 'authenticated', 'service_role', 'authenticator')`,
        );
        expect(row!.n).toBe(4);
      } finally {
        await db.drop();
      }
    });
  }

  it.runIf(ON_REAL_SERVER)(
    'several databases of one server bootstrap and migrate at the same time (roles are cluster-wide)',
    async () => {
      const { createDatabase } = await import('../src/stack/databases.js');
      const kinds: DatabaseKind[] = ['platform', 'shared_pool', 'dedicated', 'shared_pool', 'dedicated'];
      const dbs = await Promise.all(
        kinds.map((k) => createDatabase({ serverUrl: process.env.STACK_POSTGRES_URL, label: `conc_${k}` })),
      );
      try {
        await Promise.all(dbs.map((db, i) => applyMigrations(db.sql, kinds[i]!, { bootstrap: true })));
      } finally {
        await Promise.all(dbs.map((db) => db.drop()));
      }
    },
  );

  it('the local bootstrap gives Supabase roles and auth.jwt()', async () => {
    const db = await migratedDatabase('shared_pool');
    const s = new Sessions(db);
    try {
      const roles = await db.sql.query<{ rolname: string; rolcanlogin: boolean; rolbypassrls: boolean }>(
        `SELECT rolname, rolcanlogin, rolbypassrls FROM pg_roles
          WHERE rolname IN ('anon', 'authenticated', 'service_role', 'authenticator') ORDER BY rolname`,
      );
      expect(roles).toEqual([
        { rolname: 'anon', rolcanlogin: false, rolbypassrls: false },
        { rolname: 'authenticated', rolcanlogin: false, rolbypassrls: false },
        { rolname: 'authenticator', rolcanlogin: true, rolbypassrls: false },
        { rolname: 'service_role', rolcanlogin: false, rolbypassrls: true },
      ]);
      const id = randomUUID();
      const [r] = await s.one<{ jwt: { client_id: string }; role: string; who: string }>(
        tenant(id),
        'SELECT auth.jwt() AS jwt, auth.role() AS role, current_user::text AS who',
      );
      expect(r).toEqual({
        jwt: { role: 'authenticated', client_id: id },
        role: 'authenticated',
        who: 'authenticated',
      });
      const [m] = await db.sql.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_auth_members am
           JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles u ON u.oid = am.member
          WHERE u.rolname = 'authenticator' AND g.rolname IN ('anon', 'authenticated', 'service_role')`,
      );
      expect(m!.n).toBe(3);
    } finally {
      await s.close();
      await db.drop();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Platform

describe('platform: clients and shared pools', () => {
  let db: FreshDatabase;
  let s: Sessions;
  beforeAll(async () => {
    db = await migratedDatabase('platform');
    s = new Sessions(db);
  });
  afterAll(async () => {
    await s?.close();
    await db?.drop();
  });

  const insertClient = (cols: string, values: string) =>
    db.sql.query<{ id: string }>(`INSERT INTO clients (name, ${cols}) VALUES ('c', ${values}) RETURNING id`);

  async function addPool(name: string, maxClients: number, active = true): Promise<string> {
    const [row] = await db.sql.query<{ id: string }>(
      `INSERT INTO shared_pool_config (pool_name, supabase_url, supabase_service_role_key, jwt_secret, max_clients, is_active)
       VALUES ($1, 'http://pool.invalid', 'service-key', 'a-jwt-secret-of-at-least-32-characters', $2, $3) RETURNING id`,
      [name, maxClients, active],
    );
    return row!.id;
  }

  async function addAdventurer(): Promise<string> {
    const [row] = await insertClient('tier, hosting_type, max_sidekicks', `'adventurer', 'shared', 1`);
    return row!.id;
  }

  const count = async (poolId: string) =>
    (
      await db.sql.query<{ n: number }>(
        'SELECT current_client_count AS n FROM shared_pool_config WHERE id = $1',
        [poolId],
      )
    )[0]!.n;

  it('defaults to champion / dedicated, unlimited sidekicks, as the plan does', async () => {
    const [row] = await db.sql.query(
      `INSERT INTO clients (name) VALUES ('legacy')
       RETURNING tier::text, hosting_type::text, max_sidekicks, tier_features, provisioning_status, migration_status, migration_state`,
    );
    expect(row).toEqual({
      tier: 'champion',
      hosting_type: 'dedicated',
      max_sidekicks: null,
      tier_features: {},
      provisioning_status: 'pending',
      migration_status: 'none',
      migration_state: {},
    });
  });

  it('CHECKs refuse an adventurer that is dedicated, has 2 or unlimited sidekicks, and a shared champion', async () => {
    const e1 = await failure(
      insertClient('tier, hosting_type, max_sidekicks', `'adventurer', 'dedicated', 1`),
    );
    expect(e1.code).toBe('23514');
    expect(e1.message).toContain('check_adventurer_limits');
    const e2 = await failure(insertClient('tier, hosting_type, max_sidekicks', `'adventurer', 'shared', 2`));
    expect(e2.message).toContain('check_adventurer_limits');
    // The plan's version let this one through (max_sidekicks = 1 is NULL, and a NULL CHECK passes).
    const e3 = await failure(
      insertClient('tier, hosting_type, max_sidekicks', `'adventurer', 'shared', NULL`),
    );
    expect(e3.message).toContain('check_adventurer_limits');
    const e4 = await failure(insertClient('tier, hosting_type', `'champion', 'shared'`));
    expect(e4.message).toContain('check_champion_dedicated');
    const e5 = await failure(insertClient('tier, hosting_type', `'paragon', 'shared'`));
    expect(e5.message).toContain('check_champion_dedicated');
    await insertClient('tier, hosting_type', `'paragon', 'dedicated'`);
    await addAdventurer();
  });

  it('a shared client may be pending without a pool, but never ready without one', async () => {
    const id = await addAdventurer();
    const e = await failure(
      db.sql.query(`UPDATE clients SET provisioning_status = 'ready' WHERE id = $1`, [id]),
    );
    expect(e.code).toBe('23514');
    expect(e.message).toContain('clients_ready_shared_has_pool');
    for (const [col, bad] of [
      ['provisioning_status', 'done'],
      ['migration_status', 'copying'],
    ] as const) {
      const err = await failure(db.sql.query(`UPDATE clients SET ${col} = $2 WHERE id = $1`, [id, bad]));
      expect(err.code).toBe('23514');
    }
  });

  it('a pool needs the signing secret of its algorithm (HS256 secret, or ES256 private JWK + kid)', async () => {
    const insertPool = (cols: string, values: string) =>
      db.sql.query(
        `INSERT INTO shared_pool_config (pool_name, supabase_url, supabase_service_role_key, ${cols})
         VALUES ('p-${randomUUID()}', 'http://x.invalid', 'k', ${values})`,
      );
    const privateJwk = JSON.stringify({ kty: 'EC', crv: 'P-256', x: 'x', y: 'y', d: 'd' });
    const publicJwk = JSON.stringify({ kty: 'EC', crv: 'P-256', x: 'x', y: 'y' });
    expect((await failure(insertPool('jwt_algorithm', `'HS256'`))).message).toContain(
      'shared_pool_signing_key',
    );
    expect((await failure(insertPool('jwt_algorithm, jwt_secret', `'RS256', 's'`))).code).toBe('23514');
    expect(
      (await failure(insertPool('jwt_algorithm, jwt_private_key', `'ES256', '${privateJwk}'`))).message,
    ).toContain('shared_pool_signing_key');
    expect(
      (
        await failure(
          insertPool('jwt_algorithm, jwt_private_key, jwt_key_id', `'ES256', '${publicJwk}', 'kid'`),
        )
      ).message,
    ).toContain('shared_pool_signing_key');
    await insertPool('jwt_algorithm, jwt_private_key, jwt_key_id', `'ES256', '${privateJwk}', 'kid-1'`);
    await insertPool('jwt_secret', `'a-jwt-secret-of-at-least-32-characters'`);
  });

  it('only the service role reads the platform: anon and authenticated get permission denied', async () => {
    await addAdventurer();
    for (const actor of [ANON, tenant(randomUUID())]) {
      for (const table of ['clients', 'shared_pool_config']) {
        const e = await failure(s.one(actor, `SELECT * FROM ${table}`));
        expect(e.code).toBe('42501');
      }
      const e = await failure(s.one(actor, 'SELECT assign_shared_pool($1)', [randomUUID()]));
      expect(e.code).toBe('42501');
    }
    const rows = await s.one(SERVICE, 'SELECT id FROM clients');
    expect(rows.length).toBeGreaterThan(0);
    const [rls] = await db.sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_class WHERE relname IN ('clients', 'shared_pool_config') AND relrowsecurity`,
    );
    expect(rls!.n).toBe(2);
  });

  it('updated_at follows updates', async () => {
    const [c] = await db.sql.query<{ id: string }>(
      `INSERT INTO clients (name, created_at, updated_at) VALUES ('u', '2000-01-01', '2000-01-01') RETURNING id`,
    );
    const [row] = await db.sql.query<{ fresh: boolean }>(
      `UPDATE clients SET name = 'u2' WHERE id = $1 RETURNING updated_at > '2001-01-01' AS fresh`,
      [c!.id],
    );
    expect(row!.fresh).toBe(true);
  });

  describe('pool capacity', () => {
    it('fills a pool of 2, refuses the 3rd clearly, never picks an inactive pool, and follows deletes', async () => {
      const small = await addPool(`small-${randomUUID()}`, 2);
      // Inactive pools with room, before and after "small" in name order: never chosen.
      const off1 = await addPool(`a-off-${randomUUID()}`, 100, false);
      const off2 = await addPool(`z-off-${randomUUID()}`, 100, false);
      // Everything else in this database is full or inactive.
      await db.sql.exec(
        `UPDATE shared_pool_config SET is_active = false WHERE id NOT IN ('${small}', '${off1}', '${off2}')`,
      );
      const [c1, c2, c3] = [await addAdventurer(), await addAdventurer(), await addAdventurer()];
      const assign = (id: string) =>
        s
          .one<{ pool: string }>(SERVICE, 'SELECT assign_shared_pool($1) AS pool', [id])
          .then((r) => r[0]!.pool);

      expect(await assign(c1!)).toBe(small);
      expect(await assign(c2!)).toBe(small);
      expect(await assign(c2!)).toBe(small); // idempotent: keeps its pool, counted once
      expect(await count(small)).toBe(2);
      const e = await failure(assign(c3!));
      expect(e.code).toBe('P0001');
      expect(e.message).toMatch(/^no shared pool has room/);
      expect(await count(off1)).toBe(0);
      expect(await count(off2)).toBe(0);
      // Going around the function does not overfill either.
      const over = await failure(
        db.sql.query('UPDATE clients SET shared_pool_id = $2 WHERE id = $1', [c3, small]),
      );
      expect(over.code).toBe('23514');
      expect(over.message).toContain('shared_pool_capacity');

      await db.sql.query('DELETE FROM clients WHERE id = $1', [c1]);
      expect(await count(small)).toBe(1);
      expect(await assign(c3!)).toBe(small);
      expect(await count(small)).toBe(2);
      // Moving a client between pools moves the count.
      await db.sql.query('UPDATE shared_pool_config SET is_active = true, max_clients = 5 WHERE id = $1', [
        off1,
      ]);
      await db.sql.query('UPDATE clients SET shared_pool_id = $2 WHERE id = $1', [c3, off1]);
      expect([await count(small), await count(off1)]).toEqual([1, 1]);
      await db.sql.query('UPDATE shared_pool_config SET is_active = false WHERE id = $1', [off1]);
    });

    it('picks the least loaded active pool; a dedicated client gets none', async () => {
      await db.sql.exec('UPDATE shared_pool_config SET is_active = false');
      const p = await addPool(`even-p-${randomUUID()}`, 4);
      const q = await addPool(`even-q-${randomUUID()}`, 4);
      const ids = [
        await addAdventurer(),
        await addAdventurer(),
        await addAdventurer(),
        await addAdventurer(),
      ];
      for (const id of ids) await s.one(SERVICE, 'SELECT assign_shared_pool($1)', [id]);
      expect([await count(p), await count(q)]).toEqual([2, 2]);
      const [champ] = await insertClient('tier, hosting_type', `'champion', 'dedicated'`);
      const e = await failure(s.one(SERVICE, 'SELECT assign_shared_pool($1)', [champ!.id]));
      expect(e.message).toContain('is not a shared client');
      const ghost = await failure(s.one(SERVICE, 'SELECT assign_shared_pool($1)', [randomUUID()]));
      expect(ghost.message).toContain('does not exist');
    });

    it('re-applying the migrations keeps the counts (and repairs a count that drifted)', async () => {
      const before = await db.sql.query(
        'SELECT id, current_client_count FROM shared_pool_config ORDER BY id',
      );
      const [drift] = await db.sql.query<{ id: string }>(
        `SELECT id FROM shared_pool_config WHERE current_client_count > 0 LIMIT 1`,
      );
      await db.sql.query('UPDATE shared_pool_config SET current_client_count = 0 WHERE id = $1', [drift!.id]);
      await applyMigrations(db.sql, 'platform', { bootstrap: true });
      expect(
        await db.sql.query('SELECT id, current_client_count FROM shared_pool_config ORDER BY id'),
      ).toEqual(before);
    });

    it.runIf(ON_REAL_SERVER)(
      'concurrent assignments on separate connections never overfill (real server)',
      async () => {
        await db.sql.exec('UPDATE shared_pool_config SET is_active = false');
        const p = await addPool(`race-p-${randomUUID()}`, 3);
        const q = await addPool(`race-q-${randomUUID()}`, 3);
        const ids: string[] = [];
        for (let i = 0; i < 8; i++) ids.push(await addAdventurer());
        const conns = ids.map(() => new pg.Client({ connectionString: db.url }));
        await Promise.all(conns.map((c) => c.connect()));
        try {
          const results = await Promise.allSettled(
            conns.map((c, i) =>
              c.query(
                `BEGIN; SET LOCAL ROLE service_role; SELECT assign_shared_pool('${ids[i]}'); SELECT pg_sleep(0.05); COMMIT;`,
              ),
            ),
          );
          const ok = results.filter((r) => r.status === 'fulfilled').length;
          const refused = results.filter(
            (r) => r.status === 'rejected' && /^no shared pool has room/.test((r.reason as Error).message),
          ).length;
          expect([ok, refused]).toEqual([6, 2]);
          expect([await count(p), await count(q)]).toEqual([3, 3]);
        } finally {
          await Promise.all(conns.map((c) => c.end()));
        }
      },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Shared pool

interface TenantRows {
  client: string;
  agent: string;
  document: string;
  chunk: string;
  link: string;
  conversation: string;
  transcript: string;
  overview: string;
  user: string;
}

/** A registered pool client with one row in every tenant table (inserted as the superuser). */
async function seedTenant(db: FreshDatabase, maxSidekicks: number | null = null): Promise<TenantRows> {
  const r: TenantRows = {
    client: randomUUID(),
    agent: randomUUID(),
    document: randomUUID(),
    chunk: randomUUID(),
    link: randomUUID(),
    conversation: randomUUID(),
    transcript: randomUUID(),
    overview: randomUUID(),
    user: randomUUID(),
  };
  const v = literal(randomVector(prng(r.client.charCodeAt(0))));
  await db.sql.exec(`
    INSERT INTO pool_clients (client_id, max_sidekicks) VALUES ('${r.client}', ${maxSidekicks ?? 'NULL'});
    INSERT INTO agents (id, client_id, name, slug) VALUES ('${r.agent}', '${r.client}', 'Guide', 'guide');
    INSERT INTO documents (id, client_id, title) VALUES ('${r.document}', '${r.client}', 'Doc');
    INSERT INTO document_chunks (id, client_id, document_id, chunk_index, content, embeddings)
      VALUES ('${r.chunk}', '${r.client}', '${r.document}', 0, 'chunk', '${v}');
    INSERT INTO agent_documents (id, client_id, agent_id, document_id) VALUES ('${r.link}', '${r.client}', '${r.agent}', '${r.document}');
    INSERT INTO conversations (id, client_id, agent_id, user_id) VALUES ('${r.conversation}', '${r.client}', '${r.agent}', '${r.user}');
    INSERT INTO conversation_transcripts (id, client_id, conversation_id, agent_id, user_id, role, content, embeddings)
      VALUES ('${r.transcript}', '${r.client}', '${r.conversation}', '${r.agent}', '${r.user}', 'user', 'hi', '${v}');
    INSERT INTO user_overviews (id, client_id, user_id, agent_id, sections)
      VALUES ('${r.overview}', '${r.client}', '${r.user}', '${r.agent}', '{"name": "${r.client}"}');
  `);
  return r;
}

describe('shared pool: isolation enforced by the database', () => {
  let db: FreshDatabase;
  let s: Sessions;
  let A: TenantRows;
  let B: TenantRows;
  const zero = literal(new Array<number>(DIM).fill(1));

  beforeAll(async () => {
    db = await migratedDatabase('shared_pool');
    s = new Sessions(db);
    A = await seedTenant(db);
    B = await seedTenant(db);
  });
  afterAll(async () => {
    await s?.close();
    await db?.drop();
  });

  it('as A, every table shows A its own rows and none of B', async () => {
    for (const table of TENANT_TABLES) {
      const rows = await s.one<{ client_id: string }>(tenant(A.client), `SELECT client_id FROM ${table}`);
      expect(rows, table).toEqual([{ client_id: A.client }]);
      const theirs = await s.one(tenant(A.client), `SELECT * FROM ${table} WHERE client_id = $1`, [B.client]);
      expect(theirs, table).toEqual([]);
    }
    const own = await s.one(tenant(A.client), 'SELECT client_id FROM pool_clients');
    expect(own).toEqual([{ client_id: A.client }]);
    // A token without a client_id claim, or no claims at all: nothing.
    for (const claims of ['{"role":"authenticated"}', '']) {
      for (const table of [...TENANT_TABLES, 'pool_clients']) {
        expect(await s.one({ role: 'authenticated', claims }, `SELECT * FROM ${table}`), table).toEqual([]);
      }
    }
  });

  it('as A, rows tagged B cannot be inserted, and A cannot re-tag, update or delete into B', async () => {
    const inserts: Record<string, string> = {
      agents: `INSERT INTO agents (client_id, name, slug) VALUES ('${B.client}', 'x', 'x-${randomUUID()}')`,
      documents: `INSERT INTO documents (client_id, title) VALUES ('${B.client}', 'x')`,
      document_chunks: `INSERT INTO document_chunks (client_id, document_id, chunk_index, content) VALUES ('${B.client}', '${B.document}', 9, 'x')`,
      agent_documents: `INSERT INTO agent_documents (client_id, agent_id, document_id) VALUES ('${B.client}', '${B.agent}', '${B.document}')`,
      conversations: `INSERT INTO conversations (client_id, agent_id) VALUES ('${B.client}', '${B.agent}')`,
      conversation_transcripts: `INSERT INTO conversation_transcripts (client_id, conversation_id, role) VALUES ('${B.client}', '${B.conversation}', 'user')`,
      user_overviews: `INSERT INTO user_overviews (client_id, user_id) VALUES ('${B.client}', '${randomUUID()}')`,
    };
    for (const [table, sql] of Object.entries(inserts)) {
      const e = await failure(s.one(tenant(A.client), sql));
      expect(e.code, table).toBe('42501');
      expect(e.message, table).toContain('row-level security');
    }
    const retag = await failure(
      s.one(tenant(A.client), 'UPDATE documents SET client_id = $1 WHERE id = $2', [B.client, A.document]),
    );
    expect(retag.code).toBe('42501');
    for (const table of TENANT_TABLES) {
      const upd = await s.one(
        tenant(A.client),
        `UPDATE ${table} SET created_at = now() WHERE client_id = $1 RETURNING id`,
        [B.client],
      );
      expect(upd, table).toEqual([]);
      const del = await s.one(tenant(A.client), `DELETE FROM ${table} WHERE client_id = $1 RETURNING id`, [
        B.client,
      ]);
      expect(del, table).toEqual([]);
    }
    const pc = await failure(s.one(tenant(A.client), `UPDATE pool_clients SET max_sidekicks = NULL`));
    expect(pc.code).toBe('42501');
    const pcIns = await failure(
      s.one(tenant(A.client), `INSERT INTO pool_clients (client_id) VALUES ($1)`, [randomUUID()]),
    );
    expect(pcIns.code).toBe('42501');
    const trunc = await failure(s.one(tenant(A.client), 'TRUNCATE agents CASCADE'));
    expect(trunc.code).toBe('42501');
  });

  it("A's own rows cannot reference B's rows (composite keys), and the refusal does not tell B's row exists", async () => {
    const ghost = randomUUID();
    const probes: Array<[string, (target: string) => string]> = [
      [
        'agent_documents -> B document',
        (t) =>
          `INSERT INTO agent_documents (client_id, agent_id, document_id) VALUES ('${A.client}', '${A.agent}', '${t}')`,
      ],
      [
        'agent_documents -> B agent',
        (t) =>
          `INSERT INTO agent_documents (client_id, agent_id, document_id) VALUES ('${A.client}', '${t}', '${A.document}')`,
      ],
      [
        'document_chunks -> B document',
        (t) =>
          `INSERT INTO document_chunks (client_id, document_id, chunk_index, content) VALUES ('${A.client}', '${t}', 1, 'x')`,
      ],
      [
        'conversations -> B agent',
        (t) => `INSERT INTO conversations (client_id, agent_id) VALUES ('${A.client}', '${t}')`,
      ],
      [
        'transcripts -> B conversation',
        (t) =>
          `INSERT INTO conversation_transcripts (client_id, conversation_id, role) VALUES ('${A.client}', '${t}', 'user')`,
      ],
      [
        'transcripts -> B agent',
        (t) =>
          `INSERT INTO conversation_transcripts (client_id, conversation_id, agent_id, role) VALUES ('${A.client}', '${A.conversation}', '${t}', 'user')`,
      ],
      [
        'user_overviews -> B agent',
        (t) =>
          `INSERT INTO user_overviews (client_id, user_id, agent_id) VALUES ('${A.client}', '${randomUUID()}', '${t}')`,
      ],
    ];
    const targetOf = (name: string) =>
      name.endsWith('B document') ? B.document : name.endsWith('B agent') ? B.agent : B.conversation;
    for (const [name, sql] of probes) {
      const target = targetOf(name);
      const real = await failure(s.one(tenant(A.client), sql(target)));
      expect(real.code, name).toBe('23503');
      const fake = await failure(s.one(tenant(A.client), sql(ghost)));
      expect(real.message.replaceAll(target, '<id>'), name).toBe(fake.message.replaceAll(ghost, '<id>'));
    }
    // The same holds for the service role: the keys, not RLS, keep references inside one client.
    const e = await failure(
      s.one(
        SERVICE,
        `INSERT INTO agent_documents (client_id, agent_id, document_id) VALUES ('${A.client}', '${A.agent}', '${B.document}')`,
      ),
    );
    expect(e.code).toBe('23503');
  });

  it("the RPCs refuse a p_client_id that is not the caller's claim; only the service role names any client", async () => {
    const calls: Array<[string, unknown[]]> = [
      ['SELECT * FROM match_documents($1, $2::vector, $3, -2, 10)', [B.client, zero, 'guide']],
      [
        'SELECT * FROM match_conversation_transcripts_secure($1, $2::vector, $3, $4, -2, 10, NULL)',
        [B.client, zero, 'guide', B.user],
      ],
      ['SELECT get_user_overview_for_agent($1, $2, $3) AS o', [B.client, B.user, B.agent]],
    ];
    for (const [sql, params] of calls) {
      const e = await failure(s.one(tenant(A.client), sql, params));
      expect(e.code).toBe('42501');
      expect(e.message).toBe("p_client_id does not match the caller's client_id claim");
      // A superuser session without a claim is refused too; the service role is not.
      expect((await failure(db.sql.query(sql, params))).code).toBe('42501');
      expect((await s.one(SERVICE, sql, params)).length).toBe(1);
      expect((await failure(s.one(ANON, sql, params))).code).toBe('42501'); // no EXECUTE for anon
    }
    const docs = await s.one<{ id: string }>(
      tenant(A.client),
      'SELECT id FROM match_documents($1, $2::vector, $3, -2, 10)',
      [A.client, zero, 'guide'],
    );
    expect(docs.map((d) => d.id)).toEqual([A.chunk]);
    const recall = await s.one<{ id: string }>(
      tenant(A.client),
      'SELECT id FROM match_conversation_transcripts_secure($1, $2::vector, $3, $4, -2, 10, NULL)',
      [A.client, zero, 'guide', A.user],
    );
    expect(recall.map((d) => d.id)).toEqual([A.transcript]);
    const [ov] = await s.one<{ o: unknown }>(
      tenant(A.client),
      'SELECT get_user_overview_for_agent($1, $2, $3) AS o',
      [A.client, A.user, A.agent],
    );
    expect(ov!.o).toEqual({ name: A.client });
  });

  it('anon gets nothing: no table privileges, no RPCs', async () => {
    for (const table of [...TENANT_TABLES, 'pool_clients']) {
      expect((await failure(s.one(ANON, `SELECT 1 FROM ${table} LIMIT 1`))).code, table).toBe('42501');
    }
  });

  it("an agent tagged B is refused exactly like one tagged a client that does not exist (no oracle on B's limit)", async () => {
    await db.sql.query('UPDATE pool_clients SET max_sidekicks = 1 WHERE client_id = $1', [B.client]);
    try {
      const ghost = randomUUID();
      const tagged = (c: string) =>
        failure(
          s.one(tenant(A.client), 'INSERT INTO agents (client_id, name, slug) VALUES ($1, $2, $3)', [
            c,
            'p',
            'p',
          ]),
        );
      const b = await tagged(B.client);
      const g = await tagged(ghost);
      expect(b.code).toBe(g.code);
      expect(b.message.replaceAll(B.client, '<id>')).toBe(g.message.replaceAll(ghost, '<id>'));
      expect(b.message).not.toContain('limit');
    } finally {
      await db.sql.query('UPDATE pool_clients SET max_sidekicks = NULL WHERE client_id = $1', [B.client]);
    }
  });

  it('policies evaluate the claim once per statement (an InitPlan), not per row', async () => {
    const plan = await s.one<{ 'QUERY PLAN': string }>(
      tenant(A.client),
      'EXPLAIN SELECT * FROM document_chunks',
    );
    expect(plan.map((p) => p['QUERY PLAN']).join('\n')).toContain('InitPlan');
    const policies = await db.sql.query<{
      tablename: string;
      roles: string[];
      qual: string;
      with_check: string;
    }>(
      `SELECT tablename, roles::text[] AS roles, qual, with_check FROM pg_policies WHERE schemaname = 'public'`,
    );
    expect(policies.map((p) => p.tablename).sort()).toEqual([...TENANT_TABLES, 'pool_clients'].sort());
    for (const p of policies) {
      expect(p.roles, p.tablename).toEqual(['authenticated']);
      for (const expr of p.tablename === 'pool_clients' ? [p.qual] : [p.qual, p.with_check]) {
        expect(expr.replace(/\s+/g, ' '), p.tablename).toMatch(
          /^\(client_id = \( SELECT .*auth\.jwt\(\) ->> 'client_id'/,
        );
      }
    }
  });

  it('schema facts: RLS everywhere, client_id-led indexes, no approximate vector index, one SECURITY DEFINER', async () => {
    const noRls = await db.sql.query(
      `SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND NOT relrowsecurity`,
    );
    expect(noRls).toEqual([]);
    const notLed = await db.sql.query<{ index: string }>(
      `SELECT i.indexrelid::regclass::text AS index
         FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
        WHERE t.relnamespace = 'public'::regnamespace AND t.relname = ANY($1) AND NOT i.indisprimary
          AND (SELECT attname FROM pg_attribute WHERE attrelid = t.oid AND attnum = i.indkey[0]) <> 'client_id'`,
      [[...TENANT_TABLES]],
    );
    expect(notLed).toEqual([]);
    // A tier move reads one client's rows in id order, page by page: an index range on every table.
    const noKeysetIndex = await db.sql.query<{ table: string }>(
      `SELECT t.relname AS table FROM pg_class t
        WHERE t.relnamespace = 'public'::regnamespace AND t.relname = ANY($1)
          AND NOT EXISTS (
            SELECT 1 FROM pg_index i
             WHERE i.indrelid = t.oid
               AND (SELECT attname FROM pg_attribute WHERE attrelid = t.oid AND attnum = i.indkey[0]) = 'client_id'
               AND (SELECT attname FROM pg_attribute WHERE attrelid = t.oid AND attnum = i.indkey[1]) = 'id')`,
      [[...TENANT_TABLES]],
    );
    expect(noKeysetIndex).toEqual([]);
    const ann = await db.sql.query(
      `SELECT c.relname FROM pg_class c JOIN pg_am am ON am.oid = c.relam WHERE am.amname IN ('hnsw', 'ivfflat')`,
    );
    expect(ann).toEqual([]);
    const definers = await db.sql.query<{ proname: string; proconfig: string[] }>(
      `SELECT proname, proconfig FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND prosecdef`,
    );
    expect(definers).toEqual([{ proname: 'enforce_sidekick_limit', proconfig: ['search_path=""'] }]);
    const pub = await db.sql.query(
      `SELECT tablename FROM pg_publication_tables WHERE pubname = 'supabase_realtime'`,
    );
    expect(pub).toEqual([{ tablename: 'conversation_transcripts' }]);
  });

  it('updated_at is kept on every table that has it', async () => {
    for (const table of ['agents', 'documents', 'conversations', 'user_overviews', 'pool_clients']) {
      await db.sql.query(`UPDATE ${table} SET updated_at = '2000-01-01' WHERE client_id = $1`, [A.client]);
      const rows = await db.sql.query<{ updated_at: Date }>(
        `SELECT updated_at FROM ${table} WHERE client_id = $1`,
        [A.client],
      );
      // The trigger overrides even an explicit value: updated_at is the time of the update.
      expect(rows[0]!.updated_at.getFullYear(), table).toBeGreaterThan(2000);
    }
  });

  describe('the sidekick limit', () => {
    it('a client with max_sidekicks 1 gets one agent; the second is refused with the reason', async () => {
      const L = await seedTenant(db, 1);
      const add = (actor: Actor | null, slug: string) => {
        const sql = 'INSERT INTO agents (client_id, name, slug) VALUES ($1, $2, $3) RETURNING id';
        return actor ? s.one(actor, sql, [L.client, slug, slug]) : db.sql.query(sql, [L.client, slug, slug]);
      };
      for (const actor of [tenant(L.client), SERVICE, null]) {
        const e = await failure(add(actor, `second-${randomUUID()}`));
        expect(e.code).toBe('23514');
        expect(e.message).toBe(`sidekick limit reached: client ${L.client} may have at most 1 sidekick(s)`);
      }
      // Renaming the one agent is not a second one.
      await s.one(tenant(L.client), `UPDATE agents SET name = 'renamed' WHERE id = $1`, [L.agent]);
      await db.sql.query('UPDATE pool_clients SET max_sidekicks = 2 WHERE client_id = $1', [L.client]);
      await add(tenant(L.client), 'second');
      expect((await failure(add(tenant(L.client), 'third'))).message).toContain('at most 2 sidekick');
      // Moving an agent of another client in counts too.
      const M = await seedTenant(db);
      const moved = await failure(
        db.sql.query('UPDATE agents SET client_id = $1 WHERE id = $2', [L.client, M.agent]),
      );
      expect(moved.code).toBe('23514');
      expect(moved.message).toContain('sidekick limit reached');
    });

    it('an agent of a client that is not registered in the pool is refused', async () => {
      const ghost = randomUUID();
      for (const run of [
        () => s.one(SERVICE, `INSERT INTO agents (client_id, name, slug) VALUES ($1, 'g', 'g')`, [ghost]),
        () => db.sql.query(`INSERT INTO agents (client_id, name, slug) VALUES ($1, 'g', 'g')`, [ghost]),
        () =>
          s.one(tenant(ghost), `INSERT INTO agents (client_id, name, slug) VALUES ($1, 'g', 'g')`, [ghost]),
      ]) {
        const e = await failure(run());
        expect(e.message).toBe(`client ${ghost} is not registered in this pool`);
      }
    });

    for (const isolation of ['READ COMMITTED', 'REPEATABLE READ'] as const) {
      it.runIf(ON_REAL_SERVER)(
        `two concurrent inserts on two connections (${isolation}): the second waits for the first and is refused (real server)`,
        async () => {
          const L = await seedTenant(db, 2); // one agent already: room for one more
          const [c1, c2] = [
            new pg.Client({ connectionString: db.url }),
            new pg.Client({ connectionString: db.url }),
          ];
          await Promise.all([c1.connect(), c2.connect()]);
          try {
            const insert = `INSERT INTO agents (client_id, name, slug) VALUES ($1, 'r', $2)`;
            for (const c of [c1, c2]) {
              // Both transactions start (and take their snapshots) before either inserts.
              await c.query(`BEGIN ISOLATION LEVEL ${isolation};
                SELECT set_config('role', 'authenticated', true),
                       set_config('request.jwt.claims', '{"role":"authenticated","client_id":"${L.client}"}', true);
                SELECT count(*) FROM agents;`);
            }
            await c1.query(insert, [L.client, 'race-1']);
            const pid2 = (await c2.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
            const second = c2.query(insert, [L.client, 'race-2']).then(
              () => null,
              (e: PgErr) => e,
            );
            // c2 blocks on the lock c1 holds on the client's pool_clients row.
            let waited = false;
            for (let i = 0; i < 250 && !waited; i++) {
              const [w] = await db.sql.query<{ wait: string | null }>(
                'SELECT wait_event_type AS wait FROM pg_stat_activity WHERE pid = $1',
                [pid2],
              );
              waited = w?.wait === 'Lock';
              if (!waited) await new Promise((r) => setTimeout(r, 20));
            }
            expect(waited).toBe(true);
            await c1.query('COMMIT');
            const err = await second;
            if (isolation === 'READ COMMITTED') {
              expect(err?.message).toBe(
                `sidekick limit reached: client ${L.client} may have at most 2 sidekick(s)`,
              );
            } else {
              // Its snapshot cannot see c1's agent; the updated pool_clients row makes it retry instead.
              expect(err?.code).toBe('40001');
            }
            await c2.query('ROLLBACK');
            const [n] = await db.sql.query<{ n: number }>(
              'SELECT count(*)::int AS n FROM agents WHERE client_id = $1',
              [L.client],
            );
            expect(n!.n).toBe(2);
          } finally {
            await Promise.all([c1.end(), c2.end()]);
          }
        },
      );
    }

    it.runIf(ON_REAL_SERVER)(
      'eight concurrent inserts on eight connections: exactly the limit gets in (real server)',
      async () => {
        for (const isolation of ['READ COMMITTED', 'REPEATABLE READ']) {
          const L = await seedTenant(db, 3); // one agent already: two more may come
          const conns = Array.from({ length: 8 }, () => new pg.Client({ connectionString: db.url }));
          await Promise.all(conns.map((c) => c.connect()));
          try {
            const results = await Promise.allSettled(
              conns.map((c, i) =>
                c.query(
                  `BEGIN ISOLATION LEVEL ${isolation};
                   SELECT count(*) FROM agents;
                   SELECT pg_sleep(0.05);
                   INSERT INTO agents (client_id, name, slug) VALUES ('${L.client}', 'r', 'conc-${i}');
                   SELECT pg_sleep(0.05);
                   COMMIT;`,
                ),
              ),
            );
            const ok = results.filter((r) => r.status === 'fulfilled').length;
            const [n] = await db.sql.query<{ n: number }>(
              'SELECT count(*)::int AS n FROM agents WHERE client_id = $1',
              [L.client],
            );
            for (const r of results) {
              if (r.status === 'rejected') {
                expect((r.reason as Error).message, isolation).toMatch(
                  /sidekick limit reached|could not serialize access/,
                );
              }
            }
            expect(n!.n, isolation).toBe(1 + ok);
            if (isolation === 'READ COMMITTED') expect(ok).toBe(2);
            // Repeatable read: never more than the limit; the losers are told to retry.
            else expect(ok).toBeGreaterThanOrEqual(1);
            expect(n!.n).toBeLessThanOrEqual(3);
          } finally {
            await Promise.all(conns.map((c) => c.end()));
          }
        }
      },
    );
  });

  describe('the write fence of a tier move', () => {
    it('fenced: tenant writes are refused (55000) and reads go on; the service role still writes', async () => {
      const F = await seedTenant(db);
      await db.sql.query(
        `UPDATE pool_clients SET write_fence = 'fenced', fenced_at = now() WHERE client_id = $1`,
        [F.client],
      );
      const msg = `writes for client ${F.client} are fenced: tier move in progress, retry later`;
      const writes = [
        `INSERT INTO conversation_transcripts (client_id, conversation_id, role) VALUES ('${F.client}', '${F.conversation}', 'user')`,
        `UPDATE documents SET title = 'x' WHERE id = '${F.document}'`,
        `DELETE FROM user_overviews WHERE id = '${F.overview}'`,
        `DELETE FROM documents WHERE id = '${F.document}'`,
      ];
      for (const sql of writes) {
        const e = await failure(s.one(tenant(F.client), sql));
        expect(e.code, sql).toBe('55000');
        expect(e.message, sql).toBe(msg);
        // Any role but service_role is fenced, the table owner included.
        expect((await failure(db.sql.query(sql))).code, sql).toBe('55000');
      }
      expect(await s.one(tenant(F.client), 'SELECT id FROM documents')).toEqual([{ id: F.document }]);
      await s.one(SERVICE, writes[0]!);
      // Other clients are not affected.
      await s.one(tenant(A.client), `UPDATE documents SET title = 'still open' WHERE id = $1`, [A.document]);
    });

    it('moved: refused with its own message; the service role cleans up, cascades included', async () => {
      const F = await seedTenant(db);
      await db.sql.query(`UPDATE pool_clients SET write_fence = 'moved' WHERE client_id = $1`, [F.client]);
      const e = await failure(
        s.one(tenant(F.client), `INSERT INTO documents (client_id, title) VALUES ($1, 'late')`, [F.client]),
      );
      expect(e.code).toBe('55000');
      expect(e.message).toBe(`client ${F.client} has moved out of this pool`);
      // Parents only: the chunks, links, conversations, transcripts and overviews go by cascade
      // (run as the table owner, inside the service role's statement).
      await s.as(SERVICE, async (q) => {
        await q('DELETE FROM documents WHERE client_id = $1', [F.client]);
        await q('DELETE FROM agents WHERE client_id = $1', [F.client]);
      });
      for (const table of TENANT_TABLES) {
        const rows = await db.sql.query(`SELECT 1 FROM ${table} WHERE client_id = $1`, [F.client]);
        expect(rows, table).toEqual([]);
      }
    });

    it('open: a tenant deleting its own document cascades to its chunks and links', async () => {
      const O = await seedTenant(db);
      await s.one(tenant(O.client), 'DELETE FROM documents WHERE id = $1', [O.document]);
      const [n] = await db.sql.query<{ n: number }>(
        `SELECT (SELECT count(*) FROM document_chunks WHERE client_id = $1)
              + (SELECT count(*) FROM agent_documents WHERE client_id = $1) AS n`,
        [O.client],
      );
      expect(Number(n!.n)).toBe(0);
      // Deleting the agent: its conversations go by cascade, and their transcripts with them.
      await s.one(tenant(O.client), 'DELETE FROM agents WHERE id = $1', [O.agent]);
      const left = await db.sql.query('SELECT 1 FROM conversation_transcripts WHERE client_id = $1', [
        O.client,
      ]);
      expect(left).toEqual([]);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Exact retrieval in the pool

describe('shared pool retrieval is the exact top-k of the client, whatever indexes exist', () => {
  const CLIENTS = 200;
  const DOCS = 4;
  const CHUNKS = 5;
  const K = 5;
  let db: FreshDatabase;
  let s: Sessions;
  interface Client {
    id: string;
    query: number[];
    eligible: Array<{ id: string; v: number[] }>;
  }
  const clients: Client[] = [];

  beforeAll(async () => {
    db = await migratedDatabase('shared_pool');
    s = new Sessions(db);
    const rand = prng(7);
    const pcs: string[] = [];
    const agents: string[] = [];
    const docs: string[] = [];
    const links: string[] = [];
    const chunks: string[] = [];
    for (let c = 0; c < CLIENTS; c++) {
      const id = randomUUID();
      const main = randomUUID();
      const side = randomUUID();
      pcs.push(`('${id}', 2)`);
      agents.push(`('${main}', '${id}', 'Main', 'main')`, `('${side}', '${id}', 'Side', 'side')`);
      const client: Client = { id, query: randomVector(rand), eligible: [] };
      for (let d = 0; d < DOCS; d++) {
        const doc = randomUUID();
        docs.push(`('${doc}', '${id}', 'doc ${d}')`);
        // main: docs 0 and 1, doc 2 linked but disabled; side: doc 3.
        if (d < 3) links.push(`('${id}', '${main}', '${doc}', ${d < 2})`);
        else links.push(`('${id}', '${side}', '${doc}', true)`);
        for (let k = 0; k < CHUNKS; k++) {
          const chunk = randomUUID();
          if (k === CHUNKS - 1 && d === 0) {
            chunks.push(`('${chunk}', '${id}', '${doc}', ${k}, 'no embedding', NULL)`);
            continue;
          }
          const v = randomVector(rand);
          chunks.push(`('${chunk}', '${id}', '${doc}', ${k}, 'chunk', '${literal(v)}')`);
          if (d < 2) client.eligible.push({ id: chunk, v });
        }
      }
      clients.push(client);
    }
    await elapsed(`pool: loading ${CLIENTS} clients, ${chunks.length} chunks`, async () => {
      await insertRows(db, 'INSERT INTO pool_clients (client_id, max_sidekicks)', pcs, 1000);
      await insertRows(db, 'INSERT INTO agents (id, client_id, name, slug)', agents, 1000);
      await insertRows(db, 'INSERT INTO documents (id, client_id, title)', docs, 1000);
      await insertRows(
        db,
        'INSERT INTO agent_documents (client_id, agent_id, document_id, enabled)',
        links,
        1000,
      );
      await insertRows(
        db,
        'INSERT INTO document_chunks (id, client_id, document_id, chunk_index, content, embeddings)',
        chunks,
        250,
      );
    });
    // An approximate index over every client's chunks, the kind that (filtered by client_id)
    // returns fewer or other rows than the exact top-k. The RPC must not be fooled by it.
    await elapsed('pool: HNSW index on document_chunks (made by the test)', () =>
      db.sql.exec(
        `CREATE INDEX test_chunks_hnsw ON document_chunks USING hnsw (embeddings vector_cosine_ops); ANALYZE`,
      ),
    );
  }, 600_000);
  afterAll(async () => {
    await s?.close();
    await db?.drop();
  });

  /** Exact top-k in SQL with the index kept out ("+ 0" is not an indexable ORDER BY). */
  async function bruteForce(): Promise<Map<string, string[]>> {
    const rows = await db.sql.query<{ client_id: string; id: string }>(
      `WITH q AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS q (client_id uuid, v text))
       SELECT client_id, id FROM (
         SELECT dc.client_id, dc.id,
                row_number() OVER (PARTITION BY dc.client_id ORDER BY (dc.embeddings <=> q.v::vector) + 0, dc.id) AS rn
           FROM q
           JOIN agents a ON a.client_id = q.client_id AND a.slug = 'main'
           JOIN agent_documents ad ON ad.client_id = a.client_id AND ad.agent_id = a.id AND ad.enabled
           JOIN document_chunks dc ON dc.client_id = ad.client_id AND dc.document_id = ad.document_id
          WHERE dc.embeddings IS NOT NULL) ranked
        WHERE rn <= ${K}
        ORDER BY client_id, rn`,
      [JSON.stringify(clients.map((c) => ({ client_id: c.id, v: literal(c.query) })))],
    );
    const out = new Map<string, string[]>();
    for (const r of rows) out.set(r.client_id, [...(out.get(r.client_id) ?? []), r.id]);
    return out;
  }

  it('for every one of 200 clients, match_documents returns the brute-force ids in the same order', async () => {
    const expected = await elapsed('pool: brute force for 200 clients', bruteForce);
    const got = await elapsed('pool: match_documents for 200 clients (service role)', () =>
      s.one<{ client_id: string; id: string }>(
        SERVICE,
        `WITH q AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS q (client_id uuid, v text))
         SELECT q.client_id, m.id
           FROM q CROSS JOIN LATERAL match_documents(q.client_id, q.v::vector, 'main', -2, ${K}) WITH ORDINALITY m
          ORDER BY q.client_id, m.ordinality`,
        [JSON.stringify(clients.map((c) => ({ client_id: c.id, v: literal(c.query) })))],
      ),
    );
    const byClient = new Map<string, string[]>();
    for (const r of got) byClient.set(r.client_id, [...(byClient.get(r.client_id) ?? []), r.id]);
    let checked = 0;
    for (const c of clients) {
      const want = expected.get(c.id)!;
      expect(want).toHaveLength(K);
      expect(byClient.get(c.id), c.id).toEqual(want);
      // And an oracle outside the database: the true distances of what came back are the k smallest.
      const exact = c.eligible
        .map((e) => ({ id: e.id, d: 1 - cosine(c.query, e.v) }))
        .sort((x, y) => x.d - y.d)
        .slice(0, K);
      const dist = new Map(c.eligible.map((e) => [e.id, 1 - cosine(c.query, e.v)]));
      want.forEach((id, i) => {
        expect(dist.get(id)!).toBeCloseTo(exact[i]!.d, 6);
      });
      checked++;
    }
    expect(checked).toBe(CLIENTS);

    // What the plan's query shape would have done with that index: filter an approximate scan.
    const naive = await s.one<{ client_id: string; n: number }>(
      SERVICE,
      `WITH q AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS q (client_id uuid, v text))
       SELECT q.client_id, (SELECT count(*)::int FROM (
           SELECT dc.id FROM document_chunks dc
            WHERE dc.client_id = q.client_id AND dc.embeddings IS NOT NULL
            ORDER BY dc.embeddings <=> q.v::vector LIMIT ${K}) x) AS n
         FROM q`,
      [JSON.stringify(clients.slice(0, 50).map((c) => ({ client_id: c.id, v: literal(c.query) })))],
    );
    const short = naive.filter((r) => r.n < K).length;
    console.log(
      `pool: a plain "WHERE client_id = ... ORDER BY <=> LIMIT ${K}" came back short for ${short} of 50 clients`,
    );
  }, 120_000);

  it('as each tenant (RLS on), the same answer', async () => {
    const expected = await bruteForce();
    await elapsed('pool: match_documents as 40 tenants', async () => {
      for (const c of clients.slice(0, 40)) {
        const rows = await s.one<{ id: string; relevance: number }>(
          tenant(c.id),
          `SELECT id, relevance FROM match_documents($1, $2::vector, 'main', -2, ${K})`,
          [c.id, literal(c.query)],
        );
        expect(rows.map((r) => r.id)).toEqual(expected.get(c.id));
        // relevance is 1 - distance, best first
        for (let i = 1; i < rows.length; i++)
          expect(rows[i - 1]!.relevance).toBeGreaterThanOrEqual(rows[i]!.relevance);
      }
    });
  }, 120_000);

  it("the threshold and k are honoured, and only the sidekick's enabled documents count", async () => {
    const c = clients[0]!;
    const all = await s.one<{ id: string; relevance: number; chunk_index: number; title: string }>(
      tenant(c.id),
      `SELECT * FROM match_documents($1, $2::vector, 'main', -2, 100)`,
      [c.id, literal(c.query)],
    );
    expect(all.map((r) => r.id).sort()).toEqual(c.eligible.map((e) => e.id).sort());
    const cut = all[3]!.relevance;
    const above = await s.one<{ id: string }>(
      tenant(c.id),
      `SELECT id FROM match_documents($1, $2::vector, 'main', $3, 100)`,
      [c.id, literal(c.query), cut],
    );
    expect(above.map((r) => r.id)).toEqual(all.slice(0, 3).map((r) => r.id));
    const side = await s.one(
      tenant(c.id),
      `SELECT id FROM match_documents($1, $2::vector, 'side', -2, 100)`,
      [c.id, literal(c.query)],
    );
    expect(side).toHaveLength(CHUNKS);
  });
});

// ---------------------------------------------------------------------------------------------
// Dedicated projects

/** One client's data, written to the pool (with client_id) and to a dedicated project (without). */
async function loadClientData(
  pool: FreshDatabase,
  dedicated: FreshDatabase | null,
  clientId: string,
  rand: () => number,
): Promise<{ users: string[]; agents: string[]; conversations: string[] }> {
  const agents = [randomUUID(), randomUUID()];
  const users = [randomUUID(), randomUUID()];
  const rows: Record<string, Array<Record<string, string | number | boolean | null>>> = {
    agents: agents.map((id, i) => ({ id, name: `A${i}`, slug: i === 0 ? 'main' : 'side' })),
    documents: [],
    document_chunks: [],
    agent_documents: [],
    conversations: [],
    conversation_transcripts: [],
    user_overviews: [
      { id: randomUUID(), user_id: users[0]!, agent_id: agents[0]!, sections: '{"for": "main"}' },
      { id: randomUUID(), user_id: users[0]!, agent_id: null, sections: '{"for": "everyone"}' },
    ],
  };
  for (let d = 0; d < 5; d++) {
    const doc = randomUUID();
    rows.documents!.push({ id: doc, title: `doc ${d}`, source_url: `https://example.com/${d}` });
    rows.agent_documents!.push({
      id: randomUUID(),
      agent_id: agents[d % 2]!,
      document_id: doc,
      enabled: d !== 4,
    });
    for (let k = 0; k < 12; k++) {
      rows.document_chunks!.push({
        id: randomUUID(),
        document_id: doc,
        chunk_index: k,
        content: `d${d}c${k}`,
        embeddings: literal(randomVector(rand)),
      });
    }
  }
  const conversations: string[] = [];
  for (let i = 0; i < 4; i++) {
    const conv = randomUUID();
    conversations.push(conv);
    const agent = agents[i % 2]!;
    const user = users[i < 3 ? 0 : 1]!;
    rows.conversations!.push({ id: conv, agent_id: agent, user_id: user });
    for (let t = 0; t < 10; t++) {
      rows.conversation_transcripts!.push({
        id: randomUUID(),
        conversation_id: conv,
        agent_id: agent,
        user_id: user,
        role: t % 2 ? 'assistant' : 'user',
        content: `c${i}t${t}`,
        embeddings: literal(randomVector(rand)),
        created_at: new Date(Date.UTC(2026, 0, 1, 0, i, t)).toISOString(),
      });
    }
  }
  const sqlValue = (v: string | number | boolean | null) =>
    v === null ? 'NULL' : typeof v === 'string' ? `'${v.replaceAll("'", "''")}'` : String(v);
  await pool.sql.query('INSERT INTO pool_clients (client_id) VALUES ($1)', [clientId]);
  for (const [table, list] of Object.entries(rows)) {
    const cols = Object.keys(list[0]!);
    const values = list.map((r) => `(${cols.map((c) => sqlValue(r[c]!)).join(', ')})`);
    if (dedicated) await insertRows(dedicated, `INSERT INTO ${table} (${cols.join(', ')})`, values);
    await insertRows(
      pool,
      `INSERT INTO ${table} (client_id, ${cols.join(', ')})`,
      values.map((v) => `('${clientId}', ${v.slice(1)}`),
    );
  }
  return { users, agents, conversations };
}

describe('dedicated projects', () => {
  it('RLS on, nothing for anon or authenticated, RPCs for the service role only, tuned vector search', async () => {
    const db = await migratedDatabase('dedicated');
    const s = new Sessions(db);
    try {
      const noRls = await db.sql.query(
        `SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND NOT relrowsecurity`,
      );
      expect(noRls).toEqual([]);
      const cols = await db.sql.query(
        `SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'client_id'`,
      );
      expect(cols).toEqual([]);
      for (const actor of [ANON, tenant(randomUUID())]) {
        for (const table of TENANT_TABLES) {
          expect((await failure(s.one(actor, `SELECT 1 FROM ${table}`))).code, table).toBe('42501');
        }
        const e = await failure(
          s.one(actor, `SELECT * FROM match_documents($1::vector, 'x', 0.5, 5)`, [
            literal(new Array(DIM).fill(1)),
          ]),
        );
        expect(e.code).toBe('42501');
      }
      expect(
        await s.one(SERVICE, `SELECT * FROM match_documents($1::vector, 'x', 0.5, 5)`, [
          literal(new Array(DIM).fill(1)),
        ]),
      ).toEqual([]);
      const hnsw = await db.sql.query<{ index: string }>(
        `SELECT c.relname AS index FROM pg_class c JOIN pg_am am ON am.oid = c.relam WHERE am.amname = 'hnsw' ORDER BY 1`,
      );
      expect(hnsw.map((h) => h.index)).toEqual([
        'idx_chunks_embeddings_hnsw',
        'idx_transcripts_embeddings_hnsw',
      ]);
      const [v] = await db.sql.query<{ iterative: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM pg_settings WHERE name = 'hnsw.iterative_scan') AS iterative`,
      );
      const conf = await db.sql.query<{ proname: string; proconfig: string[] }>(
        `SELECT proname, proconfig FROM pg_proc WHERE proname IN ('match_documents', 'match_conversation_transcripts_secure') ORDER BY 1`,
      );
      for (const f of conf) {
        expect(f.proconfig).toContain('hnsw.ef_search=200');
        if (v!.iterative) expect(f.proconfig).toContain('hnsw.iterative_scan=relaxed_order');
      }
      // The SET clause is for the call only: the session's setting is untouched afterwards.
      const [after] = await s.as(SERVICE, async (q) => {
        await q(`SELECT * FROM match_documents($1::vector, 'x', 0.5, 5)`, [literal(new Array(DIM).fill(1))]);
        return q<{ ef: string }>(`SELECT current_setting('hnsw.ef_search') AS ef`);
      });
      expect(after!.ef).toBe('40');
    } finally {
      await s.close();
      await db.drop();
    }
  });

  it('the dedicated RPCs return the same rows as the pool RPCs for the same data', async () => {
    const pool = await migratedDatabase('shared_pool');
    const dedicated = await migratedDatabase('dedicated');
    const ps = new Sessions(pool);
    const ds = new Sessions(dedicated);
    try {
      const clientId = randomUUID();
      const rand = prng(11);
      // Another client in the pool with the same slugs, so "the same data" is not "the whole pool".
      await loadClientData(pool, null, randomUUID(), prng(99));
      const { users, agents, conversations } = await loadClientData(pool, dedicated, clientId, rand);
      const me = tenant(clientId);
      for (let i = 0; i < 5; i++) {
        const q = literal(randomVector(rand));
        for (const [slug, threshold, k] of [
          ['main', -2, 8],
          ['side', 0.0, 20],
          ['main', 0.02, 100],
          ['nobody', -2, 5],
        ] as const) {
          const fromPool = await ps.one(me, `SELECT * FROM match_documents($1, $2::vector, $3, $4, $5)`, [
            clientId,
            q,
            slug,
            threshold,
            k,
          ]);
          const fromDedicated = await ds.one(
            SERVICE,
            `SELECT * FROM match_documents($1::vector, $2, $3, $4)`,
            [q, slug, threshold, k],
          );
          expect(fromDedicated, `${slug} ${threshold} ${k}`).toEqual(fromPool);
          if (slug === 'main' && threshold === -2) expect(fromPool).toHaveLength(k);
        }
        for (const [slug, user, exclude, k] of [
          ['main', users[0]!, null, 6],
          ['main', users[0]!, conversations[0]!, 30],
          ['side', users[0]!, null, 30],
          ['side', users[1]!, null, 3],
          ['main', users[1]!, null, 3],
        ] as const) {
          const fromPool = await ps.one(
            me,
            `SELECT * FROM match_conversation_transcripts_secure($1, $2::vector, $3, $4, -2, $5, $6)`,
            [clientId, q, slug, user, k, exclude],
          );
          const fromDedicated = await ds.one(
            SERVICE,
            `SELECT * FROM match_conversation_transcripts_secure($1::vector, $2, $3, -2, $4, $5)`,
            [q, slug, user, k, exclude],
          );
          expect(fromDedicated, `${slug} ${user} ${exclude}`).toEqual(fromPool);
          expect(fromPool.every((r) => r.conversation_id !== exclude)).toBe(true);
        }
      }
      const some = await ps.one(
        me,
        `SELECT * FROM match_conversation_transcripts_secure($1, $2::vector, 'main', $3, -2, 100, NULL)`,
        [clientId, literal(randomVector(rand)), users[0]],
      );
      expect(some).toHaveLength(20); // conversations 0 and 2 of user 0 are main's
      for (const [user, agent, want] of [
        [users[0]!, agents[0]!, { for: 'main' }],
        [users[0]!, agents[1]!, { for: 'everyone' }],
        [users[1]!, agents[0]!, {}],
      ] as const) {
        const [p] = await ps.one<{ o: unknown }>(me, 'SELECT get_user_overview_for_agent($1, $2, $3) AS o', [
          clientId,
          user,
          agent,
        ]);
        const [d] = await ds.one<{ o: unknown }>(SERVICE, 'SELECT get_user_overview_for_agent($1, $2) AS o', [
          user,
          agent,
        ]);
        expect(p!.o).toEqual(want);
        expect(d!.o).toEqual(want);
      }
    } finally {
      await ps.close();
      await ds.close();
      await pool.drop();
      await dedicated.drop();
    }
  }, 120_000);
  // Recall of the HNSW search on 20,000 chunks: test/schema-recall.test.ts (real server).
});
