import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { OpenAIEmbedder } from '../src/context/embeddings.js';
import { HashingEmbedder } from '../src/context/hashing-embedder.js';
import { TranscriptStore, type TranscriptStoreOptions, type Turn } from '../src/context/transcripts.js';
import type { LocalProject } from '../src/stack/project.js';
import type { DemoClient } from '../src/stack/seed.js';
import type { LocalStack } from '../src/stack/stack.js';
import { asClientId } from '../src/tenancy/types.js';
import { captureLogs } from './support/logs.js';
import { type OpenAIServer, startOpenAIServer } from './support/openai-server.js';
import { connectionsTo, startTestStack } from './support/stack.js';
import { cosine } from './support/vectors.js';

/*
 * TranscriptStore against the seeded local stack (PGlite, or the real server with
 * STACK_POSTGRES_URL), through the real tenancy code and the loopback OpenAI embeddings API.
 * Outages are real: the project's gateway is taken down and brought back on the same port.
 */

let stack: LocalStack;
let openai: OpenAIServer;
let embedder: OpenAIEmbedder;
let userId: string;
const hashing = new HashingEmbedder();

beforeAll(async () => {
  [stack, openai] = await Promise.all([startTestStack(), startOpenAIServer()]);
  embedder = new OpenAIEmbedder({ apiKey: 'sk-test', baseURL: openai.baseURL });
  userId = stack.demo!.userId;
});
afterAll(async () => {
  await Promise.all([stack?.stop(), openai?.close()]);
});
beforeEach(async () => {
  openai.reset();
  // A test that failed half-way must not leave the next one without its database.
  await Promise.all([stack.pool.gateway.start(), stack.dedicated.gateway.start()]);
});

const manager = (fetchImpl?: typeof fetch) => connectionsTo(stack, { fetch: fetchImpl });
const capture = () => captureLogs();

/** A store for a new conversation of `client`, wired as src/agent/session.ts wires it. */
function newStore(client: DemoClient, opts: Partial<TranscriptStoreOptions> & { fetch?: typeof fetch } = {}) {
  const m = manager(opts.fetch);
  const clientId = asClientId(client.clientId);
  const conversationId = randomUUID();
  const store = new TranscriptStore({
    resolveDb: async () => (await m.forClient(clientId)).db,
    onWriteFailure: () => m.directory.invalidate(clientId),
    embedder,
    conversation: { id: conversationId, agentId: client.agentId, userId },
    log: capture().log,
    batchSize: 50,
    maxBuffered: 5000,
    graceMs: 10_000,
    retry: { minMs: 20, maxMs: 200 },
    ...opts,
  });
  return { store, conversationId };
}

interface Row {
  turn_id: string;
  role: string;
  content: string;
  metadata: Record<string, unknown>;
  similarity: number | null;
}

/** The transcript rows of a conversation, straight from the database (superuser, behind PostgREST). */
async function rowsOf(project: LocalProject, conversationId: string): Promise<Row[]> {
  const rows = await project.sql.query<Omit<Row, 'similarity'> & { embeddings: string | null }>(
    `SELECT turn_id::text AS turn_id, role, content, metadata, embeddings::text AS embeddings
       FROM conversation_transcripts WHERE conversation_id = $1 ORDER BY created_at, id`,
    [conversationId],
  );
  return rows.map(({ embeddings, ...r }) => ({
    ...r,
    similarity:
      embeddings === null ? null : cosine(JSON.parse(embeddings) as number[], hashing.embedOne(r.content)),
  }));
}

/** How many rows each turn_id has in a conversation. */
async function countsByTurn(project: LocalProject, conversationId: string): Promise<Map<string, number>> {
  const rows = await project.sql.query<{ turn_id: string; n: number }>(
    `SELECT turn_id::text AS turn_id, count(*)::int AS n FROM conversation_transcripts
      WHERE conversation_id = $1 GROUP BY turn_id`,
    [conversationId],
  );
  return new Map(rows.map((r) => [r.turn_id, r.n]));
}

async function conversationRow(project: LocalProject, conversationId: string) {
  const [row] = await project.sql.query<Record<string, unknown>>(
    `SELECT to_jsonb(c) AS row FROM conversations c WHERE id = $1`,
    [conversationId],
  );
  return row?.row as Record<string, unknown> | undefined;
}

async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function turns(n: number, prefix: string): Array<Turn & { turnId: string }> {
  return Array.from({ length: n }, (_, i) => ({
    role: i % 2 === 0 ? 'user' : 'assistant',
    content: `${prefix} turn ${i + 1}: the rear brake squeaks after rain`,
    turnId: randomUUID(),
  }));
}

