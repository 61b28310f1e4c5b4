/**
 * The isolation matrix of the shared pool: client A, holding its own tenant JWT, tries every read and
 * write on every pool table and every RPC against client B, through supabase-js and the real
 * PostgREST like production. After each probe the pool is compared, as superuser behind PostgREST's
 * back, with a snapshot taken before: B's rows (count and content) and every other row unchanged.
 *
 * The matrix is generated from TABLES × operations, once per credential kind: A's tenant token
 * (HS256 and ES256 with kid), the anon key alone, an authenticated token without a client_id claim,
 * the service role; forged and expired tokens get 401. Every write is sent twice, without and with
 * RETURNING, since RLS checks the two differently. Each refused write is meaningful: its payload is
 * valid in every other respect (references stay inside the target client, the sidekick limit is
 * lifted, moved rows have no dependents), and the controls at the end prove that B itself could
 * have written it, so only isolation can have refused it. Each request is one probe; the count is
 * logged at the end (`isolation probes: N`).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vectorLiteral } from '../src/context/embeddings.js';
import type { LocalStack } from '../src/stack/stack.js';
import { createSupabase, type SupabaseClient } from '../src/tenancy/supabase.js';
import type { TenantTable } from '../src/tenancy/tenant-query.js';
import { type TenantSigningKey, TenantTokenMinter } from '../src/tenancy/tokens.js';
import { startTestStack } from './support/stack.js';

type Row = Record<string, unknown>;

type TableName = TenantTable | 'pool_clients';

/** One client of the pool, as the probes need it. */
interface Tenant {
  label: 'A' | 'B';
  id: string;
  agentId: string;
  agentSlug: string;
  /** A seeded document that has chunks. */
  documentId: string;
  /** A document no agent links to (a new agent_documents row may link it). */
  freeDocumentId: string;
  conversationId: string;
  /** Per table, one row nothing references: what a probe tries to move to the other client. */
  leaf: Record<TableName, string>;
}

interface TableSpec {
  name: TableName;
  /** Primary key column. */
  pk: 'id' | 'client_id';
  /** A new row of client `c`, valid in every respect (references stay inside `c`). */
  newRow(c: Tenant): Row;
  /** A change of content for an existing row. */
  touch: Row;
}

const short = () => randomBytes(4).toString('hex');

const TABLES: TableSpec[] = [
  {
    name: 'agents',
    pk: 'id',
    newRow: (c) => ({ client_id: c.id, name: 'probe', slug: `probe-${short()}` }),
    touch: { system_prompt: 'pwned' },
  },
  {
    name: 'documents',
    pk: 'id',
    newRow: (c) => ({ client_id: c.id, title: 'probe', content: 'probe' }),
    touch: { content: 'pwned' },
  },
  {
    name: 'document_chunks',
    pk: 'id',
    newRow: (c) => ({ client_id: c.id, document_id: c.documentId, chunk_index: 99, content: 'probe' }),
    touch: { content: 'pwned' },
  },
  {
    name: 'agent_documents',
    pk: 'id',
    newRow: (c) => ({ client_id: c.id, agent_id: c.agentId, document_id: c.freeDocumentId }),
    touch: { enabled: false },
  },
  {
    name: 'conversations',
    pk: 'id',
    newRow: (c) => ({ client_id: c.id, agent_id: c.agentId, user_id: randomUUID(), title: 'probe' }),
    touch: { title: 'pwned' },
  },
  {
    name: 'conversation_transcripts',
    pk: 'id',
    newRow: (c) => ({
      client_id: c.id,
      conversation_id: c.conversationId,
      agent_id: c.agentId,
      user_id: randomUUID(),
      role: 'user',
      content: 'probe',
    }),
    touch: { content: 'pwned' },
  },
  {
    name: 'user_overviews',
    pk: 'id',
    newRow: (c) => ({ client_id: c.id, user_id: randomUUID(), agent_id: c.agentId, sections: { probe: 1 } }),
    touch: { sections: { pwned: true } },
  },
  {
    // Not a tenant-writable table: a tenant reads its own row (limit, fence) and writes nothing.
    // Its key is client_id, so "upsert onto B's ids with A's client_id" is the same request as with B's.
    name: 'pool_clients',
    pk: 'client_id',
    newRow: (c) => ({ client_id: c.id, max_sidekicks: 7, write_fence: 'moved' }),
    touch: { write_fence: 'moved' },
  },
];

/** The tables a tenant may write its own rows to (the controls prove the payloads valid there). */
const TENANT_TABLES = TABLES.filter((t) => t.name !== 'pool_clients');

// ---------------------------------------------------------------------------------------------
// Stack, fixtures, snapshot

let stack: LocalStack;
let A: Tenant;
let B: Tenant;
let userId: string;
/** The pool before the probes: "table client_id pk" → md5 of the whole row. */
let baseline: Snapshot;
const counts = { probes: 0, controls: 0 };
/** What each operation got back, per credential: "status code" of the refusals and results. */
const outcomes = new Map<string, Set<string>>();

type Snapshot = Record<string, string>;

async function snapshot(): Promise<Snapshot> {
  const union = TABLES.map(
    (t) =>
      `SELECT '${t.name}' AS t, client_id::text AS c, ${t.pk}::text AS k, md5(x::text) AS h FROM ${t.name} x`,
  ).join('\nUNION ALL ');
  const rows = await stack.pool.sql.query<{ t: string; c: string; k: string; h: string }>(
    `${union}\nORDER BY 1, 2, 3`,
  );
  return Object.fromEntries(rows.map((r) => [`${r.t} ${r.c} ${r.k}`, r.h]));
}

