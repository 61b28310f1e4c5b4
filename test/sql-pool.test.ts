/**
 * The shared pool in SQL, behind PostgREST's back: migrations that re-apply without change, tenant
 * isolation enforced by the database (RLS, composite keys, the RPCs' caller check), the sidekick
 * limit (also under concurrency), the write fence of a tier move, and retrieval that is the exact
 * top-k of the client's own linked chunks whatever vector index exists (flaw 3), over 200 clients.
 *
 * Runs on PGlite, or on the real PostgreSQL server with STACK_POSTGRES_URL; the races run there
 * only (PGlite has one backend, so everything on it is serial).
 */

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TENANT_TABLES } from '../src/tenancy/tenant-query.js';
import {
  type Actor,
  ANON,
  expectReapplies,
  failure,
  migratedDatabase,
  ON_REAL_SERVER,
  type PgError,
  SERVICE,
  type TestDatabase,
  tenant,
} from './support/db.js';
import { cosine, DIMS, prng, randomVector, vectorLiteral } from './support/vectors.js';

let db: TestDatabase;
let A: TenantRows;
let B: TenantRows;
const ones = vectorLiteral(new Array<number>(DIMS).fill(1));

beforeAll(async () => {
  db = await migratedDatabase('shared_pool');
  A = await seedTenant();
  B = await seedTenant();
});
afterAll(async () => {
  await db?.drop();
});

interface TenantRows {
  client: string;
  agent: string;
  document: string;
  chunk: string;
  conversation: string;
  transcript: string;
  overview: string;
  user: string;
}

/** A registered pool client with one row in every tenant table (inserted as the superuser). */
async function seedTenant(maxSidekicks: number | null = null): Promise<TenantRows> {
  const r: TenantRows = {
    client: randomUUID(),
    agent: randomUUID(),
    document: randomUUID(),
    chunk: randomUUID(),
    conversation: randomUUID(),
    transcript: randomUUID(),
    overview: randomUUID(),
    user: randomUUID(),
  };
  const v = vectorLiteral(randomVector(prng(r.client.charCodeAt(0))));
  await db.sql.exec(`
    INSERT INTO pool_clients (client_id, max_sidekicks) VALUES ('${r.client}', ${maxSidekicks ?? 'NULL'});
    INSERT INTO agents (id, client_id, name, slug) VALUES ('${r.agent}', '${r.client}', 'Guide', 'guide');
    INSERT INTO documents (id, client_id, title) VALUES ('${r.document}', '${r.client}', 'Doc');
    INSERT INTO document_chunks (id, client_id, document_id, chunk_index, content, embeddings)
      VALUES ('${r.chunk}', '${r.client}', '${r.document}', 0, 'chunk', '${v}');
    INSERT INTO agent_documents (client_id, agent_id, document_id) VALUES ('${r.client}', '${r.agent}', '${r.document}');
    INSERT INTO conversations (id, client_id, agent_id, user_id) VALUES ('${r.conversation}', '${r.client}', '${r.agent}', '${r.user}');
    INSERT INTO conversation_transcripts (id, client_id, conversation_id, agent_id, user_id, role, content, embeddings)
      VALUES ('${r.transcript}', '${r.client}', '${r.conversation}', '${r.agent}', '${r.user}', 'user', 'hi', '${v}');
    INSERT INTO user_overviews (id, client_id, user_id, agent_id, sections)
      VALUES ('${r.overview}', '${r.client}', '${r.user}', '${r.agent}', '{"name": "${r.client}"}');
  `);
  return r;
}

const countAgents = async (client: string) =>
  (
    await db.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM agents WHERE client_id = $1', [client])
  )[0]!.n;

