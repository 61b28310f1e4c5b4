import type { Logger } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ContextManager,
  type RetrievalSettings,
  type TurnContext,
  type TurnQuery,
} from '../src/context/context-manager.js';
import { OpenAIEmbedder, vectorLiteral } from '../src/context/embeddings.js';
import { HashingEmbedder } from '../src/context/hashing-embedder.js';
import { formatUserOverview, readUserOverview } from '../src/context/user-overview.js';
import { createRootLogger } from '../src/log.js';
import type { DemoClient } from '../src/stack/seed.js';
import type { LocalStack } from '../src/stack/stack.js';
import { TENANT_TABLES, type TenantQuery } from '../src/tenancy/tenant-query.js';
import { asClientId } from '../src/tenancy/types.js';
import { captureLogs } from './support/logs.js';
import { type OpenAIServer, startOpenAIServer } from './support/openai-server.js';
import { connectionsTo, startTestStack } from './support/stack.js';

/*
 * ContextManager against the seeded local stack (PGlite by default, the real server with
 * STACK_POSTGRES_URL): real PostgREST, real RLS, tenant tokens, and the OpenAI embeddings API
 * played by the loopback server, whose vectors match the ones the seed stored.
 */

let stack: LocalStack;
let openai: OpenAIServer;
let embedder: OpenAIEmbedder;
let acme: DemoClient;
let bloom: DemoClient;
let nimbus: DemoClient;
let userId: string;
let dbA: TenantQuery;
let dbB: TenantQuery;
let dbC: TenantQuery;

/** Another end user of Acme Bikes who said nearly the same thing as the demo user. */
const OTHER_USER = '0d0d0d0d-0000-4000-8000-0000000000b2';
const OTHER_CONVERSATION = 'a1a1a1a1-0000-4000-8000-0000000000c9';
const OTHER_SENTENCE = 'My bike is a 2021 Trek Domane and the rear brake squeaks loudly.';

const DEFAULTS: RetrievalSettings = { ragEnabled: true, matchCount: 5, matchThreshold: 0.2, recallCount: 3 };

const manager = (fetchImpl?: typeof fetch) => connectionsTo(stack, { fetch: fetchImpl });
const capture = () => captureLogs();

const silent: Logger = createRootLogger({ level: 'silent' });

function contextFor(
  db: TenantQuery | (() => Promise<TenantQuery>),
  opts: { settings?: Partial<RetrievalSettings>; lookupMs?: number; maxChars?: number; log?: Logger } = {},
) {
  return new ContextManager({
    db,
    embedder,
    settings: { ...DEFAULTS, ...opts.settings },
    budgets: { lookupMs: opts.lookupMs ?? 5000, maxChars: opts.maxChars ?? 6000 },
    log: opts.log ?? silent,
  });
}

function turn(client: DemoClient, query: string, extra: Partial<TurnQuery> = {}): TurnQuery {
  return { query, agentSlug: client.agentSlug, userId, ...extra };
}

const contents = (ctx: TurnContext) => [
  ...ctx.documents.map((d) => d.content),
  ...ctx.recall.map((r) => r.content),
];

beforeAll(async () => {
  [stack, openai] = await Promise.all([startTestStack(), startOpenAIServer()]);
  embedder = new OpenAIEmbedder({ apiKey: 'sk-test', baseURL: openai.baseURL });
  const demo = stack.demo!;
  [acme, bloom] = demo.adventurers as [DemoClient, DemoClient];
  nimbus = demo.champion;
  userId = demo.userId;
  const m = manager();
  [dbA, dbB, dbC] = (
    await Promise.all([acme, bloom, nimbus].map((c) => m.forClient(asClientId(c.clientId))))
  ).map((c) => c.db) as [TenantQuery, TenantQuery, TenantQuery];

  // A second Acme user who told the sidekick almost the same thing, in another conversation.
  const vector = new HashingEmbedder().embedOne(OTHER_SENTENCE);
  await stack.pool.sql.query(
    'INSERT INTO conversations (id, client_id, agent_id, user_id, title) VALUES ($1, $2, $3, $4, $5)',
    [OTHER_CONVERSATION, acme.clientId, acme.agentId, OTHER_USER, 'Another user'],
  );
  await stack.pool.sql.query(
    `INSERT INTO conversation_transcripts (client_id, conversation_id, agent_id, user_id, role, content, turn_id, embeddings)
     VALUES ($1, $2, $3, $4, 'user', $5, gen_random_uuid(), $6::vector)`,
    [acme.clientId, OTHER_CONVERSATION, acme.agentId, OTHER_USER, OTHER_SENTENCE, vectorLiteral(vector)],
  );
});