const TARGETS = [
  {
    name: 'an adventurer in the shared pool',
    client: () => stack.demo!.adventurers[0]!,
    home: () => stack.pool,
    elsewhere: () => stack.dedicated,
  },
  {
    name: 'a champion on its dedicated project',
    client: () => stack.demo!.champion,
    home: () => stack.dedicated,
    elsewhere: () => stack.pool,
  },
];

describe.each(TARGETS)('TranscriptStore for $name', ({ client, home, elsewhere }) => {
  it('writes each turn with its embedding, role and turn_id, creating the conversation row, there and nowhere else', async () => {
    const { store, conversationId } = newStore(client());
    expect(await conversationRow(home(), conversationId)).toBeUndefined();
    const spoken: Turn[] = [
      { role: 'user', content: 'My tyres keep going flat on the gravel path.', turnId: randomUUID() },
      {
        role: 'assistant',
        content: 'Try tubeless tyres at 35 psi for gravel.',
        turnId: randomUUID(),
        metadata: { livekit_item_id: 'item_51fe920a-829' },
      },
      { role: 'user', content: 'Thanks, I will try that.' },
    ];
    for (const t of spoken) store.add(t);
    await store.flush();

    const conversation = await conversationRow(home(), conversationId);
    expect(conversation).toMatchObject({ id: conversationId, agent_id: client().agentId, user_id: userId });
    if (home() === stack.pool) expect(conversation!.client_id).toBe(client().clientId);
    else expect(conversation).not.toHaveProperty('client_id');

    // Turns added within one millisecond share created_at, so rows are matched by content, not order.
    const rows = await rowsOf(home(), conversationId);
    const byContent = new Map(rows.map((r) => [r.content, r]));
    expect(rows).toHaveLength(3);
    for (const t of spoken)
      expect(byContent.get(t.content)).toMatchObject({ role: t.role, metadata: t.metadata ?? {} });
    expect(byContent.get(spoken[0]!.content)!.turn_id).toBe(spoken[0]!.turnId);
    expect(byContent.get(spoken[1]!.content)!.turn_id).toBe(spoken[1]!.turnId);
    expect(byContent.get(spoken[2]!.content)!.turn_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-/); // generated
    // Embedded by the embeddings API (the loopback's vectors are HashingEmbedder's): the very same vector.
    for (const r of rows) expect(r.similarity).toBeCloseTo(1, 5);
    const embedded = openai.embeddingRequests().flatMap((r) => r.body.input as string[]);
    expect(embedded.sort()).toEqual(spoken.map((t) => t.content).sort());

    expect(store.stats).toMatchObject({ written: 3, pending: 0, dropped: 0, failedAttempts: 0 });
    expect(await rowsOf(elsewhere(), conversationId)).toEqual([]);
    expect(await conversationRow(elsewhere(), conversationId)).toBeUndefined();
    await store.close();
  });

  it("an exchange is one request, the user's vector stored as its lookup made it: one embedding request (the reply's)", async () => {
    const { store: exchange, conversationId: conv } = newStore(client());
    // The conversation row first (a session start that could not claim it), then only the exchanges.
    exchange.add({ role: 'assistant', content: 'Hello, how can I help?' });
    await exchange.flush();
    home().gateway.reset();
    openai.reset();
    const question = 'What tyre pressure for gravel?';
    const vector = hashing.embedOne(question);
    exchange.add({ role: 'user', content: question, embedding: vector });
    await sleep(150);
    // Held for its reply: nothing written yet.
    expect(home().gateway.count).toBe(0);
    exchange.add({ role: 'assistant', content: 'Gravel tyres run at 35 to 50 psi.' });
    await until('the exchange written', () => exchange.stats.written === 3);
    expect(home().gateway.requests.map((r) => `${r.method} ${r.path.split('?')[0]}`)).toEqual([
      'POST /conversation_transcripts',
    ]);
    expect(openai.embeddingRequests().map((r) => r.body.input)).toEqual([
      ['Gravel tyres run at 35 to 50 psi.'],
    ]);
    const rows = await rowsOf(home(), conv);
    expect(rows.map((r) => [r.role, r.content])).toEqual([
      ['assistant', 'Hello, how can I help?'],
      ['user', question],
      ['assistant', 'Gravel tyres run at 35 to 50 psi.'],
    ]);
    for (const r of rows) expect(r.similarity).toBeCloseTo(1, 5);
    await exchange.close();
  });

  it('a user turn that gets no reply is written after replyWaitMs anyway', async () => {
    const { store, conversationId } = newStore(client(), { replyWaitMs: 200 });
    store.add({ role: 'user', content: 'Hello? Is anyone there?' });
    await sleep(50);
    expect(await rowsOf(home(), conversationId)).toEqual([]);
    await until('the lone turn written', () => store.stats.written === 1, 3000);
    expect((await rowsOf(home(), conversationId)).map((r) => r.content)).toEqual(['Hello? Is anyone there?']);
    await store.close();
  });

  it('add() returns at once; the write happens in the background', async () => {
    openai.setDelay('embeddings', 400);
    const { store, conversationId } = newStore(client());
    const t0 = performance.now();
    const returned: unknown = store.add({ role: 'user', content: 'Is the shop open on Sunday?' });
    const took = performance.now() - t0;
    expect(returned).toBeUndefined();
    expect(took).toBeLessThan(20);
    expect(store.stats.pending).toBe(1);
    expect(await rowsOf(home(), conversationId)).toEqual([]);
    await store.flush();
    expect(await rowsOf(home(), conversationId)).toHaveLength(1);
    await store.close();
  });

  it('the database goes away while turns are spoken: every turn is written exactly once when it is back', async () => {
    const { store, conversationId } = newStore(client());
    const before = turns(2, 'before');
    for (const t of before) store.add(t);
    await store.flush();

    const gateway = home().gateway;
    await gateway.stop();
    const during = turns(10, 'during');
    openai.reset();
    try {
      for (const t of during) {
        store.add(t);
        await sleep(15);
      }
      await until('several failed attempts', () => store.stats.failedAttempts >= 3);
      await sleep(200);
      expect((await countsByTurn(home(), conversationId)).size).toBe(2);
      expect(store.stats.dropped).toBe(0);
    } finally {
      await gateway.start();
    }
    const embeddingsDuringOutage = openai.embeddingRequests().length;
    await store.flush();

    const counts = await countsByTurn(home(), conversationId);
    for (const t of [...before, ...during]) expect(counts.get(t.turnId)).toBe(1);
    expect(counts.size).toBe(12);
    expect(store.stats).toMatchObject({ written: 12, pending: 0, dropped: 0 });
    expect(store.stats.failedAttempts).toBeGreaterThanOrEqual(3);
    // A turn is embedded once, however many attempts its write takes: during the outage only the
    // batch in flight was embedded, and over the whole outage each turn went to the embedder once.
    expect(embeddingsDuringOutage).toBe(1);
    const embedded = openai.embeddingRequests().flatMap((r) => [r.body.input].flat().map(String));
    expect(embedded.sort()).toEqual(during.map((t) => t.content).sort());
    await store.close();
  });

  it('a reply lost after the rows were stored: the retry does not write a second row', async () => {
    let lost = 0;
    const losing: typeof fetch = async (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      const res = await fetch(input, init);
      if (lost === 0 && init?.method === 'POST' && url.includes('/conversation_transcripts')) {
        lost++;
        await res.arrayBuffer();
        throw new TypeError('fetch failed: connection reset after the request was sent');
      }
      return res;
    };
    const { store, conversationId } = newStore(client(), { fetch: losing });
    const spoken = turns(4, 'lost-reply');
    for (const t of spoken) store.add(t);
    await store.flush();
    expect(lost).toBe(1);
    expect(store.stats.failedAttempts).toBeGreaterThanOrEqual(1);
    const counts = await countsByTurn(home(), conversationId);
    expect(counts.size).toBe(4);
    for (const t of spoken) expect(counts.get(t.turnId)).toBe(1);
    await store.close();
  });

  it('close() with the database down longer than graceMs drops and counts the turns, and logs no transcript text', async () => {
    const { log, output, records } = capture();
    const { store, conversationId } = newStore(client(), { log, graceMs: 300 });
    const secret = 'my card number is 4111 1111 1111 1111 and my PIN is 0420';
    const gateway = home().gateway;
    await gateway.stop();
    try {
      store.add({ role: 'user', content: secret });
      store.add({ role: 'assistant', content: `Please never say ${secret} on a call.` });
      store.add({ role: 'user', content: 'ok' });
      await until('a failed attempt', () => store.stats.failedAttempts >= 1);
      const t0 = performance.now();
      const stats = await store.close();
      const took = performance.now() - t0;
      expect(stats).toMatchObject({ written: 0, pending: 0, dropped: 3 });
      expect(took).toBeLessThan(300 + 400);
      store.add({ role: 'user', content: `after close: ${secret}` });
      expect(store.stats.dropped).toBe(4);
    } finally {
      await gateway.start();
    }
    await sleep(300);
    expect(await rowsOf(home(), conversationId)).toEqual([]);

    const text = output();
    expect(text).not.toContain('4111');
    expect(text).not.toContain('PIN');
    expect(text).not.toContain('after close');
    const dropped = records().find(
      (r) => r.msg === 'transcript turns could not be written within the grace period; dropped',
    );
    expect(dropped).toMatchObject({ level: 50, dropped: 3, conversation_id: conversationId });
    expect(records().some((r) => r.msg === 'transcript write failed; will retry')).toBe(true);
  });
});

