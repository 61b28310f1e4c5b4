import { initializeLogger } from '@livekit/agents';
import * as silero from '@livekit/agents-plugin-silero';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentSession, localTurnDetector } from '../src/agent/agent-session.js';
import { parseJobMetadata } from '../src/agent/metadata.js';
import { createRuntime } from '../src/agent/runtime.js';
import { type PreparedSession, prepareSession } from '../src/agent/session.js';
import type { LookupEvent } from '../src/agent/turn-lookup.js';
import { loadConfig } from '../src/config.js';
import { OpenAIEmbedder } from '../src/context/embeddings.js';
import { HashingEmbedder } from '../src/context/hashing-embedder.js';
import type { LocalStack } from '../src/stack/stack.js';
import type { TurnLatency } from '../src/usage/latency.js';
import { type OpenAIServer, startOpenAIServer } from './support/openai-server.js';
import { startTestStack } from './support/stack.js';
import {
  inProcessTurnDetectorExecutor,
  loadSpeech,
  type TurnRecord,
  VoiceRig,
} from './support/voice-harness.js';

/**
 * The sidekick in the real audio pipeline (test/support/voice-harness.ts): spoken turns through
 * Silero VAD, the on-device end-of-turn model and LiveKit's OpenAI plugin (STT over the realtime
 * transcription socket, LLM, TTS) on the loopback server, with the product's session code and the
 * local stack. What a user would notice: the reply knows the documents, comes after the context
 * was found (not without it), and each exchange is stored once; what the bill notices: one
 * embedding and one database round trip before the LLM request, two of each per turn in all.
 */
let stack: LocalStack;
let openai: OpenAIServer;
let rig: VoiceRig;
let prepared: PreparedSession;
const lookups: LookupEvent[] = [];
const turns: TurnRecord[] = [];
const clips = loadSpeech();

beforeAll(async () => {
  initializeLogger({ pretty: false, level: 'error' });
  const log = pino({ level: 'silent' });
  openai = await startOpenAIServer({
    responder: () => 'Here is what I know about that.',
    speechDurationMs: (text) => text.length * 15,
  });
  stack = await startTestStack({
    embedder: new OpenAIEmbedder({ apiKey: 'sk-loopback', baseURL: openai.baseURL }),
  });
  const config = loadConfig({
    PLATFORM_SUPABASE_URL: stack.platform.url,
    PLATFORM_SUPABASE_SERVICE_ROLE_KEY: stack.platform.serviceRoleKey,
    OPENAI_API_KEY: 'sk-loopback',
    OPENAI_BASE_URL: openai.baseURL,
    EMBEDDING_PROVIDER: 'openai',
    // Order and content are asserted here, not speed (the bench measures that with the real
    // budget): on a loaded CI machine a 350 ms budget can cut the lookup and leave the reply bare.
    CONTEXT_BUDGET_MS: '5000',
    LOG_LEVEL: 'silent',
  });
  const demo = stack.demo!;
  const acme = demo.adventurers[0]!;
  const runtime = createRuntime(config, log);
  prepared = await prepareSession(
    runtime,
    parseJobMetadata(
      JSON.stringify({ client_id: acme.clientId, agent_slug: acme.agentSlug, user_id: demo.userId }),
    ),
    log,
    { observe: (ev) => lookups.push(ev) },
  );
  // As production runs it: the on-device end-of-turn model (in this process instead of the worker's inference process).
  const session = createAgentSession(config, prepared.plan, {
    vad: await silero.VAD.load(),
    turnDetector: localTurnDetector(await inProcessTurnDetectorExecutor()),
  });
  prepared.attach(session);
  openai.setDelay('transcriptions', 300);
  openai.setDelay('chat', 200);
  openai.setDelay('speech', 50);
  rig = new VoiceRig({
    session,
    agent: prepared.agent,
    openai,
    dbRequests: () => stack.pool.gateway.requests,
    settle: async () => {
      while (prepared.transcripts.stats.pending) await new Promise((r) => setTimeout(r, 5));
    },
    lookups,
  });
  await rig.start({ greeting: true });
  turns.push(await rig.turn([clips['tyre-pressure']!]));
  // Two final segments (450 ms apart: past the STT's silence window, within the VAD's): one turn.
  turns.push(await rig.turn([clips['brake-squeaks']!, clips['what-to-do']!], 450));
  await rig.close();
  await prepared.close();
}, 60_000);

afterAll(async () => {
  await Promise.all([stack?.stop(), openai?.close()]);
});