afterAll(async () => {
  await Promise.all([stack?.stop(), openai?.close()]);
});

beforeEach(() => {
  openai.reset();
  for (const p of [stack.platform, stack.pool, stack.dedicated]) p.gateway.reset();
});

describe('retrieval (RAG) returns the client’s own passages', () => {
  it('a tyre question gets the tyre pressure passages, titled, and nothing of another client', async () => {
    const ctx = await contextFor(dbA).retrieve(turn(acme, 'what tyre pressure for my road bike?'));
    expect(ctx.outcomes).toEqual({ documents: 'ok', recall: 'ok' });
    expect(ctx.documents.length).toBeGreaterThan(0);
    expect(ctx.documents.every((d) => d.title === 'Tyre pressure guide')).toBe(true);
    expect(ctx.documents.map((d) => d.content).join(' ')).toContain('Road bike tyres run at 80 to 100 psi');
    expect(ctx.documentTitles).toEqual(['Tyre pressure guide']);
    expect(ctx.text).toContain('## Relevant passages from the sidekick documents');
    expect(ctx.text).toContain('[Tyre pressure guide] Road bike tyres run at 80 to 100 psi');
  });

  it('even with no threshold, A gets exactly its own four chunks and none of B’s', async () => {
    const ctx = await contextFor(dbA, { settings: { matchThreshold: -1, matchCount: 100 } }).retrieve(
      turn(acme, 'water the monstera when the soil is dry', { userId: undefined }),
    );
    const own = await stack.pool.sql.query<{ id: string }>(
      'SELECT id::text FROM document_chunks WHERE client_id = $1 ORDER BY id',
      [acme.clientId],
    );
    expect(own).toHaveLength(4);
    expect(ctx.documents.map((d) => d.id).sort()).toEqual(own.map((r) => r.id));
    expect(new Set(ctx.documentTitles)).toEqual(new Set(['Tyre pressure guide', 'Chain care']));
    expect(ctx.text).not.toMatch(/monstera|tomato|Succulents/i);
  });

  it('a question only B’s documents answer finds nothing for A, and the same for B the other way round', async () => {
    const a = await contextFor(dbA).retrieve(turn(acme, 'how often should I water a monstera in summer?'));
    expect(a.outcomes.documents).toBe('ok');
    expect(a.documents).toEqual([]);
    expect(a.text).not.toMatch(/monstera/i);

    const b = await contextFor(dbB).retrieve(turn(bloom, 'what tyre pressure for my road bike?'));
    expect(b.outcomes.documents).toBe('ok');
    expect(b.documents).toEqual([]);
    expect(b.text).not.toMatch(/psi|tyre|Trek/i);
    // B's own question does find B's passage (the control).
    const own = await contextFor(dbB).retrieve(turn(bloom, 'how often should I water a monstera in summer?'));
    expect(own.documentTitles).toEqual(['Watering houseplants']);
  });

  it('a champion retrieves from its dedicated project; nothing goes to the pool', async () => {
    const ctx = await contextFor(dbC).retrieve(turn(nimbus, 'how much is a hotel per night in Europe?'));
    expect(ctx.outcomes).toEqual({ documents: 'ok', recall: 'ok' });
    expect(ctx.documentTitles).toContain('Travel policy');
    expect(ctx.text).toContain('180 euros per night');
    expect(stack.dedicated.gateway.requests.map((r) => r.path)).toEqual(['/rpc/turn_context']);
    expect(stack.pool.gateway.count).toBe(0);
  });
});