function ofClient(snap: Snapshot, c: Tenant): Snapshot {
  return Object.fromEntries(Object.entries(snap).filter(([k]) => k.split(' ')[1] === c.id));
}

/** Primary keys of `c`'s rows in `table`, sorted (from the baseline; the probes change nothing). */
function idsOf(table: TableName, c?: Tenant): string[] {
  return Object.keys(baseline)
    .map((k) => k.split(' '))
    .filter(([t, client]) => t === table && (!c || client === c.id))
    .map(([, , id]) => id!)
    .sort();
}

/** The invariant after every probe: B's rows are what they were, and so is every other row. */
async function expectPoolUnchanged(): Promise<void> {
  const before = baseline;
  const now = await snapshot();
  // A hole fails here, once: later probes compare with the pool as it now is, so each failure is its own.
  baseline = now;
  expect(ofClient(now, B), "B's rows (count and content)").toEqual(ofClient(before, B));
  expect(now, 'every row of the pool').toEqual(before);
}

async function seedLeaves(c: Omit<Tenant, 'leaf' | 'freeDocumentId'>, label: string) {
  const sql = stack.pool.sql;
  const one = async (q: string, params: unknown[]) => (await sql.query<{ id: string }>(q, params))[0]!.id;
  const agent = await one(`INSERT INTO agents (client_id, name, slug) VALUES ($1, 'leaf', $2) RETURNING id`, [
    c.id,
    `leaf-${label}`,
  ]);
  const freeDoc = await one(
    `INSERT INTO documents (client_id, title, content) VALUES ($1, 'free', 'unlinked') RETURNING id`,
    [c.id],
  );
  const linkedDoc = await one(
    `INSERT INTO documents (client_id, title, content) VALUES ($1, 'linked', 'linked') RETURNING id`,
    [c.id],
  );
  const link = await one(
    `INSERT INTO agent_documents (client_id, agent_id, document_id) VALUES ($1, $2, $3) RETURNING id`,
    [c.id, c.agentId, linkedDoc],
  );
  const chunk = await one(
    `INSERT INTO document_chunks (client_id, document_id, chunk_index, content) VALUES ($1, $2, 50, 'leaf') RETURNING id`,
    [c.id, c.documentId],
  );
  const conversation = await one(
    `INSERT INTO conversations (client_id, agent_id, user_id, title) VALUES ($1, $2, $3, 'leaf') RETURNING id`,
    [c.id, c.agentId, userId],
  );
  const transcript = await one(
    `INSERT INTO conversation_transcripts (client_id, conversation_id, agent_id, user_id, role, content, metadata)
     VALUES ($1, $2, $3, $4, 'assistant', 'leaf', '{"latency": {"e2e_ms": 812.5, "context_ms": 41.2, "llm_ttft_ms": 305}}')
     RETURNING id`,
    [c.id, c.conversationId, c.agentId, userId],
  );
  const overview = await one(
    `INSERT INTO user_overviews (client_id, user_id, agent_id, sections) VALUES ($1, $2, $3, '{"leaf": true}') RETURNING id`,
    [c.id, randomUUID(), c.agentId],
  );
  // The free document stays free: nothing references it, so it is also the documents leaf.
  const leaf: Record<TableName, string> = {
    agents: agent,
    documents: freeDoc,
    document_chunks: chunk,
    agent_documents: link,
    conversations: conversation,
    conversation_transcripts: transcript,
    user_overviews: overview,
    pool_clients: c.id,
  };
  return { ...c, freeDocumentId: freeDoc, leaf };
}

beforeAll(async () => {
  stack = await startTestStack();
  const demo = stack.demo!;
  userId = demo.userId;
  // The seed's sidekick limit (1) would refuse new agents of either client for a reason other than
  // isolation, and mask what RLS does: lift it for this file.
  await stack.pool.sql.query('UPDATE pool_clients SET max_sidekicks = NULL');
  const tenants: Tenant[] = [];
  for (const [i, d] of demo.adventurers.slice(0, 2).entries()) {
    const label = i === 0 ? 'A' : 'B';
    const [doc] = await stack.pool.sql.query<{ id: string }>(
      'SELECT document_id AS id FROM document_chunks WHERE client_id = $1 ORDER BY document_id LIMIT 1',
      [d.clientId],
    );
    tenants.push(
      await seedLeaves(
        {
          label,
          id: d.clientId,
          agentId: d.agentId,
          agentSlug: d.agentSlug,
          documentId: doc!.id,
          conversationId: d.conversationId,
        },
        label,
      ),
    );
  }
  [A, B] = tenants as [Tenant, Tenant];
  baseline = await snapshot();
  // Both clients have rows in every table, so every probe has something to aim at.
  for (const t of TABLES) {
    for (const c of [A, B]) expect(idsOf(t.name, c).length, `${c.label}'s ${t.name}`).toBeGreaterThan(0);
  }
});

