/**
 * A dedicated (champion) project in SQL, behind PostgREST's back: migrations that re-apply without
 * change, nothing for the API roles but the service role, tuned vector search, and RPCs that answer
 * exactly like the shared pool's for the same client. Recall of its HNSW search on 20,000 chunks:
 * schema-recall.test.ts (real server only).
 *
 * Runs on PGlite, or on the real PostgreSQL server with STACK_POSTGRES_URL.
 */

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { TENANT_TABLES } from '../src/tenancy/tenant-query.js';
import {
  ANON,
  expectReapplies,
  failure,
  migratedDatabase,
  type Row,
  SERVICE,
  type TestDatabase,
  tenant,
} from './support/db.js';
import { DIMS, near, prng, randomVector, vectorLiteral } from './support/vectors.js';

let dedicated: TestDatabase;
let pool: TestDatabase;
beforeAll(async () => {
  [dedicated, pool] = await Promise.all([migratedDatabase('dedicated'), migratedDatabase('shared_pool')]);
});
afterAll(async () => {
  await Promise.all([dedicated?.drop(), pool?.drop()]);
});

describe('dedicated project', () => {
  it('migrations apply again on a migrated database and change nothing; rows survive', async () => {
    await dedicated.sql.exec(`INSERT INTO agents (name, slug) VALUES ('kept', 'reapply-probe')`);
    await expectReapplies(dedicated, 'dedicated');
    expect(await dedicated.sql.query(`SELECT 1 FROM agents WHERE slug = 'reapply-probe'`)).toHaveLength(1);
    await dedicated.sql.exec(`DELETE FROM agents WHERE slug = 'reapply-probe'`);
  });

  it('RLS on, nothing for anon or authenticated, RPCs for the service role only, tuned vector search', async () => {
    const db = dedicated;
    const noRls = await db.sql.query(
      `SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND NOT relrowsecurity`,
    );
    expect(noRls).toEqual([]);
    const cols = await db.sql.query(
      `SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'client_id'`,
    );
    // The client's own data carries no client_id; only the project's record of its one owner does.
    expect(cols).toEqual([{ table_name: 'project_owner' }]);
    const rpc = `SELECT * FROM match_documents($1::vector, 'x', 0.5, 5)`;
    const ones = [vectorLiteral(new Array(DIMS).fill(1))];
    for (const actor of [ANON, tenant(randomUUID())]) {
      for (const table of TENANT_TABLES) {
        expect((await failure(db.one(actor, `SELECT 1 FROM ${table}`))).code, table).toBe('42501');
      }
      expect((await failure(db.one(actor, rpc, ones))).code).toBe('42501');
      expect((await failure(db.one(actor, `SELECT turn_context($1::vector, 'x')`, ones))).code).toBe('42501');
    }
    expect(await db.one(SERVICE, rpc, ones)).toEqual([]);
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
    expect(conf).toHaveLength(2);
    for (const f of conf) {
      expect(f.proconfig).toContain('hnsw.ef_search=200');
      if (v!.iterative) expect(f.proconfig).toContain('hnsw.iterative_scan=relaxed_order');
    }
    // The SET clause is for the call only: the session's setting is untouched afterwards.
    const [after] = await db.as(SERVICE, async (q) => {
      await q(rpc, ones);
      return q<{ ef: string }>(`SELECT current_setting('hnsw.ef_search') AS ef`);
    });
    expect(after!.ef).toBe('40');
  });
});