describe('recall of earlier conversations', () => {
  const brake = 'why does my rear brake squeak?';

  it('finds what the same user said in an earlier conversation', async () => {
    const ctx = await contextFor(dbA).retrieve(turn(acme, brake));
    expect(ctx.outcomes.recall).toBe('ok');
    expect(ctx.recall.map((r) => r.content)).toContain(
      'My bike is a 2019 Trek Domane and the rear brake squeaks.',
    );
    expect(ctx.recall.every((r) => r.conversation_id === acme.conversationId)).toBe(true);
    expect(ctx.text).toContain('## What this user said in earlier conversations');
    expect(ctx.text).toContain('(user, ');
    expect(ctx.text).toContain('2019 Trek Domane and the rear brake squeaks.');
  });

  it('leaves out the conversation the query belongs to', async () => {
    const ctx = await contextFor(dbA).retrieve(turn(acme, brake, { conversationId: acme.conversationId }));
    expect(ctx.outcomes.recall).toBe('ok');
    expect(ctx.recall).toEqual([]);
    expect(ctx.text).not.toContain('What this user said in earlier conversations');
  });

  it('never returns another user’s turns of the same client', async () => {
    const mine = await contextFor(dbA).retrieve(turn(acme, brake));
    expect(contents(mine)).not.toContain(OTHER_SENTENCE);
    expect(mine.text).not.toContain('2021 Trek');
    // The other user's sentence is there to be found, by that user only (the control).
    const theirs = await contextFor(dbA).retrieve(turn(acme, brake, { userId: OTHER_USER }));
    expect(theirs.recall.map((r) => r.content)).toEqual([OTHER_SENTENCE]);
    expect(theirs.text).not.toContain('2019 Trek');
  });

  it('never returns what the same user told another client’s sidekick', async () => {
    const fig = 'where do I keep my fiddle leaf fig?';
    const a = await contextFor(dbA).retrieve(turn(acme, fig));
    expect(a.recall).toEqual([]);
    expect(a.text).not.toMatch(/fiddle/i);
    const b = await contextFor(dbB).retrieve(turn(bloom, fig));
    expect(b.recall.map((r) => r.content)).toContain(
      'I keep my fiddle leaf fig in the north facing bathroom window.',
    );
    // And the bike never reaches Bloom.
    const bBrake = await contextFor(dbB).retrieve(turn(bloom, brake));
    expect(bBrake.recall).toEqual([]);
    expect(bBrake.text).not.toMatch(/Trek|brake/i);
  });
});

describe('the user overview', () => {
  it('is read once per session, for this sidekick and user only, and never in a turn', async () => {
    stack.pool.gateway.reset();
    const overview = await readUserOverview(dbA, { userId, sidekickId: acme.agentId }, 2000, silent);
    expect(overview).toEqual({
      identity: 'Road cyclist',
      bike: '2019 Trek Domane',
      goals: 'Ride a century this summer',
    });
    expect(formatUserOverview(overview)).toContain('- bike: 2019 Trek Domane');
    // Another client's sidekick id through A's connection finds nothing of B's.
    expect(await readUserOverview(dbA, { userId, sidekickId: bloom.agentId }, 2000, silent)).toEqual({});
    const ctx = await contextFor(dbA).retrieve(turn(acme, 'what should I ride this weekend?'));
    expect(ctx.text).not.toContain('- bike: 2019 Trek Domane');
    expect(
      stack.pool.gateway.requests.filter((r) => r.path === '/rpc/get_user_overview_for_agent'),
    ).toHaveLength(2);
  });

  it('an unknown user has none, and without a user there is no recall lookup at all', async () => {
    const stranger = '0d0d0d0d-0000-4000-8000-0000000000ff';
    expect(await readUserOverview(dbA, { userId: stranger, sidekickId: acme.agentId }, 2000, silent)).toEqual(
      {},
    );
    expect(formatUserOverview({})).toBe('');
    const unknown = await contextFor(dbA).retrieve(turn(acme, 'tyre pressure', { userId: stranger }));
    expect(unknown.recall).toEqual([]);

    stack.pool.gateway.reset();
    const anonymous = await contextFor(dbA).retrieve(turn(acme, 'tyre pressure', { userId: undefined }));
    expect(anonymous.outcomes).toEqual({ documents: 'ok', recall: 'skipped' });
    expect(anonymous.recall).toEqual([]);
    expect(stack.pool.gateway.requests.map((r) => r.path)).toEqual(['/rpc/turn_context']);
  });
});