afterAll(async () => {
  await stack?.stop();
  if (counts.probes > 0) {
    const lines = [...outcomes].map(([op, seen]) => `  ${op}: ${[...seen].sort().join(', ')}`);
    console.log(`isolation outcomes:\n${lines.join('\n')}`);
    console.log(`isolation controls: ${counts.controls}`);
    console.log(`isolation probes: ${counts.probes}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Clients and results

/**
 * A supabase-js client of the pool with `apikey` = `key` and the given bearer token (null: no
 * Authorization header at all, so the gateway falls back to the API key, as Supabase's does).
 * Every request it makes counts as one probe (or one control).
 */
function poolClient(
  key: string,
  bearer: string | null,
  counter: keyof typeof counts = 'probes',
): SupabaseClient {
  return createSupabase(stack.pool.url, key, {
    fetch: (input, init) => {
      counts[counter]++;
      const headers = new Headers(init?.headers);
      if (bearer === null) headers.delete('Authorization');
      else headers.set('Authorization', `Bearer ${bearer}`);
      return fetch(input, { ...init, headers });
    },
  });
}

/** What every supabase-js request resolves to, as far as the probes look. */
interface Res {
  data: unknown;
  error: { code?: string; message: string } | null;
  status: number;
}

const rowsOf = (res: Res): Row[] => (Array.isArray(res.data) ? (res.data as Row[]) : []);
const describeRes = (res: Res) =>
  res.error
    ? `${res.status} ${res.error.code ?? ''} ${res.error.message}`
    : `${res.status} ${JSON.stringify(res.data)}`;

function note(key: string, res: Res): void {
  const seen = outcomes.get(key) ?? new Set<string>();
  const result = Array.isArray(res.data)
    ? `${res.data.length} row(s)`
    : res.data === null
      ? 'no body'
      : typeof res.data;
  seen.add(res.error ? `${res.status} ${res.error.code ?? '?'}` : `${res.status} ${result}`);
  outcomes.set(key, seen);
}

/** Refused: an error, or nothing written / returned. The snapshot check then proves nothing changed. */
function expectRefused(res: Res, what: string): void {
  expect(res.error !== null || rowsOf(res).length === 0, `${what} went through: ${describeRes(res)}`).toBe(
    true,
  );
}

const ids = (rows: Row[], col: string) => rows.map((r) => String(r[col])).sort();
const without = (row: Row, col: string): Row =>
  Object.fromEntries(Object.entries(row).filter(([k]) => k !== col));

// ---------------------------------------------------------------------------------------------
// The operations

interface Probe {
  db: SupabaseClient;
  t: TableSpec;
  /** The caller's own client (A), and the victim (B). */
  me: Tenant;
  other: Tenant;
  /** Records an outcome under this operation. */
  note(res: Res): void;
}

interface Op {
  title: string;
  run(p: Probe): Promise<void>;
}

/** A write request not yet sent; `.select()` makes it return the written rows. */
interface Write extends PromiseLike<Res> {
  select(): PromiseLike<Res>;
}

/**
 * Sends a write twice, each time checking the pool after it: without RETURNING (return=minimal, how
 * a fire-and-forget insert goes) and with it (`.select()`). RLS checks the two differently: with
 * RETURNING the new row must also pass the SELECT policy, which would hide a hole in WITH CHECK.
 * `mustFail`: the request itself must be an error (inserts, upserts, moves); otherwise "nothing
 * happened" (0 rows) is also a refusal, and the snapshot decides.
 */
async function sendWrite(p: Probe, what: string, mustFail: boolean, build: () => Write): Promise<void> {
  for (const mode of ['minimal', 'representation'] as const) {
    const res = mode === 'minimal' ? await build() : await build().select();
    p.note(res);
    // The pool first: it re-baselines even when the write went through, so one hole fails one test.
    await expectPoolUnchanged();
    if (mustFail)
      expect(res.error, `${what} (return=${mode}) went through: ${describeRes(res)}`).not.toBeNull();
    else expectRefused(res, `${what} (return=${mode})`);
  }
}

/** A's operations with A's tenant token. */
const TENANT_OPS: Op[] = [
  {
    title: 'select all: exactly its own rows',
    async run({ db, t, me, note }) {
      const res = await db.from(t.name).select(`${t.pk}, client_id`);
      note(res);
      expect(res.error).toBeNull();
      expect(new Set(rowsOf(res).map((r) => r.client_id))).toEqual(new Set([me.id]));
      expect(ids(rowsOf(res), t.pk)).toEqual(idsOf(t.name, me));
    },
  },
  {
    title: "select filtered by B's client_id: nothing",
    async run({ db, t, other, note }) {
      const res = await db.from(t.name).select('*').eq('client_id', other.id);
      note(res);
      expect(res.error).toBeNull();
      expect(res.data).toEqual([]);
    },
  },
  {
    title: "select B's rows by id: nothing",
    async run({ db, t, other, note }) {
      const res = await db.from(t.name).select('*').in(t.pk, idsOf(t.name, other));
      note(res);
      expect(res.error).toBeNull();
      expect(res.data).toEqual([]);
    },
  },
  {
    title: 'insert a row tagged B: refused',
    run: (p) => sendWrite(p, 'insert tagged B', true, () => p.db.from(p.t.name).insert(p.t.newRow(p.other))),
  },
  {
    title: 'insert a row without client_id: refused',
    run: (p) =>
      sendWrite(p, 'insert without client_id', true, () =>
        p.db.from(p.t.name).insert(without(p.t.newRow(p.other), 'client_id')),
      ),
  },
  {
    title: 'update its own row setting client_id to B (moving it to B): refused',
    run: (p) =>
      sendWrite(p, 'move to B', true, () =>
        p.db.from(p.t.name).update(p.t.newRow(p.other)).eq(p.t.pk, p.me.leaf[p.t.name]),
      ),
  },
  {
    title: "update B's rows by id: nothing changes",
    run: (p) =>
      sendWrite(p, "update of B's rows by id", false, () =>
        p.db.from(p.t.name).update(p.t.touch).in(p.t.pk, idsOf(p.t.name, p.other)),
      ),
  },
  {
    title: "update filtered by B's client_id: nothing changes",
    run: (p) =>
      sendWrite(p, "update of B's rows by client_id", false, () =>
        p.db.from(p.t.name).update(p.t.touch).eq('client_id', p.other.id),
      ),
  },
  {
    title: "upsert onto each of B's ids with its own client_id: refused",
    async run(p) {
      for (const id of idsOf(p.t.name, p.other)) {
        await sendWrite(p, `upsert onto ${p.t.name} ${id}`, true, () =>
          p.db.from(p.t.name).upsert({ ...p.t.newRow(p.me), [p.t.pk]: id }),
        );
      }
    },
  },
  {
    title: "upsert onto each of B's ids with B's client_id: refused",
    async run(p) {
      for (const id of idsOf(p.t.name, p.other)) {
        await sendWrite(p, `upsert onto ${p.t.name} ${id}`, true, () =>
          p.db.from(p.t.name).upsert({ ...p.t.newRow(p.other), [p.t.pk]: id }),
        );
      }
    },
  },
  {
    title: "delete B's rows by id: nothing deleted",
    run: (p) =>
      sendWrite(p, "delete of B's rows by id", false, () =>
        p.db.from(p.t.name).delete().in(p.t.pk, idsOf(p.t.name, p.other)),
      ),
  },
  {
    title: "delete filtered by B's client_id: nothing deleted",
    run: (p) =>
      sendWrite(p, "delete of B's rows by client_id", false, () =>
        p.db.from(p.t.name).delete().eq('client_id', p.other.id),
      ),
  },
];

/** The anon key alone (or a token of nobody): no tenant, no rows. `me`/`other` are just A and B here. */
const ANON_OPS: Op[] = [
  {
    title: 'select all: nothing',
    async run({ db, t, note }) {
      const res = await db.from(t.name).select('*');
      note(res);
      expect(rowsOf(res)).toEqual([]);
    },
  },
  {
    title: "select filtered by a client's id: nothing",
    async run({ db, t, me, other, note }) {
      for (const c of [me, other]) {
        const res = await db.from(t.name).select('*').eq('client_id', c.id);
        note(res);
        expect(rowsOf(res)).toEqual([]);
      }
    },
  },
  {
    title: 'insert rows tagged A and B: refused',
    async run(p) {
      for (const c of [p.me, p.other]) {
        await sendWrite(p, `insert tagged ${c.label}`, true, () => p.db.from(p.t.name).insert(p.t.newRow(c)));
      }
    },
  },
  {
    title: 'update all rows by id: refused',
    run: (p) =>
      sendWrite(p, 'update', false, () => p.db.from(p.t.name).update(p.t.touch).in(p.t.pk, idsOf(p.t.name))),
  },
  {
    title: 'upsert onto the leaf ids of A and B: refused',
    async run(p) {
      for (const c of [p.me, p.other]) {
        await sendWrite(p, `upsert onto ${c.label}'s leaf`, true, () =>
          p.db.from(p.t.name).upsert({ ...p.t.newRow(c), [p.t.pk]: c.leaf[p.t.name] }),
        );
      }
    },
  },
  {
    title: 'delete all rows by id: refused',
    run: (p) => sendWrite(p, 'delete', false, () => p.db.from(p.t.name).delete().in(p.t.pk, idsOf(p.t.name))),
  },
];