describe('dedicated project: the one client it belongs to (project_owner)', () => {
  it('one owner, written once, claimed by the service role only; begin_session for another client reads and writes nothing', async () => {
    const db = dedicated;
    const [owner, other] = [randomUUID(), randomUUID()];
    const claim = async (actor: typeof SERVICE, clientId: string, adopt = false) =>
      (await db.one<{ a: Row }>(actor, 'SELECT claim_project_owner($1, $2) AS a', [clientId, adopt]))[0]!.a;
    for (const actor of [ANON, tenant(owner)]) {
      expect((await failure(claim(actor, owner))).code).toBe('42501');
      expect((await failure(db.one(actor, 'SELECT * FROM project_owner'))).code).toBe('42501');
    }
    try {
      // A project holding data and no owner may be another client's from before the record.
      await db.sql.exec(`INSERT INTO agents (name, slug) VALUES ('Owned', 'owned-probe')`);
      const data = { holds_data: true, sidekicks: 1 };
      expect(await claim(SERVICE, other)).toEqual({ owner: null, claimed: false, ...data });
      expect(await claim(SERVICE, owner, true)).toEqual({ owner, claimed: true, ...data });
      expect(await claim(SERVICE, owner)).toEqual({ owner, claimed: false, ...data });
      expect(await claim(SERVICE, other, true)).toEqual({ owner, claimed: false, ...data });

      // No second row, no changed owner: not through the API roles, not even for the table's owner.
      const insert = 'INSERT INTO project_owner (client_id) VALUES ($1)';
      expect((await failure(db.one(SERVICE, insert, [other]))).code).toBe('23505');
      expect((await failure(db.one(SERVICE, 'UPDATE project_owner SET client_id = $1', [other]))).code).toBe(
        '42501',
      );
      expect((await failure(db.one(SERVICE, 'DELETE FROM project_owner'))).code).toBe('42501');
      expect((await failure(db.sql.exec(`UPDATE project_owner SET client_id = '${other}'`))).code).toBe(
        '23514',
      );
      expect(await db.sql.query('SELECT client_id FROM project_owner')).toEqual([{ client_id: owner }]);

      const conversation = randomUUID();
      const begin = async (forClient: string) =>
        (
          await db.one<{ s: Row }>(
            SERVICE,
            `SELECT begin_session(p_agent_slug => 'owned-probe', p_conversation_id => $1,
                                  p_claim_conversation => true, p_for_client => $2) AS s`,
            [conversation, forClient],
          )
        )[0]!.s;
      expect(await begin(other)).toEqual({ sidekick: null, beyond_limit: false, owner });
      expect(await db.sql.query('SELECT 1 FROM conversations WHERE id = $1', [conversation])).toEqual([]);
      expect(await begin(owner)).toMatchObject({
        owner,
        sidekick: { slug: 'owned-probe' },
        conversation: { status: 'new', claimed: true },
      });
    } finally {
      await db.sql.exec(`DELETE FROM agents WHERE slug = 'owned-probe'; DELETE FROM project_owner`);
    }
  });
});