describe("a conversation id that is not this sidekick's (found only after a degraded start)", () => {
  it("another client's conversation id: the turns go to a new conversation of this client, none dropped", async () => {
    const [a, b] = stack.demo!.adventurers as [DemoClient, DemoClient];
    const { log, records } = capture();
    const m = manager();
    const store = new TranscriptStore({
      resolveDb: async () => (await m.forClient(asClientId(a.clientId))).db,
      embedder,
      conversation: { id: b.conversationId, agentId: a.agentId, userId },
      log,
      batchSize: 50,
      maxBuffered: 5000,
      graceMs: 10_000,
      retry: { minMs: 20, maxMs: 200 },
    });
    const before = await countsByTurn(stack.pool, b.conversationId);
    for (const t of turns(3, 'foreign')) store.add(t);
    const stats = await store.close();
    expect(stats).toMatchObject({ written: 3, dropped: 0 });
    expect(store.conversationId).not.toBe(b.conversationId);
    expect((await rowsOf(stack.pool, store.conversationId)).map((r) => r.content)).toHaveLength(3);
    expect(await conversationRow(stack.pool, store.conversationId)).toMatchObject({
      client_id: a.clientId,
      agent_id: a.agentId,
    });
    // B's conversation is untouched.
    expect(await countsByTurn(stack.pool, b.conversationId)).toEqual(before);
    expect(records().some((r) => r.new_conversation_id === store.conversationId)).toBe(true);
  });
});