const SERVICE_OPS: Op[] = [
  {
    title: "select all: every row, both clients'",
    async run({ db, t, me, other, note }) {
      const res = await db.from(t.name).select(`${t.pk}, client_id`);
      note(res);
      expect(res.error).toBeNull();
      expect(ids(rowsOf(res), t.pk)).toEqual(idsOf(t.name));
      expect(new Set(rowsOf(res).map((r) => r.client_id))).toEqual(new Set([me.id, other.id]));
    },
  },
];

// ---------------------------------------------------------------------------------------------
// The RPCs

const QUERY_VECTOR = vectorLiteral(Array.from({ length: 1024 }, (_, i) => Math.sin(i + 1)));

interface RpcSpec {
  name: string;
  /** Arguments asking for `data`'s rows (its sidekick, its user), with p_client_id = `clientId`. */
  args(clientId: string | null, data: Tenant): Row;
  /** What the RPC returns for client c, computed as superuser. */
  expected(c: Tenant): Promise<unknown>;
  /** The response in the shape of `expected`. */
  normalize(data: unknown): unknown;
  /** What "nothing" looks like. */
  empty: unknown;
}

const idList = (data: unknown) => (Array.isArray(data) ? ids(data as Row[], 'id') : data);

const RPCS: RpcSpec[] = [
  {
    name: 'match_documents',
    args: (clientId, c) => ({
      p_client_id: clientId,
      p_query_embedding: QUERY_VECTOR,
      p_agent_slug: c.agentSlug,
      p_match_threshold: -2,
      p_match_count: 1000,
    }),
    async expected(c) {
      const rows = await stack.pool.sql.query<Row>(
        `SELECT dc.id::text AS id FROM document_chunks dc
           JOIN agent_documents ad ON ad.client_id = dc.client_id AND ad.document_id = dc.document_id AND ad.enabled
           JOIN agents a ON a.client_id = ad.client_id AND a.id = ad.agent_id
          WHERE dc.client_id = $1 AND a.slug = $2 AND dc.embeddings IS NOT NULL`,
        [c.id, c.agentSlug],
      );
      return ids(rows, 'id');
    },
    normalize: idList,
    empty: [],
  },
  {
    name: 'match_conversation_transcripts_secure',
    args: (clientId, c) => ({
      p_client_id: clientId,
      p_query_embedding: QUERY_VECTOR,
      p_agent_slug: c.agentSlug,
      p_user_id: userId,
      p_match_threshold: -2,
      p_match_count: 1000,
      p_exclude_conversation_id: null,
    }),
    async expected(c) {
      const rows = await stack.pool.sql.query<Row>(
        `SELECT ct.id::text AS id FROM conversation_transcripts ct
           JOIN agents a ON a.client_id = ct.client_id AND a.id = ct.agent_id
          WHERE ct.client_id = $1 AND a.slug = $2 AND ct.user_id = $3 AND ct.embeddings IS NOT NULL`,
        [c.id, c.agentSlug, userId],
      );
      return ids(rows, 'id');
    },
    normalize: idList,
    empty: [],
  },
  {
    // Documents and recall in one round trip: exactly the two RPCs above, together.
    name: 'turn_context',
    args: (clientId, c) => ({
      p_client_id: clientId,
      p_query_embedding: QUERY_VECTOR,
      p_agent_slug: c.agentSlug,
      p_user_id: userId,
      p_match_threshold: -2,
      p_match_count: 1000,
      p_recall_count: 1000,
      p_exclude_conversation_id: null,
    }),
    async expected(c) {
      const [documents, recall] = await Promise.all(
        RPCS.filter(
          (r) => r.name === 'match_documents' || r.name === 'match_conversation_transcripts_secure',
        ).map((r) => r.expected(c)),
      );
      return { documents, recall };
    },
    normalize: (data) => {
      const d = data as { documents?: Row[]; recall?: Row[] } | null;
      return d ? { documents: idList(d.documents ?? []), recall: idList(d.recall ?? []) } : d;
    },
    empty: { documents: [], recall: [] },
  },
  {
    name: 'get_user_overview_for_agent',
    args: (clientId, c) => ({ p_client_id: clientId, p_user_id: userId, p_agent_id: c.agentId }),
    async expected(c) {
      const [row] = await stack.pool.sql.query<{ sections: unknown }>(
        'SELECT sections FROM user_overviews WHERE client_id = $1 AND user_id = $2 AND agent_id = $3',
        [c.id, userId, c.agentId],
      );
      return row!.sections;
    },
    normalize: (data) => data,
    empty: {},
  },
  {
    // Per-turn latency percentiles of the client's replies (the leaf reply carries a latency).
    name: 'turn_latency_report',
    args: (clientId, c) => ({
      p_client_id: clientId,
      p_from: '2000-01-01T00:00:00Z',
      p_to: '2100-01-01T00:00:00Z',
      p_agent_slug: c.agentSlug,
    }),
    async expected(c) {
      const rows = await stack.pool.sql.query<{ k: string }>(
        `SELECT a.slug || ' ' || replace(e.key, '_ms', '') || ' ' || count(*) AS k
           FROM conversation_transcripts ct
           JOIN agents a ON a.client_id = ct.client_id AND a.id = ct.agent_id
          CROSS JOIN jsonb_each(ct.metadata -> 'latency') e
          WHERE ct.client_id = $1 AND a.slug = $2 AND ct.role = 'assistant' AND jsonb_typeof(e.value) = 'number'
          GROUP BY a.slug, e.key ORDER BY 1`,
        [c.id, c.agentSlug],
      );
      return rows.map((r) => r.k);
    },
    normalize: (data) =>
      Array.isArray(data)
        ? (data as Array<{ agent_slug: string; component: string; turns: number }>)
            .map((r) => `${r.agent_slug} ${r.component} ${r.turns}`)
            .sort()
        : data,
    empty: [],
  },
  {
    // Read-only here (no claim): the sidekick, the overview and the conversation's standing.
    name: 'begin_session',
    args: (clientId, c) => ({
      p_client_id: clientId,
      p_agent_slug: c.agentSlug,
      p_max_sidekicks: 1,
      p_user_id: userId,
      p_conversation_id: c.conversationId,
      p_claim_conversation: false,
    }),
    async expected(c) {
      const [row] = await stack.pool.sql.query<{ sections: unknown }>(
        'SELECT sections FROM user_overviews WHERE client_id = $1 AND user_id = $2 AND agent_id = $3',
        [c.id, userId, c.agentId],
      );
      return { sidekick: c.agentId, overview: row!.sections, conversation: 'continued' };
    },
    normalize: (data) => {
      const d = data as {
        sidekick: { id: string } | null;
        overview?: unknown;
        conversation?: { status: string };
      };
      return d?.sidekick
        ? { sidekick: d.sidekick.id, overview: d.overview, conversation: d.conversation?.status }
        : null;
    },
    empty: null,
  },
];

