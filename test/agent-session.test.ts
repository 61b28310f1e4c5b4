import { initializeLogger, voice } from '@livekit/agents';
import { VideoBufferType, VideoFrame } from '@livekit/rtc-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJobMetadata } from '../src/agent/metadata.js';
import { createLLM } from '../src/agent/models.js';
import { decideJob } from '../src/agent/request.js';
import { createRuntime, type WorkerRuntime } from '../src/agent/runtime.js';
import { type PreparedSession, prepareSession } from '../src/agent/session.js';
import { StillFrame } from '../src/agent/video.js';
import { type Config, loadConfig } from '../src/config.js';
import type { LocalStack } from '../src/stack/stack.js';
import { type OpenAIServer, startOpenAIServer } from './support/openai-server.js';
import { startTestStack } from './support/stack.js';

/**
 * The worker end to end, without LiveKit: a text AgentSession from @livekit/agents with the real
 * OpenAI plugin LLM pointed at a loopback OpenAI-compatible server, the real tenancy and context
 * code, and the local stack.
 */
let stack: LocalStack;
let openai: OpenAIServer;
let runtime: WorkerRuntime;
let config: Config;
const log = pino({ level: 'silent' });

beforeAll(async () => {
  initializeLogger({ pretty: false, level: 'silent' });
  [stack, openai] = await Promise.all([startTestStack(), startOpenAIServer()]);
  config = loadConfig({
    PLATFORM_SUPABASE_URL: stack.platform.url,
    PLATFORM_SUPABASE_SERVICE_ROLE_KEY: stack.platform.serviceRoleKey,
    OPENAI_API_KEY: 'sk-loopback',
    OPENAI_BASE_URL: openai.baseURL,
    CONTEXT_BUDGET_MS: '2000',
    TRANSCRIPT_GRACE_MS: '20000',
    LOG_LEVEL: 'silent',
  });
  runtime = createRuntime(config, log);
});
afterAll(async () => {
  await Promise.all([stack?.stop(), openai?.close()]);
});

const demo = () => stack.demo!;
const A = () => demo().adventurers[0]!;
const B = () => demo().adventurers[1]!;
const C = () => demo().champion;

function metadata(client: { clientId: string; agentSlug: string }, extra: Record<string, unknown> = {}) {
  return parseJobMetadata(
    JSON.stringify({
      client_id: client.clientId,
      agent_slug: client.agentSlug,
      user_id: demo().userId,
      ...extra,
    }),
  );
}

/** One user turn through a text session; returns what the LLM was sent. */
async function talk(prepared: PreparedSession, userInput: string) {
  const session = new voice.AgentSession({ llm: createLLM(runtime.config) });
  prepared.attach(session);
  await session.start({ agent: prepared.agent });
  openai.reset();
  const result = await session.run({ userInput }).wait();
  const request = openai.chatRequests().at(-1);
  await session.close();
  return { result, request: request!.body, sent: JSON.stringify(request!.body.messages) };
}

async function transcriptRows(where: LocalStack['pool'], conversationId: string) {
  return where.sql.query<{ role: string; content: string; n: number }>(
    'SELECT role, content FROM conversation_transcripts WHERE conversation_id = $1 ORDER BY created_at',
    [conversationId],
  );
}