describe('cost of one turn', () => {
  it('one embedding request and exactly 1 database round trip (documents and recall together) per retrieve()', async () => {
    const cm = contextFor(dbA);
    const queries = [
      'what tyre pressure for my road bike?',
      'why does my rear brake squeak?',
      'how often should I oil the chain?',
      'what should I ride this weekend?',
      'hello',
    ];
    for (const [i, q] of queries.entries()) {
      const ctx = await cm.retrieve(turn(acme, q));
      expect(ctx.outcomes).toEqual({ documents: 'ok', recall: 'ok' });
      expect(openai.embeddingRequests()).toHaveLength(i + 1);
      expect(stack.pool.gateway.count).toBe(i + 1);
      // The vector comes back with the context, for the transcript store to keep.
      expect(ctx.embedding).toEqual(new HashingEmbedder().embedOne(q));
    }
    expect(new Set(stack.pool.gateway.requests.map((r) => r.path))).toEqual(new Set(['/rpc/turn_context']));
    // The one embedding carries the turn's text, once.
    expect(openai.embeddingRequests()[0]!.body.input).toEqual(['what tyre pressure for my road bike?']);
    // Every round trip carried A's tenant token, never the service key; nothing reached the platform.
    expect(
      stack.pool.gateway.requests.every((r) => r.bearerClientId === acme.clientId && !r.usedServiceKey),
    ).toBe(true);
    expect(stack.platform.gateway.count).toBe(0);
  });

  it('RAG off: no documents asked for, one round trip', async () => {
    const ctx = await contextFor(dbA, { settings: { ragEnabled: false } }).retrieve(
      turn(acme, 'what tyre pressure for my road bike?'),
    );
    expect(ctx.outcomes).toEqual({ documents: 'skipped', recall: 'ok' });
    expect(ctx.documents).toEqual([]);
    expect(ctx.documentTitles).toEqual([]);
    expect(stack.pool.gateway.requests.map((r) => r.path)).toEqual(['/rpc/turn_context']);
    expect(openai.embeddingRequests()).toHaveLength(1);
  });

  it('a dedicated project without turn_context (an older schema): the two RPCs, the same context, said once', async () => {
    const signature = 'turn_context(vector, text, uuid, float8, integer, integer, uuid)';
    const before = await contextFor(dbC).retrieve(turn(nimbus, 'how much is a hotel per night in Europe?'));
    const [{ def }] = (await stack.dedicated.sql.query<{ def: string }>(
      `SELECT pg_get_functiondef('${signature}'::regprocedure) AS def`,
    )) as [{ def: string }];
    await stack.dedicated.sql.exec(`DROP FUNCTION ${signature}`);
    await stack.dedicated.postgrest.reloadSchema();
    try {
      const { log, records } = capture();
      const cm = contextFor(dbC, { log });
      for (let i = 0; i < 2; i++) {
        stack.dedicated.gateway.reset();
        const ctx = await cm.retrieve(turn(nimbus, 'how much is a hotel per night in Europe?'));
        expect(ctx.outcomes).toEqual({ documents: 'ok', recall: 'ok' });
        expect(ctx.text).toBe(before.text);
        const paths = stack.dedicated.gateway.requests.map((r) => r.path).sort();
        // The first turn learns the function is missing (one refused call); later turns go straight to the two.
        expect(paths).toEqual(
          [
            ...(i === 0 ? ['/rpc/turn_context'] : []),
            '/rpc/match_conversation_transcripts_secure',
            '/rpc/match_documents',
          ].sort(),
        );
      }
      expect(records().filter((r) => String(r.msg).includes('predates migration 005'))).toHaveLength(1);
    } finally {
      await stack.dedicated.sql.exec(`${def};\nGRANT EXECUTE ON FUNCTION ${signature} TO service_role`);
      await stack.dedicated.postgrest.reloadSchema();
    }
  });

  it('RAG off and no user: no embedding and no round trip at all', async () => {
    const ctx = await contextFor(dbA, { settings: { ragEnabled: false } }).retrieve(
      turn(acme, 'hello', { userId: undefined }),
    );
    expect(ctx.outcomes).toEqual({ documents: 'skipped', recall: 'skipped' });
    expect(ctx.text).toBe('');
    expect(openai.requests).toHaveLength(0);
    expect(stack.pool.gateway.count).toBe(0);
  });

  it('the block is cut to maxChars at item boundaries', async () => {
    const full = await contextFor(dbA).retrieve(turn(acme, 'what tyre pressure for my road bike?'));
    const cut = await contextFor(dbA, { maxChars: 200 }).retrieve(
      turn(acme, 'what tyre pressure for my road bike?'),
    );
    expect(full.text.length).toBeGreaterThan(200);
    expect(cut.text.length).toBeLessThanOrEqual(200);
    for (const line of cut.text.split('\n').filter((l) => l.startsWith('- '))) {
      expect(full.text.split('\n')).toContain(line);
    }
  });
});