describe('shared pool: schema', () => {
  it('migrations apply again on a migrated database and change nothing; rows survive', async () => {
    await expectReapplies(db, 'shared_pool');
    for (const table of TENANT_TABLES) {
      const rows = await db.sql.query(`SELECT 1 FROM ${table} WHERE client_id = $1`, [A.client]);
      expect(rows, table).toHaveLength(1);
    }
  });

  it('policies evaluate the claim once per statement (an InitPlan), not per row', async () => {
    const plan = await db.one<{ 'QUERY PLAN': string }>(
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
    // Only the sidekick limit, which must count rows a tenant cannot see.
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
});

describe('shared pool: isolation enforced by the database (tenant A against client B)', () => {
  it("as A, every table shows A its own rows and none of B's; no claim, nothing; anon, permission denied", async () => {
    for (const table of TENANT_TABLES) {
      // Control: B has a row there.
      expect(
        (await db.sql.query(`SELECT 1 FROM ${table} WHERE client_id = $1`, [B.client])).length,
        table,
      ).toBeGreaterThan(0);
      const rows = await db.one<{ client_id: string }>(tenant(A.client), `SELECT client_id FROM ${table}`);
      expect(rows, table).toEqual([{ client_id: A.client }]);
      const theirs = await db.one(tenant(A.client), `SELECT * FROM ${table} WHERE client_id = $1`, [
        B.client,
      ]);
      expect(theirs, table).toEqual([]);
    }
    const own = await db.one(tenant(A.client), 'SELECT client_id FROM pool_clients');
    expect(own).toEqual([{ client_id: A.client }]);
    // A token without a client_id claim, or no claims at all: nothing.
    for (const claims of ['{"role":"authenticated"}', '']) {
      for (const table of [...TENANT_TABLES, 'pool_clients']) {
        expect(await db.one({ role: 'authenticated', claims }, `SELECT * FROM ${table}`), table).toEqual([]);
      }
    }
    for (const table of [...TENANT_TABLES, 'pool_clients']) {
      const e = await failure(db.one(ANON, `SELECT 1 FROM ${table} LIMIT 1`));
      expect([e.code, e.message], table).toEqual(['42501', `permission denied for table ${table}`]);
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
      // RLS's own refusal, not a trigger's answer about B (registered? its sidekick limit?).
      const e = await failure(db.one(tenant(A.client), sql));
      expect(e.code, table).toBe('42501');
      expect(e.message, table).toContain('row-level security');
    }
    // Control: B itself may insert such a row.
    await db.one(tenant(B.client), inserts.documents!);
    const retag = await failure(
      db.one(tenant(A.client), 'UPDATE documents SET client_id = $1 WHERE id = $2', [B.client, A.document]),
    );
    expect(retag.code).toBe('42501');
    for (const table of TENANT_TABLES) {
      const upd = await db.one(
        tenant(A.client),
        `UPDATE ${table} SET created_at = now() WHERE client_id = $1 RETURNING id`,
        [B.client],
      );
      expect(upd, table).toEqual([]);
      const del = await db.one(tenant(A.client), `DELETE FROM ${table} WHERE client_id = $1 RETURNING id`, [
        B.client,
      ]);
      expect(del, table).toEqual([]);
    }
    for (const sql of [
      'UPDATE pool_clients SET max_sidekicks = NULL',
      `INSERT INTO pool_clients (client_id) VALUES ('${randomUUID()}')`,
      'TRUNCATE agents CASCADE',
    ]) {
      expect((await failure(db.one(tenant(A.client), sql))).code, sql).toBe('42501');
    }
  });

  it("A's own rows cannot reference B's rows (composite keys), and the refusal does not tell B's row exists", async () => {
    const ghost = randomUUID();
    const probes: Array<[constraint: string, target: () => string, sql: (t: string) => string]> = [
      [
        'agent_documents_document',
        () => B.document,
        (t) =>
          `INSERT INTO agent_documents (client_id, agent_id, document_id) VALUES ('${A.client}', '${A.agent}', '${t}')`,
      ],
      [
        'agent_documents_agent',
        () => B.agent,
        (t) =>
          `INSERT INTO agent_documents (client_id, agent_id, document_id) VALUES ('${A.client}', '${t}', '${A.document}')`,
      ],
      [
        'chunks_document',
        () => B.document,
        (t) =>
          `INSERT INTO document_chunks (client_id, document_id, chunk_index, content) VALUES ('${A.client}', '${t}', 1, 'x')`,
      ],
      [
        'conversations_agent',
        () => B.agent,
        (t) => `INSERT INTO conversations (client_id, agent_id) VALUES ('${A.client}', '${t}')`,
      ],
      [
        'transcripts_conversation',
        () => B.conversation,
        (t) =>
          `INSERT INTO conversation_transcripts (client_id, conversation_id, role) VALUES ('${A.client}', '${t}', 'user')`,
      ],
      [
        'transcripts_agent',
        () => B.agent,
        (t) =>
          `INSERT INTO conversation_transcripts (client_id, conversation_id, agent_id, role) VALUES ('${A.client}', '${A.conversation}', '${t}', 'user')`,
      ],
      [
        'overviews_agent',
        () => B.agent,
        (t) =>
          `INSERT INTO user_overviews (client_id, user_id, agent_id) VALUES ('${A.client}', '${randomUUID()}', '${t}')`,
      ],
    ];
    for (const [constraint, target, sql] of probes) {
      const real = await failure(db.one(tenant(A.client), sql(target())));
      expect([real.code, real.constraint], constraint).toEqual(['23503', constraint]);
      const fake = await failure(db.one(tenant(A.client), sql(ghost)));
      expect(real.message.replaceAll(target(), '<id>'), constraint).toBe(
        fake.message.replaceAll(ghost, '<id>'),
      );
    }
    // The same holds for the service role: the keys, not RLS, keep references inside one client.
    const e = await failure(db.one(SERVICE, probes[0]![2](B.document)));
    expect(e.code).toBe('23503');
  });

  it("the RPCs refuse a p_client_id that is not the caller's claim; only the service role names any client", async () => {
    const calls: Array<[string, unknown[]]> = [
      ['SELECT * FROM match_documents($1, $2::vector, $3, -2, 10)', [B.client, ones, 'guide']],
      [
        'SELECT * FROM match_conversation_transcripts_secure($1, $2::vector, $3, $4, -2, 10, NULL)',
        [B.client, ones, 'guide', B.user],
      ],
      ['SELECT get_user_overview_for_agent($1, $2, $3) AS o', [B.client, B.user, B.agent]],
      [
        'SELECT turn_context($1, $2::vector, $3, $4, -2, 10, 10, NULL) AS c',
        [B.client, ones, 'guide', B.user],
      ],
    ];
    for (const [sql, params] of calls) {
      const e = await failure(db.one(tenant(A.client), sql, params));
      expect([e.code, e.message]).toEqual([
        '42501',
        "p_client_id does not match the caller's client_id claim",
      ]);
      // A superuser session without a claim is refused too; the service role is not.
      expect((await failure(db.sql.query(sql, params))).code).toBe('42501');
      expect(await db.one(SERVICE, sql, params)).toHaveLength(1);
      const anon = await failure(db.one(ANON, sql, params)); // no EXECUTE for anon
      expect([anon.code, anon.message]).toEqual([
        '42501',
        `permission denied for function ${sql.match(/(\w+)\(/)![1]}`,
      ]);
    }
    const docs = await db.one<{ id: string }>(
      tenant(A.client),
      'SELECT id FROM match_documents($1, $2::vector, $3, -2, 10)',
      [A.client, ones, 'guide'],
    );
    expect(docs.map((d) => d.id)).toEqual([A.chunk]);
    const recall = await db.one<{ id: string }>(
      tenant(A.client),
      'SELECT id FROM match_conversation_transcripts_secure($1, $2::vector, $3, $4, -2, 10, NULL)',
      [A.client, ones, 'guide', A.user],
    );
    expect(recall.map((d) => d.id)).toEqual([A.transcript]);
    const [ov] = await db.one<{ o: unknown }>(
      tenant(A.client),
      'SELECT get_user_overview_for_agent($1, $2, $3) AS o',
      [A.client, A.user, A.agent],
    );
    expect(ov!.o).toEqual({ name: A.client });
    const [both] = await db.one<{ c: { documents: Array<{ id: string }>; recall: Array<{ id: string }> } }>(
      tenant(A.client),
      'SELECT turn_context($1, $2::vector, $3, $4, -2, 10, 10, NULL) AS c',
      [A.client, ones, 'guide', A.user],
    );
    expect([both!.c.documents.map((d) => d.id), both!.c.recall.map((r) => r.id)]).toEqual([
      [A.chunk],
      [A.transcript],
    ]);
  });

  it("an agent tagged B is refused exactly like one tagged a client that does not exist (no oracle on B's limit)", async () => {
    await db.sql.query('UPDATE pool_clients SET max_sidekicks = 1 WHERE client_id = $1', [B.client]);
    try {
      const ghost = randomUUID();
      const tagged = (c: string) =>
        failure(
          db.one(tenant(A.client), 'INSERT INTO agents (client_id, name, slug) VALUES ($1, $2, $3)', [
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
});

describe('shared pool: the sidekick limit', () => {
  const addAgent = (actor: Actor | null, client: string, slug: string) => {
    const sql = 'INSERT INTO agents (client_id, name, slug) VALUES ($1, $2, $3) RETURNING id';
    return actor ? db.one(actor, sql, [client, slug, slug]) : db.sql.query(sql, [client, slug, slug]);
  };

  it('max_sidekicks holds for the tenant, the service role and the owner; renaming is not a second agent, deleting frees the slot', async () => {
    const L = await seedTenant(1); // one agent already
    for (const actor of [tenant(L.client), SERVICE, null]) {
      const e = await failure(addAgent(actor, L.client, `second-${randomUUID()}`));
      expect([e.code, e.message]).toEqual([
        '23514',
        `sidekick limit reached: client ${L.client} may have at most 1 sidekick(s)`,
      ]);
    }
    await db.one(tenant(L.client), `UPDATE agents SET name = 'renamed' WHERE id = $1`, [L.agent]);
    await db.one(tenant(L.client), 'DELETE FROM agents WHERE id = $1', [L.agent]);
    await addAgent(tenant(L.client), L.client, 'second');
    await db.sql.query('UPDATE pool_clients SET max_sidekicks = 2 WHERE client_id = $1', [L.client]);
    await addAgent(tenant(L.client), L.client, 'third');
    expect((await failure(addAgent(tenant(L.client), L.client, 'fourth'))).message).toContain(
      'at most 2 sidekick',
    );
    // Moving an agent of another client in counts too.
    const M = await seedTenant();
    const moved = await failure(
      db.sql.query('UPDATE agents SET client_id = $1 WHERE id = $2', [L.client, M.agent]),
    );
    expect([moved.code, moved.message]).toEqual([
      '23514',
      `sidekick limit reached: client ${L.client} may have at most 2 sidekick(s)`,
    ]);
    expect(await countAgents(L.client)).toBe(2);
  });

  it('a client without a limit (NULL) gets several sidekicks', async () => {
    const U = await seedTenant(null);
    for (const slug of ['two', 'three']) await addAgent(tenant(U.client), U.client, slug);
    expect(await countAgents(U.client)).toBe(3);
  });

  it('an agent of a client that is not registered in the pool is refused, whoever inserts it', async () => {
    const ghost = randomUUID();
    for (const actor of [SERVICE, null, tenant(ghost)]) {
      const e = await failure(addAgent(actor, ghost, 'g'));
      expect(e.message).toBe(`client ${ghost} is not registered in this pool`);
    }
  });

  for (const isolation of ['READ COMMITTED', 'REPEATABLE READ'] as const) {
    it.runIf(ON_REAL_SERVER)(
      `two concurrent inserts on two connections (${isolation}): the second waits for the first and is refused (real server)`,
      async () => {
        const L = await seedTenant(2); // one agent already: room for one more
        const [c1, c2] = [await db.connect(), await db.connect()];
        try {
          const insert = `INSERT INTO agents (client_id, name, slug) VALUES ($1, 'r', $2)`;
          for (const c of [c1, c2]) {
            // Both transactions start (and take their snapshots) before either inserts.
            await c.query(`BEGIN ISOLATION LEVEL ${isolation};
              SELECT set_config('role', 'authenticated', true),
                     set_config('request.jwt.claims', '${tenant(L.client).claims}', true);
              SELECT count(*) FROM agents;`);
          }
          await c1.query(insert, [L.client, 'race-1']);
          const pid2 = (await c2.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
          const second = c2.query(insert, [L.client, 'race-2']).then(
            () => null,
            (e: PgError) => e,
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
          expect(await countAgents(L.client)).toBe(2);
        } finally {
          await Promise.all([c1.end(), c2.end()]);
        }
      },
    );
  }

  it.runIf(ON_REAL_SERVER)(
    'ten concurrent inserts of one tenant on ten connections, all sent before any commits: exactly the limit gets in (real server)',
    async () => {
      for (const isolation of ['READ COMMITTED', 'REPEATABLE READ']) {
        const L = await seedTenant(3); // one agent already: two more may come
        const conns = await Promise.all(Array.from({ length: 10 }, () => db.connect()));
        try {
          const results = await Promise.allSettled(
            conns.map((c, i) =>
              c.query(
                `BEGIN ISOLATION LEVEL ${isolation};
                 SELECT set_config('role', 'authenticated', true),
                        set_config('request.jwt.claims', '${tenant(L.client).claims}', true);
                 SELECT count(*) FROM agents;
                 SELECT pg_sleep(0.05);
                 INSERT INTO agents (client_id, name, slug) VALUES ('${L.client}', 'r', 'conc-${i}');
                 SELECT pg_sleep(0.05);
                 COMMIT;`,
              ),
            ),
          );
          const ok = results.filter((r) => r.status === 'fulfilled').length;
          for (const r of results) {
            if (r.status === 'rejected') {
              // Read committed: every loser is told the limit; repeatable read: the limit, or retry.
              expect((r.reason as Error).message, isolation).toMatch(
                isolation === 'READ COMMITTED'
                  ? /^sidekick limit reached/
                  : /^sidekick limit reached|could not serialize access/,
              );
            }
          }
          expect(await countAgents(L.client), isolation).toBe(1 + ok);
          if (isolation === 'READ COMMITTED') expect(ok).toBe(2);
          else expect(ok).toBeGreaterThanOrEqual(1);
          expect(ok).toBeLessThanOrEqual(2);
        } finally {
          await Promise.all(conns.map((c) => c.end()));
        }
      }
    },
  );
});

describe('shared pool: begin_session, the session start in one round trip', () => {
  interface Begun {
    sidekick: { id: string } | null;
    beyond_limit: boolean;
    overview?: unknown;
    conversation?: { status: string; claimed: boolean };
    embedding_models?: unknown;
  }
  const begin = async (
    actor: Actor,
    clientId: string,
    args: Record<string, unknown> = {},
  ): Promise<Begun> => {
    const [row] = await db.one<{ r: Begun }>(
      actor,
      `SELECT begin_session(p_client_id => $1, p_agent_slug => $2, p_max_sidekicks => $3, p_user_id => $4,
                            p_conversation_id => $5, p_claim_conversation => $6) AS r`,
      [
        clientId,
        args.slug ?? 'guide',
        args.max ?? null,
        args.user ?? null,
        args.conversation ?? null,
        args.claim ?? false,
      ],
    );
    return row!.r;
  };

  it("gives a tenant its own sidekick, overview and conversation, and refuses another client's id", async () => {
    const r = await begin(tenant(A.client), A.client, {
      user: A.user,
      conversation: A.conversation,
    });
    expect(r.sidekick?.id).toBe(A.agent);
    expect(r.overview).toEqual({ name: A.client });
    expect(r.conversation).toEqual({ status: 'continued', claimed: true });
    expect((await failure(begin(tenant(A.client), B.client))).code).toBe('42501');
    expect((await failure(begin(ANON, A.client))).code).toBe('42501');
  });

  it("answers another client's conversation id exactly as an unknown one, writing nothing either way", async () => {
    const unknown = randomUUID();
    for (const args of [
      { user: B.user, conversation: B.conversation },
      { user: A.user, conversation: unknown },
      // Claiming (a new id) one that is another client's is refused the same way.
      { user: B.user, conversation: B.conversation, claim: true },
    ]) {
      const r = await begin(tenant(A.client), A.client, args);
      expect(r.conversation, JSON.stringify(args)).toEqual({ status: 'unknown', claimed: false });
    }
    expect(
      await db.sql.query<{ client_id: string }>('SELECT client_id FROM conversations WHERE id = ANY($1)', [
        [B.conversation, unknown],
      ]),
    ).toEqual([{ client_id: B.client }]);
  });

  it("creates the worker's new conversation (and continues it after), but not while the client is fenced", async () => {
    const fresh = randomUUID();
    const claimed = await begin(tenant(A.client), A.client, {
      user: A.user,
      conversation: fresh,
      claim: true,
    });
    expect(claimed.conversation).toEqual({ status: 'new', claimed: true });
    expect(
      await db.sql.query('SELECT client_id, agent_id, user_id FROM conversations WHERE id = $1', [fresh]),
    ).toEqual([{ client_id: A.client, agent_id: A.agent, user_id: A.user }]);
    // The same id again as a new one is refused (it is taken now); as one to continue, it is there.
    expect(
      (await begin(tenant(A.client), A.client, { user: A.user, conversation: fresh, claim: true }))
        .conversation,
    ).toEqual({
      status: 'unknown',
      claimed: false,
    });
    expect(
      (await begin(tenant(A.client), A.client, { user: A.user, conversation: fresh })).conversation,
    ).toEqual({
      status: 'continued',
      claimed: true,
    });

    const fenced = randomUUID();
    await db.sql.query(`UPDATE pool_clients SET write_fence = 'fenced' WHERE client_id = $1`, [A.client]);
    try {
      const r = await begin(tenant(A.client), A.client, {
        user: A.user,
        conversation: fenced,
        claim: true,
      });
      // The session still starts (its sidekick is there); the transcript store creates it later.
      expect(r.sidekick?.id).toBe(A.agent);
      expect(r.conversation).toEqual({ status: 'new', claimed: false });
      expect(await db.sql.query('SELECT 1 FROM conversations WHERE id = $1', [fenced])).toEqual([]);
    } finally {
      await db.sql.query(`UPDATE pool_clients SET write_fence = 'open' WHERE client_id = $1`, [A.client]);
    }
  });

  it('refuses a sidekick beyond the limit by age (the oldest stay usable), and reports the embedding models', async () => {
    const later = randomUUID();
    await db.sql.query(
      `INSERT INTO agents (id, client_id, name, slug, created_at) VALUES ($1, $2, 'Later', 'later', now() + interval '1 day')`,
      [later, A.client],
    );
    await db.sql.query(
      `UPDATE documents SET status = 'ready', metadata = '{"embedding_model": "m-1", "embedding_dimensions": "1024"}' WHERE id = $1`,
      [A.document],
    );
    try {
      const over = await begin(tenant(A.client), A.client, { slug: 'later', max: 1 });
      expect(over).toEqual({ sidekick: null, beyond_limit: true });
      const ok = await begin(tenant(A.client), A.client, { slug: 'guide', max: 1 });
      expect(ok.sidekick?.id).toBe(A.agent);
      expect(ok.embedding_models).toEqual([{ model: 'm-1', dimensions: 1024, documents: 1 }]);
      const none = await begin(tenant(A.client), A.client, { slug: 'nobody' });
      expect(none).toEqual({ sidekick: null, beyond_limit: false });
    } finally {
      await db.sql.query('DELETE FROM agents WHERE id = $1', [later]);
    }
  });
});

describe('shared pool: the write fence of a tier move', () => {
  it('fenced, then moved: every tenant write is refused (55000) with its reason, reads go on, the service role writes; reopened, the tenant writes again', async () => {
    const F = await seedTenant();
    const writes = [
      `INSERT INTO conversation_transcripts (client_id, conversation_id, role) VALUES ('${F.client}', '${F.conversation}', 'user')`,
      `UPDATE documents SET title = 'x' WHERE id = '${F.document}'`,
      `DELETE FROM user_overviews WHERE id = '${F.overview}'`,
      `DELETE FROM documents WHERE id = '${F.document}'`,
    ];
    for (const [fence, msg] of [
      ['fenced', `writes for client ${F.client} are fenced: tier move in progress, retry later`],
      ['moved', `client ${F.client} has moved out of this pool`],
    ] as const) {
      await db.sql.query(`UPDATE pool_clients SET write_fence = $2, fenced_at = now() WHERE client_id = $1`, [
        F.client,
        fence,
      ]);
      for (const sql of writes) {
        const e = await failure(db.one(tenant(F.client), sql));
        expect([e.code, e.message], sql).toEqual(['55000', msg]);
        // Any role but service_role is fenced, the table owner included.
        expect((await failure(db.sql.query(sql))).code, sql).toBe('55000');
      }
      expect(await db.one(tenant(F.client), 'SELECT id FROM documents')).toEqual([{ id: F.document }]);
      await db.one(SERVICE, writes[0]!);
      // Other clients are not affected.
      await db.one(tenant(A.client), `UPDATE documents SET title = 'still open' WHERE id = $1`, [A.document]);
    }
    await db.sql.query(`UPDATE pool_clients SET write_fence = 'open' WHERE client_id = $1`, [F.client]);
    for (const sql of writes) await db.one(tenant(F.client), sql);
  });

  it('moved: the service role cleans up by deleting parents; everything else goes by cascade', async () => {
    const F = await seedTenant();
    await db.sql.query(`UPDATE pool_clients SET write_fence = 'moved' WHERE client_id = $1`, [F.client]);
    // The cascades run as the table owner, inside the service role's statement.
    await db.as(SERVICE, async (q) => {
      await q('DELETE FROM documents WHERE client_id = $1', [F.client]);
      await q('DELETE FROM agents WHERE client_id = $1', [F.client]);
    });
    for (const table of TENANT_TABLES) {
      expect(await db.sql.query(`SELECT 1 FROM ${table} WHERE client_id = $1`, [F.client]), table).toEqual(
        [],
      );
    }
  });

  it('open: a tenant deleting its own document cascades to its chunks and links, its agent to conversations and transcripts', async () => {
    const O = await seedTenant();
    await db.one(tenant(O.client), 'DELETE FROM documents WHERE id = $1', [O.document]);
    const [n] = await db.sql.query<{ n: number }>(
      `SELECT (SELECT count(*) FROM document_chunks WHERE client_id = $1)
            + (SELECT count(*) FROM agent_documents WHERE client_id = $1) AS n`,
      [O.client],
    );
    expect(Number(n!.n)).toBe(0);
    await db.one(tenant(O.client), 'DELETE FROM agents WHERE id = $1', [O.agent]);
    expect(
      await db.sql.query('SELECT 1 FROM conversation_transcripts WHERE client_id = $1', [O.client]),
    ).toEqual([]);
  });
});

describe('shared pool: retrieval is the exact top-k of the client, whatever vector index exists (200 clients)', () => {
  const CLIENTS = 200;
  const K = 5;
  interface Query {
    client_id: string;
    agent_id: string;
    embedding: string;
  }
  let queries: Query[];
  /** The reference: per client, brute force over its sidekick's enabled linked chunks, no index allowed. */
  let exact: Map<string, string[]>;
  /** Every chunk of the fixture: its client and its kind of document. */
  let owners: Map<string, { client_id: string; kind: string }>;
  let loadSeconds = 0;

  // Everything is generated inside the database: parsing 1024-float text literals costs PGlite
  // ~4 ms a vector, random() there costs a fraction of that.
  beforeAll(async () => {
    const started = performance.now();
    await db.sql.exec(`
      SELECT setseed(0.31);
      CREATE FUNCTION zz_random_vector() RETURNS vector LANGUAGE sql VOLATILE AS
        $$ SELECT array_agg(random() - 0.5)::vector(${DIMS}) FROM generate_series(1, ${DIMS}) $$;
      CREATE TABLE zz_clients AS
        SELECT g AS n, gen_random_uuid() AS client_id, gen_random_uuid() AS agent_id, gen_random_uuid() AS side_id
          FROM generate_series(0, ${CLIENTS - 1}) g;
      INSERT INTO pool_clients (client_id, max_sidekicks) SELECT client_id, 2 FROM zz_clients;
      INSERT INTO agents (id, client_id, name, slug)
        SELECT agent_id, client_id, 'Sidekick', 'sidekick' FROM zz_clients
        UNION ALL SELECT side_id, client_id, 'Side', 'side' FROM zz_clients;
      -- Per client: 2 or 3 documents linked to the sidekick, one linked to it but disabled, one
      -- linked to the other sidekick only, one linked to none.
      CREATE TABLE zz_docs AS
        SELECT c.client_id, gen_random_uuid() AS id, k.kind
          FROM zz_clients c CROSS JOIN LATERAL (
            SELECT 'linked'::text AS kind FROM generate_series(1, 2 + c.n % 2)
            UNION ALL SELECT unnest(ARRAY['disabled', 'side', 'unlinked'])) k;
      INSERT INTO documents (id, client_id, title) SELECT id, client_id, kind FROM zz_docs;
      INSERT INTO agent_documents (client_id, agent_id, document_id, enabled)
        SELECT d.client_id, CASE d.kind WHEN 'side' THEN c.side_id ELSE c.agent_id END, d.id, d.kind <> 'disabled'
          FROM zz_docs d JOIN zz_clients c USING (client_id) WHERE d.kind <> 'unlinked';
      -- 5 to 8 chunks per linked document (10 to 24 per client), 2 per other document, and one
      -- chunk of a linked document not embedded yet.
      INSERT INTO document_chunks (client_id, document_id, chunk_index, content, embeddings)
        SELECT d.client_id, d.id, i, 'chunk ' || i, zz_random_vector()
          FROM zz_docs d, generate_series(0, 7) i
         WHERE i < CASE WHEN d.kind = 'linked' THEN 5 + (hashtext(d.id::text) & 3) ELSE 2 END;
      INSERT INTO document_chunks (client_id, document_id, chunk_index, content)
        SELECT DISTINCT ON (client_id) client_id, id, 99, 'not embedded yet' FROM zz_docs WHERE kind = 'linked';
      -- The HNSW index an operator might add (small m/ef_construction: PGlite builds it in seconds).
      CREATE INDEX zz_hnsw ON document_chunks USING hnsw (embeddings vector_cosine_ops) WITH (m = 4, ef_construction = 10);
      ANALYZE;
      -- Each client's query is close to the chunks it must never get: one of each of its own
      -- disabled, other-sidekick and unlinked documents, and one of the next client's linked ones.
      CREATE TABLE zz_queries AS
        SELECT c.client_id, c.agent_id,
               (SELECT sum(t.embeddings) FROM (
                  SELECT DISTINCT ON (d.kind) dc.embeddings FROM document_chunks dc JOIN zz_docs d ON d.id = dc.document_id
                   WHERE d.client_id = c.client_id AND d.kind <> 'linked' ORDER BY d.kind) t)
             + (SELECT dc.embeddings FROM document_chunks dc JOIN zz_docs d ON d.id = dc.document_id
                  JOIN zz_clients nx ON nx.client_id = d.client_id
                 WHERE nx.n = (c.n + 1) % ${CLIENTS} AND d.kind = 'linked' AND dc.embeddings IS NOT NULL LIMIT 1) AS embedding
          FROM zz_clients c;
    `);
    loadSeconds = (performance.now() - started) / 1000;
    owners = new Map(
      (
        await db.sql.query<{ id: string; client_id: string; kind: string }>(
          'SELECT dc.id, dc.client_id, d.kind FROM document_chunks dc JOIN zz_docs d ON d.id = dc.document_id',
        )
      ).map((r) => [r.id, r]),
    );
    queries = await db.sql.query<Query>(
      'SELECT client_id, agent_id, embedding::text AS embedding FROM zz_queries',
    );
    expect(queries).toHaveLength(CLIENTS);
    expect(queries.every((x) => x.embedding !== null)).toBe(true);
    const rows = await db.as(
      SERVICE,
      (q) =>
        q<{ client_id: string; ids: string[] }>(`
          SELECT q.client_id, array(
            SELECT dc.id FROM document_chunks dc
             WHERE dc.client_id = q.client_id AND dc.embeddings IS NOT NULL
               AND dc.document_id IN (SELECT ad.document_id FROM agent_documents ad
                                       WHERE ad.client_id = q.client_id AND ad.agent_id = q.agent_id AND ad.enabled)
             ORDER BY dc.embeddings <=> q.embedding, dc.id) AS ids
            FROM zz_queries q`),
      ['SET LOCAL enable_indexscan = off'],
    );
    exact = new Map(rows.map((r) => [r.client_id, r.ids]));
  }, 180_000);
  afterAll(async () => {
    await db?.sql.exec('DROP INDEX IF EXISTS zz_hnsw');
  });

  /**
   * The planner pushed towards approximate plans: ef_search 10, no sequential scans, no sorts where
   * an index can order. (The disabled sort adds 1e10 to the plan's cost, which would make the real
   * server JIT-compile every call, ~1 s each; the plan is the same without JIT.)
   */
  const approxSetup = [
    'SET LOCAL hnsw.ef_search = 10',
    'SET LOCAL enable_seqscan = off',
    'SET LOCAL enable_bitmapscan = off',
    'SET LOCAL enable_sort = off',
    'SET LOCAL jit = off',
  ];

  it('for every client, as that tenant, match_documents is the brute-force top-k; a filtered HNSW scan is not', async () => {
    const started = performance.now();
    // The seed's kind of query (ORDER BY distance LIMIT k over the client's linked chunks), as a
    // control: it must go through the HNSW index and miss rows, which proves the index is usable
    // and that this comparison can fail.
    const naive = `SELECT dc.id FROM document_chunks dc
       WHERE dc.client_id = $1
         AND dc.document_id IN (SELECT ad.document_id FROM agent_documents ad
                                 JOIN agents a ON a.client_id = ad.client_id AND a.id = ad.agent_id
                                WHERE a.client_id = $1 AND a.slug = 'sidekick' AND ad.enabled)
       ORDER BY dc.embeddings <=> $2 LIMIT ${K}`;
    const wrong = (client: string, got: string[]) =>
      got.length !== K ||
      got.some((id) => owners.get(id)?.client_id !== client || owners.get(id)?.kind !== 'linked') ||
      got.join() !== exact.get(client)!.slice(0, K).join();
    const mismatches: string[] = [];
    let approxMismatches = 0;
    for (const [i, x] of queries.entries()) {
      const [got, control] = await db.as(
        tenant(x.client_id),
        async (q) => {
          if (i === 0) {
            const plan = await q<{ 'QUERY PLAN': string }>(`EXPLAIN ${naive}`, [x.client_id, x.embedding]);
            expect(plan.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/zz_hnsw/);
          }
          const rpc = await q<{ id: string }>(
            `SELECT id FROM match_documents($1, $2, 'sidekick', -1, ${K})`,
            [x.client_id, x.embedding],
          );
          const approx = await q<{ id: string }>(naive, [x.client_id, x.embedding]);
          return [rpc.map((r) => r.id), approx.map((r) => r.id)];
        },
        approxSetup,
      );
      if (wrong(x.client_id, control)) approxMismatches++;
      if (wrong(x.client_id, got))
        mismatches.push(`${x.client_id}: got ${got.join()} want ${exact.get(x.client_id)}`);
    }
    // The service role (the mover, provisioning) gets the same answers, all 200 in one statement.
    const all = await db.as(
      SERVICE,
      (q) =>
        q<{ client_id: string; ids: string[] }>(
          `SELECT client_id, array(SELECT id FROM match_documents(client_id, embedding, 'sidekick', -1, ${K})) AS ids
             FROM zz_queries`,
        ),
      approxSetup,
    );
    for (const r of all)
      if (wrong(r.client_id, r.ids)) mismatches.push(`service role, ${r.client_id}: ${r.ids}`);
    console.log(
      `exact retrieval: ${CLIENTS} clients checked (${owners.size} chunks), ${mismatches.length} mismatches; ` +
        `a filtered HNSW scan (ef_search 10) differs for ${approxMismatches} clients; ` +
        `load ${loadSeconds.toFixed(1)} s, checks ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    expect(mismatches.slice(0, 3)).toEqual([]);
    expect(approxMismatches).toBeGreaterThan(CLIENTS / 2);
  });

  it("turn_context's documents are the same exact top-k for every client, as that tenant, with recall beside them", async () => {
    const mismatches: string[] = [];
    for (const x of queries) {
      const [row] = await db.as(
        tenant(x.client_id),
        (q) =>
          q<{ ctx: { documents: Array<{ id: string }>; recall: unknown[] } }>(
            `SELECT turn_context($1, $2, 'sidekick', NULL, -1, ${K}, 3, NULL) AS ctx`,
            [x.client_id, x.embedding],
          ),
        approxSetup,
      );
      const got = row!.ctx.documents.map((d) => d.id);
      if (got.join() !== exact.get(x.client_id)!.slice(0, K).join()) {
        mismatches.push(`${x.client_id}: got ${got.join()} want ${exact.get(x.client_id)!.slice(0, K)}`);
      }
      // No user: no recall asked for.
      expect(row!.ctx.recall).toEqual([]);
    }
    expect(mismatches.slice(0, 3)).toEqual([]);
  });

  it("the order is the true cosine order (an oracle outside the database); the threshold and the sidekick's slug are honoured", async () => {
    for (const x of queries.slice(0, 3)) {
      const q = JSON.parse(x.embedding) as number[];
      const vectors = await db.sql.query<{ id: string; kind: string; v: string }>(
        `SELECT dc.id, d.kind, dc.embeddings::text AS v FROM document_chunks dc JOIN zz_docs d ON d.id = dc.document_id
          WHERE d.client_id = $1 AND dc.embeddings IS NOT NULL`,
        [x.client_id],
      );
      const distance = new Map(vectors.map((r) => [r.id, 1 - cosine(q, JSON.parse(r.v) as number[])]));
      const eligible = vectors.filter((r) => r.kind === 'linked').map((r) => r.id);
      const rpc = (slug: string, threshold: number) =>
        db.one<{ id: string; relevance: number }>(
          tenant(x.client_id),
          'SELECT id, relevance FROM match_documents($1, $2, $3, $4, 100)',
          [x.client_id, x.embedding, slug, threshold],
        );
      const got = await rpc('sidekick', -1);
      expect(got.map((r) => r.id)).toEqual(exact.get(x.client_id));
      expect(got.map((r) => r.id).sort()).toEqual(eligible.sort());
      const trueOrder = eligible.map((id) => distance.get(id)!).sort((a, b) => a - b);
      got.forEach((r, i) => {
        expect(distance.get(r.id)!).toBeCloseTo(trueOrder[i]!, 6);
        expect(r.relevance).toBeCloseTo(1 - distance.get(r.id)!, 4); // relevance is 1 - distance
      });
      const above = await rpc('sidekick', got[3]!.relevance);
      expect(above.map((r) => r.id)).toEqual(got.slice(0, 3).map((r) => r.id));
      const side = await rpc('side', -1);
      expect(side.map((r) => r.id).sort()).toEqual(
        vectors
          .filter((r) => r.kind === 'side')
          .map((r) => r.id)
          .sort(),
      );
    }
  });
});
