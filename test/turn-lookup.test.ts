import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { closeEnough, contentWords, type LookupEvent, TurnLookups } from '../src/agent/turn-lookup.js';
import { ContextManager, type TurnContext } from '../src/context/context-manager.js';
import { OpenAIEmbedder } from '../src/context/embeddings.js';
import type { LocalStack } from '../src/stack/stack.js';
import type { TenantQuery } from '../src/tenancy/tenant-query.js';
import { asClientId } from '../src/tenancy/types.js';
import { type OpenAIServer, startOpenAIServer } from './support/openai-server.js';
import { connectionsTo, startTestStack } from './support/stack.js';

describe('the "close enough" rule: the same content words', () => {
  it.each([
    ['My rear brake squeaks', 'my rear brake squeaks, what should I do about it?', true],
    ['What tyre pressure should my road bike', 'What tyre pressure should my road bike have', true],
    ['When should I replace the chain', 'replace the chain', true],
    ['um, the tyres', 'The tyre.', true],
    ['I ride a gravel bike', 'I ride a gravel bike how hard should I pump the tyres', false],
    ['What tyre pressure', 'What tyre pressure for my gravel bike', false],
    ['road bike', 'bike road', true],
    ['hello', 'hello there', true],
    ['yes', 'no', false],
    ['what', 'what?', true],
    ['what', 'why', false],
  ])('%j and %j: %s', (a, b, expected) => {
    expect(closeEnough(a, b)).toBe(expected);
    expect(closeEnough(b, a)).toBe(expected);
  });

  it('content words are lower-cased, without punctuation, stop words and a plural s', () => {
    expect([...contentWords("Um, how do I fix my bike's squeaky brakes?")].sort()).toEqual([
      'bike',
      'brake',
      'fix',
      'squeaky',
    ]);
  });
});

describe('interim transcripts', () => {
  function lookups(now: { t: number }) {
    const started: string[] = [];
    const l = new TurnLookups({
      lookup: async (text) => {
        started.push(text);
        return undefined;
      },
      now: () => now.t,
      interimLeadMs: 300,
    });
    return { l, started };
  }

  it('a burst of interims just before the final (OpenAI realtime STT) starts no lookup; the final does', () => {
    const now = { t: 0 };
    const { l, started } = lookups(now);
    for (const [t, text] of [
      [1000, 'What '],
      [1020, 'What tyre '],
      [1040, 'What tyre pressure '],
      [1120, 'What tyre pressure for my road bike'],
    ] as const) {
      now.t = t;
      l.interim(text);
    }
    expect(started).toEqual([]);
    now.t = 1140;
    l.final('What tyre pressure for my road bike');
    expect(started).toEqual(['What tyre pressure for my road bike']);
  });

  it('interims streamed while the user speaks start lookups ahead of the final, at most one per interval', () => {
    const now = { t: 0 };
    const { l, started } = lookups(now);
    const words = 'I bought a gravel bike last month and the rear brake squeaks'.split(' ');
    words.forEach((_, i) => {
      now.t = 1000 + i * 120; // a word every 120 ms, as the user says it
      l.interim(words.slice(0, i + 1).join(' '));
    });
    expect(started.length).toBeGreaterThan(0);
    expect(started.length).toBeLessThanOrEqual(Math.ceil((words.length * 120) / 300));
    now.t += 100;
    l.final(words.join(' '));
    // The last interim lookup already had every content word: the final reuses it.
    expect(started.at(-1)).toBe(words.join(' '));
  });
});

describe('lookups superseded within a turn (the real ContextManager against the stack)', () => {
  let stack: LocalStack;
  let openai: OpenAIServer;
  let context: ContextManager;
  let db: TenantQuery;

  beforeAll(async () => {
    openai = await startOpenAIServer();
    const embedder = new OpenAIEmbedder({ apiKey: 'sk-test', baseURL: openai.baseURL });
    stack = await startTestStack({ embedder });
    db = (await connectionsTo(stack).forClient(asClientId(stack.demo!.adventurers[0]!.clientId))).db;
    context = new ContextManager({
      db,
      embedder,
      settings: { ragEnabled: true, matchCount: 5, matchThreshold: 0, recallCount: 3 },
      budgets: { lookupMs: 2000, maxChars: 6000 },
      log: pino({ level: 'silent' }),
    });
  });
  afterAll(async () => {
    await Promise.all([stack?.stop(), openai?.close()]);
  });
  beforeEach(() => {
    openai.reset();
    stack.pool.gateway.reset();
  });

  function turnLookups() {
    const events: LookupEvent[] = [];
    const results = new Map<string, TurnContext | undefined>();
    const acme = stack.demo!.adventurers[0]!;
    const lookups = new TurnLookups({
      lookup: async (text, signal) => {
        const ctx = await context.retrieve({
          query: text,
          agentSlug: acme.agentSlug,
          userId: stack.demo!.userId,
          signal,
        });
        results.set(text, ctx);
        return ctx;
      },
      observe: (ev) => events.push(ev),
    });
    return { lookups, events, results };
  }

  it('a lookup superseded by a final text with other content words is cancelled and not used', async () => {
    openai.setDelay('embeddings', 200);
    const { lookups, events, results } = turnLookups();
    lookups.final('How often should I clean my chain');
    await new Promise((r) => setTimeout(r, 50));
    lookups.final('and what tyre pressure for my road bike');
    const text = 'How often should I clean my chain and what tyre pressure for my road bike';
    const ctx = await lookups.forReply(text);

    expect(events.map((e) => [e.type, e.text])).toEqual([
      ['started', 'How often should I clean my chain'],
      ['cancelled', 'How often should I clean my chain'],
      ['started', text],
      ['reused', text],
      ['done', text],
    ]);
    // The reply has the second lookup's context, for its own text.
    expect(ctx?.query).toBe(text);
    expect(ctx?.documentTitles).toContain('Tyre pressure guide');
    await new Promise((r) => setTimeout(r, 250));
    // The first one ended as cancelled, never reached the database, and left no vector to reuse.
    expect(results.get('How often should I clean my chain')?.outcomes).toEqual({
      documents: 'cancelled',
      recall: 'cancelled',
    });
    expect(stack.pool.gateway.requests.map((r) => r.path)).toEqual(['/rpc/turn_context']);
    expect(lookups.embeddingFor('How often should I clean my chain')).toBeUndefined();
    expect(lookups.embeddingFor(text)).toEqual(ctx?.embedding);
  });

  it('a reply for words the user has gone on from gets no context rather than another text’s', async () => {
    openai.setDelay('embeddings', 200);
    const { lookups } = turnLookups();
    const stale = lookups.forReply('How often should I clean my chain');
    await new Promise((r) => setTimeout(r, 50));
    lookups.final('What tyre pressure for my road bike');
    expect(await stale).toBeUndefined();
    expect((await lookups.forReply('What tyre pressure for my road bike'))?.query).toBe(
      'What tyre pressure for my road bike',
    );
  });

  it('a final segment that adds no content words reuses the lookup: one embedding, one round trip', async () => {
    const { lookups, events } = turnLookups();
    lookups.final('My rear brake squeaks');
    lookups.final('what should I do about it');
    const ctx = await lookups.forReply('My rear brake squeaks what should I do about it');
    expect(events.filter((e) => e.type === 'started')).toHaveLength(1);
    expect(ctx?.recall.map((r) => r.content).join(' ')).toContain('rear brake squeaks');
    expect(openai.embeddingRequests()).toHaveLength(1);
    expect(stack.pool.gateway.count).toBe(1);
  });
});