describe('the time budget', () => {
  const BUDGET = 300;
  const SLACK = 250;

  it('a slow embeddings API: documents and recall are cut at the budget, with no round trip sent', async () => {
    openai.setDelay('embeddings', 3000);
    const { log, records } = capture();
    const t0 = performance.now();
    const ctx = await contextFor(dbA, { lookupMs: BUDGET, log }).retrieve(
      turn(acme, 'why does my rear brake squeak?'),
    );
    const elapsed = performance.now() - t0;

    expect(ctx.outcomes).toEqual({ documents: 'timeout', recall: 'timeout' });
    expect(ctx.text).toBe('');
    expect(ctx.documents).toEqual([]);
    expect(ctx.recall).toEqual([]);
    expect(elapsed).toBeGreaterThanOrEqual(BUDGET - 5);
    expect(elapsed).toBeLessThan(BUDGET + SLACK);
    // The vector lookups never started: nothing reached the database.
    expect(stack.pool.gateway.requests.map((r) => r.path)).toEqual([]);
    const warned = records().filter((r) => r.msg === 'context lookup cut at its time budget');
    expect(warned.map((r) => r.lookup).sort()).toEqual(['documents', 'recall']);
  });

  it('a database lookup that hangs is cut at the budget; the turn goes on without context', async () => {
    // The lookup's round trip hangs on the way (the network towards the pool), whatever the backend.
    const hanging: typeof fetch = async (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      if (url.includes('/rpc/turn_context')) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(resolve, 5000);
          init?.signal?.addEventListener('abort', () => {
            clearTimeout(timer);
            reject(init.signal!.reason);
          });
        });
      }
      return fetch(input, init);
    };
    const db = (await manager(hanging).forClient(asClientId(acme.clientId))).db;
    const t0 = performance.now();
    const ctx = await contextFor(db, { lookupMs: BUDGET }).retrieve(
      turn(acme, 'what tyre pressure for my road bike?'),
    );
    const elapsed = performance.now() - t0;

    expect(ctx.outcomes).toEqual({ documents: 'timeout', recall: 'timeout' });
    expect(ctx.text).toBe('');
    expect(elapsed).toBeGreaterThanOrEqual(BUDGET - 5);
    expect(elapsed).toBeLessThan(BUDGET + SLACK);
    // The hanging request was abandoned before it reached the gateway.
    expect(stack.pool.gateway.requests.map((r) => r.path)).toEqual([]);
  });

  it('a lookup its caller cancels ends at once as cancelled, logs nothing and sends no round trip', async () => {
    openai.setDelay('embeddings', 3000);
    const { log, records } = capture();
    const abort = new AbortController();
    const t0 = performance.now();
    const pending = contextFor(dbA, { log }).retrieve(
      turn(acme, 'what tyre pressure?', { signal: abort.signal }),
    );
    setTimeout(() => abort.abort(), 50);
    const ctx = await pending;
    expect(ctx.outcomes).toEqual({ documents: 'cancelled', recall: 'cancelled' });
    expect(ctx.text).toBe('');
    expect(performance.now() - t0).toBeLessThan(50 + SLACK);
    expect(stack.pool.gateway.count).toBe(0);
    expect(records().filter((r) => Number(r.level) >= 40)).toEqual([]);
  });

  it('the pool down: every lookup fails fast, the turn goes on with an empty block', async () => {
    await stack.pool.gateway.stop();
    try {
      const t0 = performance.now();
      const ctx = await contextFor(dbA, { lookupMs: BUDGET }).retrieve(
        turn(acme, 'why does my rear brake squeak?'),
      );
      expect(ctx.outcomes).toEqual({ documents: 'error', recall: 'error' });
      expect(ctx.text).toBe('');
      expect(performance.now() - t0).toBeLessThan(BUDGET + SLACK);
    } finally {
      await stack.pool.gateway.start();
    }
    const again = await contextFor(dbA).retrieve(turn(acme, 'why does my rear brake squeak?'));
    expect(again.outcomes).toEqual({ documents: 'ok', recall: 'ok' });
  });
});