describe('dedicated project and shared pool', () => {
  it('TENANT_TABLES lists parents before the tables that reference them, in both (the copy and delete order)', async () => {
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

  const users = { U: randomUUID(), V: randomUUID(), W: randomUUID() };

  /**
   * One client's rows, without client_id: ids fresh on every call, vectors from `seed`. Sidekick
   * main sees documents 0 and 1 (its link to 3 is disabled), other sees 2; one chunk and one
   * transcript are not embedded yet.
   */
  function clientRows(seed: number) {
    const rand = prng(seed);
    const [main, other] = [randomUUID(), randomUUID()];
    const docs = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    const at = (n: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString();
    const chunks = docs.flatMap((document_id, d) =>
      Array.from({ length: 8 }, (_, i) => ({
        id: randomUUID(),
        document_id,
        chunk_index: i,
        content: `doc ${d} chunk ${i}`,
        embeddings: randomVector(rand) as number[] | null,
      })),
    );
    chunks.push({
      id: randomUUID(),
      document_id: docs[0]!,
      chunk_index: 99,
      content: 'not embedded yet',
      embeddings: null,
    });
    const conversations = (
      [
        [main, users.U],
        [main, users.U],
        [main, users.V],
        [other, users.U],
      ] as const
    ).map(([agent_id, user_id], i) => ({ id: randomUUID(), agent_id, user_id, created_at: at(i) }));
    const transcripts = conversations.flatMap((c, ci) =>
      Array.from({ length: 5 }, (_, i) => ({
        id: randomUUID(),
        conversation_id: c.id,
        agent_id: c.agent_id,
        user_id: c.user_id,
        role: i % 2 ? 'assistant' : 'user',
        content: `c${ci} t${i}`,
        embeddings: randomVector(rand) as number[] | null,
        created_at: at(ci * 10 + i),
      })),
    );
    transcripts.push({
      ...transcripts[0]!,
      id: randomUUID(),
      content: 'no vector',
      embeddings: null,
      created_at: at(99),
    });
    const rows: Record<(typeof TENANT_TABLES)[number], Row[]> = {
      agents: [
        { id: main, name: 'Main', slug: 'main' },
        { id: other, name: 'Other', slug: 'other' },
      ],
      documents: docs.map((id, i) => ({ id, title: `Doc ${i}`, source_url: `https://example.test/${i}` })),
      document_chunks: chunks,
      agent_documents: (
        [
          [main, 0, true],
          [main, 1, true],
          [other, 2, true],
          [main, 3, false],
        ] as const
      ).map(([agent_id, d, enabled]) => ({ agent_id, document_id: docs[d], enabled })),
      conversations,
      conversation_transcripts: transcripts,
      user_overviews: (
        [
          [users.U, main, { for: 'U with main' }],
          [users.U, null, { for: 'U, any agent' }],
          [users.V, null, { for: 'V, any agent' }],
        ] as const
      ).map(([user_id, agent_id, sections]) => ({ user_id, agent_id, sections: JSON.stringify(sections) })),
    };
    return { main, other, docs, chunks, conversations, transcripts, rows };
  }

  /** Inserts `rows` parents first; in the pool, tagged with (and registering) `clientId`. */
  async function insertClient(db: TestDatabase, clientId: string | null, rows: Record<string, Row[]>) {
    if (clientId) await db.sql.query('INSERT INTO pool_clients (client_id) VALUES ($1)', [clientId]);
    for (const table of TENANT_TABLES) {
      for (const row of rows[table]!) {
        const r: Row = clientId ? { client_id: clientId, ...row } : row;
        const cols = Object.keys(r);
        await db.sql.query(
          `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')})`,
          cols.map((c) => (Array.isArray(r[c]) ? vectorLiteral(r[c] as number[]) : r[c])),
        );
      }
    }
  }

  it("turn_latency_report: per sidekick and component, percentiles as percentile_cont computes them, the same in both; a part a turn lacks is not counted; the pool's other client never", async () => {
    const clientId = randomUUID();
    const data = clientRows(11);
    // Each reply's latency: e2e for all, the end of turn for voice replies only (every other one).
    let n = 0;
    const withLatency = (rows: Record<string, Row[]>) => ({
      ...rows,
      conversation_transcripts: rows.conversation_transcripts!.map((t) => {
        if (t.role !== 'assistant') return t;
        n++;
        const latency = { e2e_ms: 400 + n * 37.5, end_of_turn_ms: n % 2 ? 510 + n : null, context_ms: 'n/a' };
        return { ...t, metadata: JSON.stringify({ latency }) };
      }),
    });
    const rows = withLatency(data.rows);
    n = 0;
    const otherRows = withLatency(clientRows(11).rows);
    await insertClient(dedicated, null, rows);
    await insertClient(pool, clientId, rows);
    await insertClient(pool, randomUUID(), otherRows);
    onTestFinished(async () => {
      // The project is one client's: the next test's client starts from an empty one.
      for (const table of [...TENANT_TABLES].reverse()) await dedicated.sql.exec(`DELETE FROM ${table}`);
    });
    const range = ['2025-12-31T00:00:00Z', '2026-01-02T00:00:00Z'];
    const [p, d] = await Promise.all([
      pool.one(tenant(clientId), 'SELECT * FROM turn_latency_report($1, $2, $3)', [clientId, ...range]),
      dedicated.one(SERVICE, 'SELECT * FROM turn_latency_report($1, $2)', range),
    ]);
    expect(d).toEqual(p);
    const replies = (slug: 'main' | 'other') =>
      (rows.conversation_transcripts as Row[])
        .filter((t) => t.role === 'assistant' && t.agent_id === data[slug])
        .map(
          (t) =>
            JSON.parse(t.metadata as string).latency as { e2e_ms: number; end_of_turn_ms: number | null },
        );
    const cont = (values: number[], q: number) => {
      const v = [...values].sort((a, b) => a - b);
      const pos = q * (v.length - 1);
      const lo = Math.floor(pos);
      return v[lo]! + (v[Math.min(lo + 1, v.length - 1)]! - v[lo]!) * (pos - lo);
    };
    const expected = (['main', 'other'] as const).flatMap((slug) =>
      (
        [
          ['e2e', replies(slug).map((r) => r.e2e_ms)],
          [
            'end_of_turn',
            replies(slug).flatMap((r) => (r.end_of_turn_ms === null ? [] : [r.end_of_turn_ms])),
          ],
        ] as const
      )
        .map(([component, values]) => ({
          agent_slug: slug,
          component,
          turns: values.length,
          p50_ms: cont(values, 0.5),
          p90_ms: cont(values, 0.9),
          p99_ms: cont(values, 0.99),
        }))
        .sort((a, b) => a.component.localeCompare(b.component)),
    );
    expect(p.map((r) => ({ ...r, turns: Number(r.turns) }))).toEqual(
      expected.map((e) => ({
        ...e,
        p50_ms: expect.closeTo(e.p50_ms, 6),
        p90_ms: expect.closeTo(e.p90_ms, 6),
        p99_ms: expect.closeTo(e.p99_ms, 6),
      })),
    );
    // One sidekick only; and a range with none of the turns.
    const only = await dedicated.one(
      SERVICE,
      `SELECT agent_slug FROM turn_latency_report($1, $2, 'other')`,
      range,
    );
    expect(new Set(only.map((r) => r.agent_slug))).toEqual(new Set(['other']));
    expect(
      await dedicated.one(SERVICE, 'SELECT * FROM turn_latency_report($1, $2)', ['2027-01-01', '2027-02-01']),
    ).toEqual([]);
  });

  it('the dedicated RPCs answer exactly like the pool RPCs for the same client', async () => {
    const clientId = randomUUID();
    const data = clientRows(42);
    await insertClient(dedicated, null, data.rows);
    await insertClient(pool, clientId, data.rows);
    // Another client in the pool with the same slugs, users and vectors: "the same data" must not be
    // "the whole pool".
    await insertClient(pool, randomUUID(), clientRows(42).rows);

    const rand = prng(7);
    const chunkVectors = data.chunks.map((c) => c.embeddings!);
    const queries = [
      near(chunkVectors[0]!, rand),
      near(chunkVectors[9]!, rand),
      near(chunkVectors[17]!, rand), // a chunk of the document only `other` sees
      near(chunkVectors[25]!, rand), // a chunk of the disabled link
      randomVector(rand),
    ].map(vectorLiteral);
    const tQueries = [
      near(data.transcripts[0]!.embeddings!, rand),
      near(data.transcripts[12]!.embeddings!, rand),
      randomVector(rand),
    ].map(vectorLiteral);

    let compared = 0;
    let aboveHalf = 0;
    const same = async (poolSql: string, dedicatedSql: string, params: unknown[]) => {
      const [p, d] = await Promise.all([
        pool.one(tenant(clientId), poolSql, [clientId, ...params]),
        dedicated.one(SERVICE, dedicatedSql, params),
      ]);
      expect(d, `${dedicatedSql} ${JSON.stringify(params).slice(0, 200)}`).toEqual(p);
      compared++;
      return p;
    };
    const ids = (rows: Row[]) => rows.map((r) => r.id as string).sort();

    const agentOf = { main: data.main, other: data.other, nobody: null } as const;
    for (const query of queries)
      for (const slug of ['main', 'other', 'nobody'] as const) {
        // Only chunks of that sidekick's enabled links, never the disabled link's or a NULL vector.
        const linked = data.rows.agent_documents
          .filter((l) => l.agent_id === agentOf[slug] && l.enabled)
          .map((l) => l.document_id);
        const allowed = data.chunks
          .filter((c) => linked.includes(c.document_id) && c.embeddings)
          .map((c) => c.id);
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
          if (threshold === -1) expect(rows).toHaveLength(Math.min(count, allowed.length));
          if (count === 100) expect(ids(rows)).toEqual(allowed.sort());
          if (threshold === 0.5 && rows.length > 0) aboveHalf++;
        }
      }

    for (const query of tQueries)
      for (const [slug, user] of [
        ['main', users.U],
        ['main', users.V],
        ['other', users.U],
        ['main', users.W],
      ] as const)
        for (const exclude of [null, data.conversations[0]!.id])
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
              const expected = data.transcripts.filter(
                (t) =>
                  t.embeddings &&
                  t.user_id === user &&
                  t.agent_id === agentOf[slug] &&
                  t.conversation_id !== exclude,
              );
              expect(ids(rows)).toEqual(ids(expected));
            }
            if (threshold === 0.5 && rows.length > 0) aboveHalf++;
          }

    for (const [user, agent, expected] of [
      [users.U, data.main, { for: 'U with main' }],
      [users.U, data.other, { for: 'U, any agent' }],
      [users.V, data.main, { for: 'V, any agent' }],
      [users.W, data.main, {}],
    ] as const) {
      const [row] = await same(
        'SELECT get_user_overview_for_agent($1, $2, $3) AS o',
        'SELECT get_user_overview_for_agent($1, $2) AS o',
        [user, agent],
      );
      expect(row).toEqual({ o: expected });
    }
    // turn_context: the same answer on both schemas, and exactly the two RPCs' rows together.
    for (const query of [...queries.slice(0, 3), ...tQueries.slice(0, 2)])
      for (const [slug, user] of [
        ['main', users.U],
        ['other', users.V],
        ['main', null],
      ] as const) {
        const [row] = await same(
          'SELECT turn_context($1, $2, $3, $4, $5, $6, $7, $8) AS c',
          'SELECT turn_context($1, $2, $3, $4, $5, $6, $7) AS c',
          [query, slug, user, -1, 5, 5, null],
        );
        const c = (row as { c: { documents: Row[]; recall: Row[] } }).c;
        const docs = await dedicated.one(SERVICE, 'SELECT * FROM match_documents($1, $2, -1, 5)', [
          query,
          slug,
        ]);
        expect(c.documents.map((d) => d.id)).toEqual(docs.map((d) => d.id));
        const recall = user
          ? await dedicated.one(
              SERVICE,
              'SELECT * FROM match_conversation_transcripts_secure($1, $2, $3, -1, 5, NULL)',
              [query, slug, user],
            )
          : [];
        expect(c.recall.map((r) => r.id)).toEqual(recall.map((r) => r.id));
      }
    // The near queries find neighbours above a 0.5 threshold: that comparison is not only of empty lists.
    expect(aboveHalf).toBeGreaterThan(5);
    console.log(`dedicated vs pool: ${compared} RPC calls compared, 0 differences`);
  });
});