interface RpcProbe {
  db: SupabaseClient;
  rpc: RpcSpec;
  me: Tenant;
  other: Tenant;
  note(res: Res): void;
}

interface RpcOp {
  title: string;
  run(p: RpcProbe): Promise<void>;
}

async function expectOwnData(p: RpcProbe, clientId: string, c: Tenant): Promise<void> {
  const res = await p.db.rpc(p.rpc.name, p.rpc.args(clientId, c));
  p.note(res);
  expect(res.error, describeRes(res)).toBeNull();
  const expected = await p.rpc.expected(c);
  expect(expected).not.toEqual(p.rpc.empty);
  expect(p.rpc.normalize(res.data)).toEqual(expected);
}

async function expectRpcRefused(p: RpcProbe, clientId: string | null, c: Tenant): Promise<void> {
  const res = await p.db.rpc(p.rpc.name, p.rpc.args(clientId, c));
  p.note(res);
  expect(res.error, `${p.rpc.name} answered: ${describeRes(res)}`).not.toBeNull();
  expect(res.data).toBeNull();
}

const TENANT_RPC_OPS: RpcOp[] = [
  { title: 'p_client_id = A: exactly its own data', run: (p) => expectOwnData(p, p.me.id, p.me) },
  { title: 'p_client_id = B: refused', run: (p) => expectRpcRefused(p, p.other.id, p.other) },
  { title: 'p_client_id = null: refused', run: (p) => expectRpcRefused(p, null, p.other) },
  {
    title: "p_client_id = A with B's sidekick and user data: nothing",
    async run(p) {
      const res = await p.db.rpc(p.rpc.name, p.rpc.args(p.me.id, p.other));
      p.note(res);
      expect(res.error, describeRes(res)).toBeNull();
      expect(p.rpc.normalize(res.data)).toEqual(p.rpc.empty);
    },
  },
];