describe('a session knows its own client, and only its own', () => {
  it("an adventurer's reply is grounded in its documents and overview; turns land in the pool only", async () => {
    const prepared = await prepareSession(runtime, metadata(A()), log);
    const { result, sent } = await talk(prepared, 'What tyre pressure should my road bike have?');
    expect(result.events.some((e) => e.type === 'message')).toBe(true);
    expect(sent).toContain('Road bike tyres run at 80 to 100 psi');
    expect(sent).toContain('Tyre pressure guide');
    expect(sent).toContain('2019 Trek Domane'); // the user overview
    for (const other of ['monstera', 'Bloom', 'fiddle leaf', 'Nimbus', 'ESTA'])
      expect(sent).not.toContain(other);

    const stats = await prepared.close();
    expect(stats.dropped).toBe(0);
    const rows = await transcriptRows(stack.pool, prepared.conversationId);
    expect(rows.map((r) => r.role).sort()).toEqual(['assistant', 'assistant', 'user']); // greeting, reply, question
    expect(rows.find((r) => r.role === 'user')!.content).toBe('What tyre pressure should my road bike have?');
    expect(await transcriptRows(stack.dedicated, prepared.conversationId)).toEqual([]);
    const [tagged] = await stack.pool.sql.query<{ client_id: string }>(
      'SELECT DISTINCT client_id FROM conversation_transcripts WHERE conversation_id = $1',
      [prepared.conversationId],
    );
    expect(tagged!.client_id).toBe(A().clientId);
  });

  it("a champion's session reads and writes its dedicated project, nothing in the pool", async () => {
    const prepared = await prepareSession(runtime, metadata(C()), log);
    const { sent } = await talk(prepared, 'Which flights may I book in business class?');
    expect(sent).toContain('business class is allowed for longer flights');
    expect(sent).not.toContain('psi');
    await prepared.close();
    expect((await transcriptRows(stack.dedicated, prepared.conversationId)).length).toBe(3);
    expect(await transcriptRows(stack.pool, prepared.conversationId)).toEqual([]);
  });

  it('a hosting_type hint that lies changes nothing about where data goes', async () => {
    const prepared = await prepareSession(runtime, metadata(A(), { hosting_type: 'dedicated' }), log);
    expect(prepared.connection.hostingType).toBe('shared');
    await talk(prepared, 'How often should I clean my chain?');
    await prepared.close();
    expect((await transcriptRows(stack.pool, prepared.conversationId)).length).toBe(3);
    expect(await transcriptRows(stack.dedicated, prepared.conversationId)).toEqual([]);
  });
});

describe('video', () => {
  const frame = () =>
    new StillFrame(new VideoFrame(new Uint8Array(16 * 16 * 4).fill(128), 16, 16, VideoBufferType.RGBA));
  const images = (request: { messages: Array<{ content?: unknown }> }) =>
    request.messages
      .flatMap((m) => (Array.isArray(m.content) ? m.content : []))
      .filter((p) => p.type === 'image_url');

  it('where the tier and sidekick allow video, the latest frame goes to the LLM with the user turn', async () => {
    const prepared = await prepareSession(runtime, metadata(C()), log, { video: frame() });
    expect(prepared.plan.video.enabled).toBe(true);
    const { request } = await talk(prepared, 'What do you see on my passport?');
    const parts = images(request);
    expect(parts).toHaveLength(1);
    expect(JSON.stringify(parts[0])).toContain('data:image/png;base64,');
    await prepared.close();
  });

  it('an adventurer never sends an image, even with a camera on', async () => {
    const prepared = await prepareSession(runtime, metadata(A()), log, { video: frame() });
    expect(prepared.plan.video.enabled).toBe(false);
    const { request } = await talk(prepared, 'Look at my bike');
    expect(images(request)).toHaveLength(0);
    await prepared.close();
  });
});