describe('TranscriptStore in the shared pool: the write fence and the buffer limit', () => {
  const acme = () => stack.demo!.adventurers[0]!;

  async function setFence(state: 'open' | 'fenced') {
    await stack.pool.sql.query('UPDATE pool_clients SET write_fence = $1 WHERE client_id = $2', [
      state,
      acme().clientId,
    ]);
  }

  it('turns spoken while the client’s writes are fenced are written once the fence lifts, none lost', async () => {
    const { log, records } = capture();
    const { store, conversationId } = newStore(acme(), { log });
    const spoken = turns(6, 'fenced');
    await setFence('fenced');
    try {
      for (const t of spoken) store.add(t);
      await until('refusals by the fence', () => store.stats.failedAttempts >= 3);
      expect(await rowsOf(stack.pool, conversationId)).toEqual([]);
      expect(await conversationRow(stack.pool, conversationId)).toBeUndefined();
      expect(store.stats.dropped).toBe(0);
    } finally {
      await setFence('open');
    }
    await store.flush();
    const counts = await countsByTurn(stack.pool, conversationId);
    expect(counts.size).toBe(6);
    for (const t of spoken) expect(counts.get(t.turnId)).toBe(1);
    expect(store.stats).toMatchObject({ written: 6, dropped: 0, pending: 0 });
    const refusals = records().filter((r) => r.msg === 'transcript write failed; will retry');
    expect(refusals.length).toBeGreaterThan(0);
    expect(String(refusals[0]!.reason)).toMatch(/fenced.*\(55000\)/);
    await store.close();
  });

  it('overflow of maxBuffered drops the oldest turns and counts them', async () => {
    const { log, output, records } = capture();
    const { store, conversationId } = newStore(acme(), { log, maxBuffered: 5 });
    const spoken = turns(8, 'overflow');
    await stack.pool.gateway.stop();
    try {
      for (const t of spoken) store.add(t);
      expect(store.stats.dropped).toBe(3);
      expect(store.stats.pending).toBe(5);
      await until('a failed attempt', () => store.stats.failedAttempts >= 1);
    } finally {
      await stack.pool.gateway.start();
    }
    await store.flush();
    expect(store.stats).toMatchObject({ written: 5, dropped: 3, pending: 0 });
    const counts = await countsByTurn(stack.pool, conversationId);
    expect(counts.size).toBe(5);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    expect(records().filter((r) => r.msg === 'transcript buffer full; oldest turns dropped')).toHaveLength(3);
    expect(output()).not.toContain('overflow turn');
    await store.close();
  });

  // A batch was in flight when the overflow dropped its oldest turns: those must not be written
  // (they were counted as dropped), and none of the newest must be lost.
  it('overflow keeps exactly the newest maxBuffered turns, even with a batch in flight', async () => {
    const { store, conversationId } = newStore(acme(), { maxBuffered: 5 });
    const spoken = turns(8, 'newest');
    await stack.pool.gateway.stop();
    try {
      for (const t of spoken) store.add(t);
      await until('a failed attempt', () => store.stats.failedAttempts >= 1);
    } finally {
      await stack.pool.gateway.start();
    }
    await store.flush();
    const counts = await countsByTurn(stack.pool, conversationId);
    expect([...counts.keys()].sort()).toEqual(
      spoken
        .slice(3)
        .map((t) => t.turnId)
        .sort(),
    );
    await store.close();
  });
});