const ANON_RPC_OPS: RpcOp[] = [
  { title: 'p_client_id = A: refused', run: (p) => expectRpcRefused(p, p.me.id, p.me) },
  { title: 'p_client_id = B: refused', run: (p) => expectRpcRefused(p, p.other.id, p.other) },
];

const SERVICE_RPC_OPS: RpcOp[] = [
  { title: "p_client_id = A: A's data", run: (p) => expectOwnData(p, p.me.id, p.me) },
  { title: "p_client_id = B: B's data", run: (p) => expectOwnData(p, p.other.id, p.other) },
];

// ---------------------------------------------------------------------------------------------
// The matrix, one describe per credential kind

/** Runs `ops` on every table and `rpcOps` on every RPC with the client `db()` builds. */
function matrix(credential: string, db: () => SupabaseClient, ops: Op[], rpcOps: RpcOp[]): void {
  describe.each(TABLES)('$name', (t) => {
    it.each(ops)('$title', async (op) => {
      await op.run({ db: db(), t, me: A, other: B, note: (res) => note(`${credential} | ${op.title}`, res) });
      await expectPoolUnchanged();
    });
  });
  describe.each(RPCS)('rpc $name', (rpc) => {
    it.each(rpcOps)('$title', async (op) => {
      await op.run({
        db: db(),
        rpc,
        me: A,
        other: B,
        note: (res) => note(`${credential} | rpc ${op.title}`, res),
      });
      await expectPoolUnchanged();
    });
  });
}

interface TokenKind {
  alg: 'HS256' | 'ES256';
  signing(): TenantSigningKey;
}

const TOKEN_KINDS: TokenKind[] = [
  { alg: 'HS256', signing: () => ({ alg: 'HS256', secret: stack.pool.jwtSecret }) },
  {
    alg: 'ES256',
    signing: () => {
      const privateJwk = stack.pool.keys.es256PrivateJwk;
      return { alg: 'ES256', privateJwk, kid: String(privateJwk.kid) };
    },
  },
];

describe.each(TOKEN_KINDS)("A's tenant token ($alg): walled off from B", (kind) => {
  let a: SupabaseClient;
  beforeAll(async () => {
    const token = await new TenantTokenMinter(kind.signing(), { ttlSeconds: 300 }).tokenFor(A.id);
    a = poolClient(stack.pool.anonKey, token);
  });
  matrix(`tenant ${kind.alg}`, () => a, TENANT_OPS, TENANT_RPC_OPS);
});

describe('the anon key alone (no bearer token): nothing readable, nothing writable', () => {
  let anon: SupabaseClient;
  beforeAll(() => {
    anon = poolClient(stack.pool.anonKey, null);
  });
  matrix('anon', () => anon, ANON_OPS, ANON_RPC_OPS);
});

describe('the service role key: everything readable', () => {
  let service: SupabaseClient;
  beforeAll(() => {
    service = poolClient(stack.pool.serviceRoleKey, stack.pool.serviceRoleKey);
  });
  matrix('service_role', () => service, SERVICE_OPS, SERVICE_RPC_OPS);
});

describe('an authenticated token without a client_id claim: no tenant, no rows', () => {
  let db: SupabaseClient;
  beforeAll(async () => {
    const token = await new SignJWT({ role: 'authenticated' })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(A.id)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(stack.pool.jwtSecret));
    db = poolClient(stack.pool.anonKey, token);
  });
  // The same probes as the anon key: the role is `authenticated`, but it is nobody's tenant.
  matrix('no client_id claim', () => db, ANON_OPS, ANON_RPC_OPS);
});

// ---------------------------------------------------------------------------------------------
// Forged tokens: PostgREST rejects them (401) before any SQL runs

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

interface Forged {
  title: string;
  token(): Promise<string>;
}

const FORGED: Forged[] = [
  {
    title: 'HS256 signed with a wrong secret',
    token: () =>
      new TenantTokenMinter(
        { alg: 'HS256', secret: randomBytes(32).toString('base64url') },
        { ttlSeconds: 300 },
      ).tokenFor(A.id),
  },
  {
    title: "ES256 signed with another key under the pool's kid",
    async token() {
      const kid = String(stack.pool.keys.es256PrivateJwk.kid);
      const { privateKey } = await generateKeyPair('ES256', { extractable: true });
      const privateJwk = { ...(await exportJWK(privateKey)), kid };
      return new TenantTokenMinter({ alg: 'ES256', privateJwk, kid }, { ttlSeconds: 300 }).tokenFor(A.id);
    },
  },
  {
    title: 'HS256 with the right secret, expired an hour ago',
    token: () =>
      new TenantTokenMinter(
        { alg: 'HS256', secret: stack.pool.jwtSecret },
        { ttlSeconds: 300, now: () => Date.now() - 3_600_000 },
      ).tokenFor(A.id),
  },
  {
    title: 'unsigned (alg none)',
    token: async () =>
      `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({
        role: 'authenticated',
        client_id: B.id,
        exp: Math.floor(Date.now() / 1000) + 300,
      })}.`,
  },
  {
    title: 'service_role claimed, signed with a wrong secret',
    token: () =>
      new SignJWT({ role: 'service_role' })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setExpirationTime('5m')
        .sign(randomBytes(32)),
  },
];