describe('a spoken turn through the audio pipeline', () => {
  it('the STT heard every segment, and each turn was one user turn with one spoken reply', () => {
    expect(rig.heard).toEqual([
      'What tyre pressure should my road bike have',
      'My rear brake squeaks',
      'what should I do about it',
    ]);
    expect(turns.map((t) => t.finals.map((f) => f.text))).toEqual([
      ['What tyre pressure should my road bike have'],
      ['My rear brake squeaks', 'what should I do about it'],
    ]);
    for (const t of turns) expect(t.firstAudioAt).toBeDefined();
  });

  it('the context lookup is done before the LLM request, and the LLM is given it', () => {
    for (const t of turns) {
      const done = t.lookups.filter((l) => l.type === 'done');
      expect(done.length).toBeGreaterThan(0);
      expect(done.at(-1)!.at).toBeLessThanOrEqual(t.llmRequestAt!);
      expect(t.finals[0]!.at).toBeLessThan(t.llmRequestAt!);
      expect(t.llmRequestAt!).toBeLessThan(t.firstTokenAt!);
      expect(t.firstTokenAt!).toBeLessThan(t.firstAudioAt!);
    }
    const sent = (t: TurnRecord) => JSON.stringify(t.llmRequests.at(-1)!.body);
    expect(sent(turns[0]!)).toContain('Road bike tyres run at 80 to 100 psi');
    expect(sent(turns[1]!)).toContain('rear brake squeaks');
  });

  it('a second segment that adds no content words reuses the first segment’s lookup: one lookup per turn', () => {
    expect(turns.map((t) => t.lookups.filter((l) => l.type === 'started').length)).toEqual([1, 1]);
    expect(turns[1]!.lookups.filter((l) => l.type === 'cancelled')).toEqual([]);
    expect(turns[1]!.lookups.find((l) => l.type === 'started')!.text).toBe('My rear brake squeaks');
  });

  it('≤ 1 embedding request and ≤ 1 database round trip before the LLM request; 2 of each per turn in all', () => {
    for (const t of turns) {
      expect(t.embeddingRequests).toEqual({ beforeLlm: 1, total: 2 });
      expect(t.dbRequests.beforeLlm).toBe(1);
      expect(t.dbRequests.paths).toEqual(['POST /rpc/turn_context', 'POST /conversation_transcripts']);
      expect(t.dbRequests.writes).toBe(1);
    }
  });

  it('the transcripts are written once: greeting, then each user turn and its reply, the user’s vector the one its lookup made', async () => {
    const rows = await stack.pool.sql.query<{ role: string; content: string; embeddings: string }>(
      'SELECT role, content, embeddings::text FROM conversation_transcripts WHERE conversation_id = $1 ORDER BY created_at',
      [prepared.conversationId],
    );
    expect(rows.map((r) => [r.role, r.content])).toEqual([
      ['assistant', 'Hi, I am the Acme Bikes guide. What is your bike up to?'],
      ['user', 'What tyre pressure should my road bike have'],
      ['assistant', 'Here is what I know about that.'],
      ['user', 'My rear brake squeaks what should I do about it'],
      ['assistant', 'Here is what I know about that.'],
    ]);
    const hashing = new HashingEmbedder();
    for (const r of rows) {
      const stored = JSON.parse(r.embeddings) as number[];
      const expected = hashing.embedOne(r.content);
      expect(stored.length).toBe(expected.length);
      expect(Math.max(...stored.map((x, i) => Math.abs(x - expected[i]!)))).toBeLessThan(1e-6);
    }
  });
});

describe('each spoken reply’s latency, stored with its transcript row', () => {
  it('has every part of the voice pipeline, each plausible against the loopback delays and the harness’s own timeline; the greeting none', async () => {
    const rows = await stack.pool.sql.query<{ role: string; metadata: { latency?: TurnLatency } }>(
      `SELECT role, metadata FROM conversation_transcripts WHERE conversation_id = $1 AND role = 'assistant' ORDER BY created_at`,
      [prepared.conversationId],
    );
    const [greeting, ...replies] = rows;
    expect(greeting!.metadata.latency).toBeUndefined();
    expect(replies).toHaveLength(turns.length);
    for (const [i, reply] of replies.entries()) {
      const l = reply.metadata.latency!;
      const t = turns[i]!;
      expect(l).toMatchObject({ e2e_from: 'end_of_speech', context_documents: 'ok', context_recall: 'ok' });
      // The loopback server waits 200 ms before the first token and 50 ms before the first audio.
      expect(l.llm_ttft_ms).toBeGreaterThanOrEqual(200);
      expect(l.llm_node_ttft_ms!).toBeGreaterThanOrEqual(l.llm_ttft_ms! - 1);
      expect(l.tts_ttfb_ms).toBeGreaterThanOrEqual(50);
      expect(l.end_of_turn_ms).toBeGreaterThan(0);
      expect(l.transcription_ms).toBeGreaterThan(0);
      expect(l.context_ms).toBeGreaterThan(0);
      // The end to end is LiveKit's (end of speech by the VAD to the first audio frame); the
      // harness measures from the end of the voice in the audio to the same frame.
      expect(Math.abs(l.e2e_ms! - t.speechEndToAudioMs!)).toBeLessThan(300);
      expect(l.e2e_ms!).toBeGreaterThan(l.llm_ttft_ms! + l.tts_ttfb_ms!);
    }
  });
});