describe('shared and dedicated give the same context for the same data', () => {
  /** Acme's rows, as they are in the pool, into the dedicated project (client_id dropped). */
  async function copyAcmeToDedicated(): Promise<void> {
    for (const table of TENANT_TABLES) {
      const rows = await stack.pool.sql.query<{ row: Record<string, unknown> }>(
        `SELECT to_jsonb(t) - 'client_id' AS row FROM ${table} t WHERE client_id = $1`,
        [acme.clientId],
      );
      expect(rows.length).toBeGreaterThan(0);
      await stack.dedicated.sql.query(
        `INSERT INTO ${table} SELECT * FROM jsonb_populate_recordset(NULL::${table}, $1::jsonb)`,
        [JSON.stringify(rows.map((r) => r.row))],
      );
    }
  }

  async function removeAcmeFromDedicated(): Promise<void> {
    const docs = await stack.pool.sql.query<{ id: string }>(
      'SELECT id::text FROM documents WHERE client_id = $1',
      [acme.clientId],
    );
    // Cascades to agent_documents, conversations, transcripts and overviews; chunks go with documents.
    await stack.dedicated.sql.query('DELETE FROM agents WHERE id = $1', [acme.agentId]);
    for (const d of docs) await stack.dedicated.sql.query('DELETE FROM documents WHERE id = $1', [d.id]);
  }

  it('one session across a tier move: its lookups follow the client into the new database', async () => {
    await copyAcmeToDedicated();
    try {
      // What the directory answers: the pool, then (after the switch) the dedicated project.
      let home = dbA;
      const context = contextFor(async () => home);
      const q = turn(acme, 'why does my rear brake squeak?');
      const before = await context.retrieve(q);
      home = dbC;
      for (const p of [stack.pool, stack.dedicated]) p.gateway.reset();
      const after = await context.retrieve(q);
      expect(after.text).toBe(before.text);
      expect(after.text).toContain('2019 Trek Domane');
      expect(stack.pool.gateway.count).toBe(0);
      expect(stack.dedicated.gateway.count).toBe(1);
    } finally {
      await removeAcmeFromDedicated();
    }
  });

  it('Acme’s data copied into a dedicated project yields the same block, matches and outcomes', async () => {
    await copyAcmeToDedicated();
    try {
      const queries: Array<Partial<TurnQuery> & { query: string }> = [
        { query: 'what tyre pressure for my road bike?' },
        { query: 'why does my rear brake squeak?' },
        { query: 'how often should I oil the chain?' },
        { query: 'why does my rear brake squeak?', userId: OTHER_USER },
        { query: 'why does my rear brake squeak?', conversationId: acme.conversationId },
        { query: 'what tyre pressure for my road bike?', userId: undefined },
      ];
      for (const q of queries) {
        const t = turn(acme, q.query, q);
        const shared = await contextFor(dbA).retrieve(t);
        const dedicated = await contextFor(dbC).retrieve(t);
        expect(dedicated.outcomes).toEqual(shared.outcomes);
        expect(dedicated.text).toBe(shared.text);
        expect(dedicated.documentTitles).toEqual(shared.documentTitles);
        expect(dedicated.documents.map((d) => d.id)).toEqual(shared.documents.map((d) => d.id));
        expect(dedicated.recall.map((r) => r.id)).toEqual(shared.recall.map((r) => r.id));
        for (const [i, d] of dedicated.documents.entries()) {
          expect(d.relevance).toBeCloseTo(shared.documents[i]!.relevance, 5);
        }
      }
      // Sanity: the comparisons above were not between two empty blocks.
      const sample = await contextFor(dbC).retrieve(turn(acme, 'why does my rear brake squeak?'));
      expect(sample.text).toContain('2019 Trek Domane and the rear brake squeaks.');
    } finally {
      await removeAcmeFromDedicated();
    }
    // The champion's own sidekick is untouched.
    const own = await contextFor(dbC).retrieve(turn(nimbus, 'how much is a hotel per night in Europe?'));
    expect(own.documentTitles).toContain('Travel policy');
    expect(own.text).not.toMatch(/tyre|Trek/i);
  });
});