describe('forged or expired tokens: rejected with 401', () => {
  it.each(FORGED)('$title', async (f) => {
    const db = poolClient(stack.pool.anonKey, await f.token());
    const key = `forged | ${f.title}`;
    const requests: Array<() => PromiseLike<Res>> = [
      () => db.from('documents').select('*'),
      () => db.from('documents').select('*').eq('client_id', B.id),
      () => db.from('documents').insert(TABLES[1]!.newRow(B)).select(),
      () => db.from('documents').update({ content: 'pwned' }).eq('client_id', B.id).select(),
      () => db.from('documents').delete().eq('client_id', B.id).select(),
      () => db.rpc('get_user_overview_for_agent', RPCS[2]!.args(B.id, B)),
    ];
    for (const send of requests) {
      const res = await send();
      note(key, res);
      expect(res.status, describeRes(res)).toBe(401);
      expect(res.data).toBeNull();
    }
    await expectPoolUnchanged();
  });
});

// ---------------------------------------------------------------------------------------------
// Controls: the refused payloads were valid, so isolation (not a constraint) refused them

describe('controls: what A was refused, the owner could do', () => {
  let b: SupabaseClient;
  beforeAll(async () => {
    const token = await new TenantTokenMinter(TOKEN_KINDS[0]!.signing(), { ttlSeconds: 300 }).tokenFor(B.id);
    b = poolClient(stack.pool.anonKey, token, 'controls');
  });

  it.each(TENANT_TABLES)('B inserts the row A tried to tag B, and deletes it ($name)', async (t) => {
    const ins = await b.from(t.name).insert(t.newRow(B)).select(`${t.pk}, client_id`);
    expect(ins.error, describeRes(ins)).toBeNull();
    expect(rowsOf(ins)).toEqual([{ [t.pk]: expect.any(String), client_id: B.id }]);
    const del = await b
      .from(t.name)
      .delete()
      .eq(t.pk, String(rowsOf(ins)[0]![t.pk]))
      .select(t.pk);
    expect(del.error, describeRes(del)).toBeNull();
    expect(rowsOf(del)).toHaveLength(1);
    await expectPoolUnchanged();
  });

  it.each(TENANT_TABLES)(
    'the move A tried passes every constraint (as superuser, rolled back) ($name)',
    async (t) => {
      // The exact patch of the move probe, applied as superuser (no RLS, no fence) in a statement that
      // then raises, so it is rolled back: only the tenant's identity made the difference.
      const patch = JSON.stringify(t.newRow(B)).replaceAll("'", "''");
      const cols = Object.keys(t.newRow(B)).join(', ');
      const err = await stack.pool.sql
        .exec(
          `DO $ctl$
           DECLARE n integer;
           BEGIN
             UPDATE ${t.name} SET (${cols}) = (SELECT ${cols} FROM jsonb_populate_record(NULL::${t.name}, '${patch}'::jsonb))
              WHERE ${t.pk} = '${A.leaf[t.name]}';
             GET DIAGNOSTICS n = ROW_COUNT;
             RAISE EXCEPTION 'control rolled back: % row(s) moved', n;
           END $ctl$`,
        )
        .then(
          () => new Error('the control statement did not raise'),
          (e: unknown) => e as Error,
        );
      expect(err.message).toContain('control rolled back: 1 row(s) moved');
      counts.controls++;
      await expectPoolUnchanged();
    },
  );
});

// ---------------------------------------------------------------------------------------------
// What a refusal tells A about B