describe('requestFunc decisions', () => {
  const decide = (raw: unknown) =>
    decideJob(typeof raw === 'string' ? raw : JSON.stringify(raw), runtime.connections, log);

  it('accepts a valid job for a ready client', async () => {
    expect(await decide({ client_id: A().clientId, agent_slug: 'bike-guide' })).toEqual({ accept: true });
  });

  it.each([
    ['invalid metadata', 'not json', 'invalid_job_metadata'],
    [
      'an unknown client',
      { client_id: '99999999-9999-4999-8999-999999999999', agent_slug: 'x' },
      'client_not_found',
    ],
    ['an unknown sidekick', { client_id: '__A__', agent_slug: 'nope' }, 'sidekick_not_found'],
  ])('rejects %s', async (_name, raw, code) => {
    const input =
      typeof raw === 'string' ? raw : { ...raw, client_id: raw.client_id.replace('__A__', A().clientId) };
    const decision = await decide(input);
    expect(decision).toMatchObject({ accept: false, code });
  });

  it('rejects a sidekick allowed neither voice nor text, before joining the room', async () => {
    await stack.dedicated.sql.query(
      `INSERT INTO agents (name, slug, voice_chat_enabled, text_chat_enabled) VALUES ('Mute', 'mute', false, false)`,
    );
    expect(await decide({ client_id: C().clientId, agent_slug: 'mute' })).toMatchObject({
      accept: false,
      code: 'no_channel_allowed',
    });
  });

  it('rejects a client that is not ready', async () => {
    const id = '7b000000-0000-4000-8000-000000000001';
    await stack.platform.sql.query(
      `INSERT INTO clients (id, name, tier, hosting_type, provisioning_status) VALUES ($1, 'S', 'champion', 'dedicated', 'suspended')`,
      [id],
    );
    expect(await decide({ client_id: id, agent_slug: 'x' })).toMatchObject({
      accept: false,
      code: 'client_not_ready',
    });
  });

  it('rejects a sidekick beyond the client limit (oldest ones stay usable)', async () => {
    // B had room for two once (the pool's limit lifted for the setup); its platform limit is 1.
    await stack.pool.sql.exec(
      `UPDATE pool_clients SET max_sidekicks = 2 WHERE client_id = '${B().clientId}'`,
    );
    await stack.pool.sql.query(
      `INSERT INTO agents (client_id, name, slug, created_at) VALUES ($1, 'Later', 'later-helper', now() + interval '1 day')`,
      [B().clientId],
    );
    await stack.pool.sql.exec(
      `UPDATE pool_clients SET max_sidekicks = 1 WHERE client_id = '${B().clientId}'`,
    );
    expect(await decide({ client_id: B().clientId, agent_slug: 'later-helper' })).toMatchObject({
      accept: false,
      code: 'sidekick_over_limit',
    });
    expect(await decide({ client_id: B().clientId, agent_slug: 'garden-helper' })).toEqual({ accept: true });
  });
});

describe('a client database that is down', () => {
  it('the champion still gets a session that talks; its turns are written when the project is back', async () => {
    // A new job process (LiveKit runs one job per process): it has never seen this sidekick, so
    // the session starts from a made-up sidekick and its turns must find the real one later.
    const fresh = createRuntime(config, log);
    await stack.dedicated.gateway.stop();
    let prepared: PreparedSession;
    try {
      prepared = await prepareSession(fresh, metadata(C()), log);
      expect(prepared.degraded).toBe(true);
      expect(prepared.plan.sidekick.slug).toBe('trip-planner');
      const { result } = await talk(prepared, 'Can I still plan a trip?');
      expect(result.events.some((e) => e.type === 'message')).toBe(true);
      // Decision is still "accept": a database that cannot answer is no reason to turn the user away.
      expect(
        await decideJob(
          JSON.stringify({ client_id: C().clientId, agent_slug: 'trip-planner' }),
          runtime.connections,
          log,
        ),
      ).toEqual({
        accept: true,
      });
    } finally {
      setTimeout(() => void stack.dedicated.gateway.start(), 1500);
    }
    // Once the project answers again, the same session's sidekick knows its documents again.
    await prepared.transcripts.flush();
    const again = await talk(prepared, 'How much is a hotel per night in Europe?');
    expect(again.sent).toContain('180 euros per night');
    const stats = await prepared.close();
    expect(stats.dropped).toBe(0);
    const rows = await transcriptRows(stack.dedicated, prepared.conversationId);
    expect(rows.map((r) => r.content)).toContain('Can I still plan a trip?');
  });
});

describe('sidekick chat (terminal, no LiveKit)', () => {
  it('holds a text conversation through the same session code and stores it', async () => {
    const { PassThrough } = await import('node:stream');
    const { runChat } = await import('../src/agent/chat.js');
    const input = new PassThrough();
    const output = new PassThrough();
    let printed = '';
    output.on('data', (d) => {
      printed += String(d);
    });
    input.end('What tyre pressure should my road bike have?\n/quit\n');
    const stats = await runChat(runtime, metadata(A()), log, { input, output });
    expect(stats).toMatchObject({ turns: 1, dropped: 0 });
    expect(printed).toContain('Hi, I am the Acme Bikes guide');
    expect(printed).toContain('You said: What tyre pressure should my road bike have?');
    const sent = JSON.stringify(openai.chatRequests().at(-1)!.body.messages);
    expect(sent).toContain('Road bike tyres run at 80 to 100 psi');
  });
});