describe('what a refusal tells A about B', () => {
  // A regression probe for a hole this matrix found: the sidekick-limit trigger is SECURITY DEFINER
  // (it must lock and count rows a tenant cannot see), and it used to run before the write fence
  // and RLS, so an agent tagged B was refused with "sidekick limit reached: client B may have at
  // most 1 sidekick(s)" where an unknown client got "not registered": A learnt that B exists, its
  // limit and that it is at it. A refusal must read the same whoever the other client is.
  const ghost = '9f9f9f9f-0000-4000-8000-00000000dead';
  const shape = (res: Res) => ({
    status: res.status,
    code: res.error?.code,
    message: res.error?.message.replaceAll(B.id, '<client>').replaceAll(ghost, '<client>'),
  });
  /** B's pool_clients row without updated_at, which the probe's own limit toggle (as superuser) may bump. */
  const bLimitRow = async () =>
    (
      await stack.pool.sql.query<{ r: unknown }>(
        `SELECT to_jsonb(x) - 'updated_at' AS r FROM pool_clients x WHERE client_id = $1`,
        [B.id],
      )
    )[0]!.r;

  it('an agent tagged or moved to B is refused exactly as for a client that does not exist', async () => {
    const token = await new TenantTokenMinter(TOKEN_KINDS[0]!.signing(), { ttlSeconds: 300 }).tokenFor(A.id);
    const a = poolClient(stack.pool.anonKey, token);
    const before = await bLimitRow();
    const key = 'tenant HS256 | oracle: agent tagged / moved to B (at its limit) vs an unknown client';
    // B at its limit, as the seed has it (the rest of this file lifts the limit).
    await stack.pool.sql.query('UPDATE pool_clients SET max_sidekicks = 1 WHERE client_id = $1', [B.id]);
    const results: Array<[Res, Res]> = [];
    try {
      const insert = (client: string) =>
        a.from('agents').insert({ client_id: client, name: 'probe', slug: `probe-${short()}` });
      const move = (client: string) => a.from('agents').update({ client_id: client }).eq('id', A.leaf.agents);
      results.push([await insert(B.id), await insert(ghost)]);
      results.push([await move(B.id), await move(ghost)]);
    } finally {
      await stack.pool.sql.query('UPDATE pool_clients SET max_sidekicks = NULL WHERE client_id = $1', [B.id]);
      // The toggle may have bumped updated_at of B's limit row: take that one row's hash anew, once
      // the rest of the row is checked to be what it was.
      expect(await bLimitRow()).toEqual(before);
      const [row] = await stack.pool.sql.query<{ h: string }>(
        'SELECT md5(x::text) AS h FROM pool_clients x WHERE client_id = $1',
        [B.id],
      );
      baseline = { ...baseline, [`pool_clients ${B.id} ${B.id}`]: row!.h };
    }
    await expectPoolUnchanged();
    for (const [taggedB, taggedGhost] of results) {
      note(key, taggedB);
      expect(taggedB.error, describeRes(taggedB)).not.toBeNull();
      expect(shape(taggedB)).toEqual(shape(taggedGhost));
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The retention sweep's RPC (migrations/shared_pool/007): deletes, so it has its own probes

describe('sweep_expired: a tenant sweeps its own rows only', () => {
  const FUTURE = '2999-01-01T00:00:00Z';
  const PAST = '2000-01-01T00:00:00Z';
  const args = (clientId: string | null, before: string, dryRun: boolean) => ({
    p_client_id: clientId,
    p_before: before,
    p_limit: 10_000,
    p_dry_run: dryRun,
  });
  /** What a dry run before FUTURE counts for c, as superuser. */
  const countsOf = async (c: Tenant) => {
    const [r] = await stack.pool.sql.query<{ t: number; c: number }>(
      `SELECT (SELECT count(*) FROM conversation_transcripts WHERE client_id = $1)::int AS t,
              (SELECT count(*) FROM conversations WHERE client_id = $1)::int AS c`,
      [c.id],
    );
    return { transcripts: r!.t, conversations: r!.c, more: false };
  };
  let a: SupabaseClient;
  let anon: SupabaseClient;
  let service: SupabaseClient;
  beforeAll(async () => {
    a = poolClient(
      stack.pool.anonKey,
      await new TenantTokenMinter(TOKEN_KINDS[0]!.signing(), { ttlSeconds: 300 }).tokenFor(A.id),
    );
    anon = poolClient(stack.pool.anonKey, null);
    service = poolClient(stack.pool.serviceRoleKey, stack.pool.serviceRoleKey);
  });

  it.each([
    ['B', () => B.id],
    ['null', () => null],
  ])("A's token naming p_client_id = %s is refused, dry or not", async (_label, target) => {
    for (const dry of [true, false]) {
      const res = await a.rpc('sweep_expired', args(target(), FUTURE, dry));
      note('tenant HS256 | rpc sweep_expired naming another client', res);
      expect(res.error, describeRes(res)).not.toBeNull();
      expect(res.data).toBeNull();
      await expectPoolUnchanged();
    }
  });

  it('the anon key and a token without a client_id claim are refused', async () => {
    const noClaim = poolClient(
      stack.pool.anonKey,
      await new SignJWT({ role: 'authenticated' })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setExpirationTime('5m')
        .sign(new TextEncoder().encode(stack.pool.jwtSecret)),
    );
    for (const db of [anon, noClaim]) {
      for (const target of [A.id, B.id]) {
        const res = await db.rpc('sweep_expired', args(target, FUTURE, false));
        note('anon / no claim | rpc sweep_expired', res);
        expect(res.error, describeRes(res)).not.toBeNull();
        await expectPoolUnchanged();
      }
    }
  });

  it("A's dry run counts exactly its own rows; the service role may count anyone's", async () => {
    const mine = await a.rpc('sweep_expired', args(A.id, FUTURE, true));
    note('tenant HS256 | rpc sweep_expired own dry run', mine);
    expect(mine.error, describeRes(mine)).toBeNull();
    expect(mine.data).toEqual(await countsOf(A));
    const theirs = await service.rpc('sweep_expired', args(B.id, FUTURE, true));
    note('service_role | rpc sweep_expired dry run of B', theirs);
    expect(theirs.data).toEqual(await countsOf(B));
    await expectPoolUnchanged();
  });

  it('A sweeping with nothing expired deletes nothing; sweeping everything of its own leaves B whole', async () => {
    const none = await a.rpc('sweep_expired', args(A.id, PAST, false));
    expect(none.data).toEqual({ transcripts: 0, conversations: 0, more: false });
    await expectPoolUnchanged();
    const before = await snapshot();
    // Last in this file: it deletes A's turns and conversations.
    const all = await a.rpc('sweep_expired', args(A.id, FUTURE, false));
    note('tenant HS256 | rpc sweep_expired own, everything', all);
    expect(all.error, describeRes(all)).toBeNull();
    const after = await snapshot();
    expect(ofClient(after, B)).toEqual(ofClient(before, B));
    const left = await countsOf(A);
    expect([left.transcripts, left.conversations]).toEqual([0, 0]);
    // Everything else of A (sidekicks, documents, overviews) is still there.
    const untouched = (s: Snapshot) =>
      Object.fromEntries(Object.entries(ofClient(s, A)).filter(([k]) => !k.startsWith('conversation')));
    expect(untouched(after)).toEqual(untouched(before));
    baseline = after;
  });
});
