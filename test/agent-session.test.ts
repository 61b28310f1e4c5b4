import { randomUUID } from 'node:crypto';
import { initializeLogger, JobRequest, voice } from '@livekit/agents';
import { Job } from '@livekit/protocol';
import { VideoBufferType, VideoFrame } from '@livekit/rtc-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJobMetadata } from '../src/agent/metadata.js';
import { createLLM } from '../src/agent/models.js';
import { decideJob, requestHandler } from '../src/agent/request.js';
import { createRuntime, type WorkerRuntime } from '../src/agent/runtime.js';
import { type PreparedSession, prepareSession } from '../src/agent/session.js';
import { StillFrame } from '../src/agent/video.js';
import { type Config, loadConfig } from '../src/config.js';
import { OpenAIEmbedder } from '../src/context/embeddings.js';
import { HashingEmbedder } from '../src/context/hashing-embedder.js';
import type { LocalStack } from '../src/stack/stack.js';
import { captureLogs } from './support/logs.js';
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
  openai = await startOpenAIServer();
  // Seeded with the embedder the worker uses (the model name is what sessions compare).
  stack = await startTestStack({
    embedder: new OpenAIEmbedder({ apiKey: 'sk-loopback', baseURL: openai.baseURL }),
  });
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

/**
 * A ready champion whose platform record names the demo champion's project under another spelling
 * of its URL and another ref (as a mistaken registration before owner records could leave it).
 */
async function pointedAtChampion(): Promise<string> {
  const id = randomUUID();
  await stack.platform.sql.query(
    `INSERT INTO clients (id, name, tier, hosting_type, max_sidekicks, supabase_url, supabase_anon_key,
       supabase_service_role_key, supabase_project_ref, provisioning_status)
     VALUES ($1, 'Zenith', 'champion', 'dedicated', NULL, $2, $3, $4, $5, 'ready')`,
    [
      id,
      `${stack.dedicated.url}/`,
      stack.dedicated.anonKey,
      stack.dedicated.serviceRoleKey,
      `zenith-${id.slice(0, 8)}`,
    ],
  );
  return id;
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
    decideJob(typeof raw === 'string' ? raw : JSON.stringify(raw), runtime, log);

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
          runtime,
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

describe('session start', () => {
  const decide = (raw: Record<string, unknown>, l = log) => decideJob(JSON.stringify(raw), runtime, l);
  const OTHER_USER = '0d0d0d0d-0000-4000-8000-0000000000b7';

  it('one platform and one client-database round trip, in a fresh process as production runs it', async () => {
    const fresh = createRuntime(config, log);
    for (const p of [stack.platform, stack.pool]) p.gateway.reset();
    const prepared = await prepareSession(fresh, metadata(A()), log);
    expect(stack.platform.gateway.count).toBe(1);
    expect(stack.pool.gateway.requests.map((r) => r.path)).toEqual(['/rpc/begin_session']);
    // The instructions carry the user overview read in that same round trip.
    expect(prepared.agent.instructions).toContain('2019 Trek Domane');
    await prepared.close();
  });

  it('a new conversation is created at session start; continuing it later finds it', async () => {
    const prepared = await prepareSession(runtime, metadata(A()), log);
    const [row] = await stack.pool.sql.query<{ agent_id: string; user_id: string }>(
      'SELECT agent_id, user_id FROM conversations WHERE id = $1',
      [prepared.conversationId],
    );
    expect(row).toEqual({ agent_id: A().agentId, user_id: demo().userId });
    await prepared.close();
    const again = await prepareSession(
      runtime,
      metadata(A(), { conversation_id: prepared.conversationId }),
      log,
    );
    expect(again.conversationId).toBe(prepared.conversationId);
    await again.close();
  });

  it.each([
    [
      "another client's conversation",
      () => ({ conversation_id: B().conversationId }),
      'is not one of this client',
    ],
    [
      "another user's conversation",
      () => ({ conversation_id: A().conversationId, user_id: OTHER_USER }),
      'belongs to another user',
    ],
    // Indistinguishable from another client's: nothing tells a client which ids others use.
    [
      'a conversation id nobody has',
      () => ({ conversation_id: '0c0c0c0c-0000-4000-8000-00000000dead' }),
      'is not one of this client',
    ],
  ])('refuses %s before joining, naming conversation_id, and writes nothing', async (_name, extra, why) => {
    const before = await stack.pool.sql.query('SELECT id FROM conversations');
    const decision = await decide({
      client_id: A().clientId,
      agent_slug: A().agentSlug,
      user_id: demo().userId,
      ...extra(),
    });
    expect(decision).toMatchObject({ accept: false, code: 'invalid_conversation' });
    expect((decision as { reason: string }).reason).toContain('conversation_id');
    expect((decision as { reason: string }).reason).toContain(why);
    await expect(prepareSession(runtime, metadata(A(), extra()), log)).rejects.toThrow(/conversation_id/);
    expect(await stack.pool.sql.query('SELECT id FROM conversations')).toEqual(before);
  });

  it("refuses a dedicated client's conversation of another of its sidekicks", async () => {
    const [other] = await stack.dedicated.sql.query<{ id: string }>(
      `INSERT INTO agents (name, slug) VALUES ('Second', 'second-planner') RETURNING id`,
    );
    const [conv] = await stack.dedicated.sql.query<{ id: string }>(
      'INSERT INTO conversations (agent_id, user_id) VALUES ($1, $2) RETURNING id',
      [other!.id, demo().userId],
    );
    expect(
      await decide({
        client_id: C().clientId,
        agent_slug: C().agentSlug,
        user_id: demo().userId,
        conversation_id: conv!.id,
      }),
    ).toMatchObject({ accept: false, code: 'invalid_conversation' });
  });

  it('documents embedded with another model than the worker uses: retrieval is off for the session, said loudly', async () => {
    const other = createRuntime(config, log, {
      embedder: Object.assign(new HashingEmbedder({ dimensions: 1024 }), { model: 'text-embedding-3-large' }),
    });
    const { log: captured, records } = captureLogs();
    const prepared = await prepareSession(other, metadata(A()), captured);
    expect(prepared.plan.rag).toEqual({
      enabled: false,
      reason:
        "2 of the sidekick's documents were embedded with text-embedding-3-small (1024 dimensions), but this worker embeds queries with text-embedding-3-large (1024 dimensions)",
    });
    const said = records().find((r) => String(r.msg).includes('docs reembed'));
    expect(said?.level).toBe(50);
    expect(String(said?.msg)).toContain(`sidekick docs reembed --client ${A().clientId} --agent bike-guide`);
    await prepared.close();
  });

  it("a client whose platform record points at the demo champion's project is refused: nothing is read or written there", async () => {
    const intruder = await pointedAtChampion();
    const conversation = randomUUID();
    const job = { client_id: intruder, agent_slug: 'trip-planner', conversation_id: conversation };
    expect(await decideJob(JSON.stringify(job), runtime, log)).toEqual({
      accept: false,
      code: 'project_owned_by_another_client',
      reason: expect.stringContaining(`belongs to client ${C().clientId}`),
    });
    // The job's own planning, which claims a new conversation, is refused before any write.
    await expect(
      prepareSession(runtime, metadata({ clientId: intruder, agentSlug: 'trip-planner' }, job), log),
    ).rejects.toMatchObject({ code: 'project_owned_by_another_client' });
    expect(
      await stack.dedicated.sql.query('SELECT 1 FROM conversations WHERE id = $1', [conversation]),
    ).toEqual([]);
  });

  it('a dedicated project without begin_session (an older schema) still starts sessions, and says so once', async () => {
    const signature = 'begin_session(text, integer, uuid, uuid, boolean, uuid)';
    const [{ def }] = (await stack.dedicated.sql.query<{ def: string }>(
      `SELECT pg_get_functiondef('${signature}'::regprocedure) AS def`,
    )) as [{ def: string }];
    await stack.dedicated.sql.exec(`DROP FUNCTION ${signature}`);
    await stack.dedicated.postgrest.reloadSchema();
    try {
      const { log: captured, records } = captureLogs();
      const fresh = createRuntime(config, captured);
      const prepared = await prepareSession(fresh, metadata(C()), captured);
      expect(prepared.degraded).toBe(false);
      expect(prepared.plan.sidekick.slug).toBe('trip-planner');
      expect(prepared.agent.instructions).toContain('aisle seat');
      expect(records().some((r) => String(r.msg).includes('no begin_session function'))).toBe(true);
      // The owner record is read without the RPC too.
      const intruder = await pointedAtChampion();
      expect(
        await decideJob(JSON.stringify({ client_id: intruder, agent_slug: 'trip-planner' }), fresh, captured),
      ).toMatchObject({ accept: false, code: 'project_owned_by_another_client' });
      await talk(prepared, 'Which flights may I book in business class?');
      expect((await prepared.close()).dropped).toBe(0);
      expect((await transcriptRows(stack.dedicated, prepared.conversationId)).length).toBe(3);

      // Older still: no owner record either. Served, and the operator is told how to record it.
      await stack.dedicated.sql.exec('ALTER TABLE project_owner RENAME TO project_owner_hidden');
      await stack.dedicated.postgrest.reloadSchema();
      const older = await prepareSession(fresh, metadata(C()), captured);
      expect(older.degraded).toBe(false);
      expect(older.plan.rag.enabled).toBe(true);
      const told = records().find((r) => String(r.msg).includes('records no owner'));
      expect(String(told?.msg)).toContain(`sidekick clients verify --client ${C().clientId}`);
      await older.close();
    } finally {
      await stack.dedicated.sql.exec(
        `ALTER TABLE IF EXISTS project_owner_hidden RENAME TO project_owner;
         ${def};\nGRANT EXECUTE ON FUNCTION ${signature} TO service_role`,
      );
      await stack.dedicated.postgrest.reloadSchema();
    }
  });
});

describe("requestFunc, with LiveKit's own JobRequest", () => {
  async function request(metadata: string, log: pino.Logger) {
    const seen = { accepted: 0, rejected: 0 };
    const req = new JobRequest(
      new Job({ id: 'AJ_request_test', metadata }),
      async () => void seen.rejected++,
      async () => void seen.accepted++,
    );
    await requestHandler(runtime, log, 'sidekick')(req);
    return seen;
  }

  it('warns about credential-like fields at any depth (Authorization included), by name only, and accepts the job', async () => {
    const { log: captured, records, output } = captureLogs('warn');
    const secret = 'sk-live-0123456789abcdef';
    const seen = await request(
      JSON.stringify({
        client_id: A().clientId,
        agent_slug: A().agentSlug,
        auth: { Authorization: `Bearer ${secret}` },
        supabase: { service_key: secret },
      }),
      captured,
    );
    expect(seen).toEqual({ accepted: 1, rejected: 0 });
    const warned = records().find((r) => String(r.msg).includes('credential-like fields'));
    expect(warned).toMatchObject({
      level: 40,
      job_id: 'AJ_request_test',
      fields: ['auth.Authorization', 'supabase.service_key'],
    });
    expect(output()).not.toContain(secret);
  });

  it('rejects metadata over 64 KiB or of the wrong type, with the reason logged', async () => {
    const { log: captured, records } = captureLogs('warn');
    const big = JSON.stringify({
      client_id: A().clientId,
      agent_slug: A().agentSlug,
      pad: 'x'.repeat(70_000),
    });
    expect(await request(big, captured)).toEqual({ accepted: 0, rejected: 1 });
    expect(await request(JSON.stringify({ client_id: 12, agent_slug: 'bike-guide' }), captured)).toEqual({
      accepted: 0,
      rejected: 1,
    });
    const reasons = records()
      .filter((r) => r.msg === 'job rejected')
      .map((r) => r.reason);
    expect(reasons).toEqual([
      expect.stringContaining('over the limit of 65536 bytes (64 KiB) for job metadata'),
      expect.stringContaining('client_id: must be a string: a uuid'),
    ]);
    expect(String(reasons[1])).toContain('got a number');
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

describe('a job process: prewarm, then its one session', () => {
  it('prewarm sets up the pools before the job; the session start is then one platform and one client-database round trip', async () => {
    const { prewarmRuntime } = await import('../src/agent/runtime.js');
    const fresh = createRuntime(config, log);
    for (const p of [stack.platform, stack.pool, stack.dedicated]) p.gateway.reset();
    await prewarmRuntime(fresh);
    // The pools (one request) and the lookup of an unknown client; one session start for no client per pool.
    expect(stack.platform.gateway.requests.map((r) => r.path.split('?')[0]).sort()).toEqual([
      '/clients',
      '/shared_pool_config',
    ]);
    expect(stack.pool.gateway.requests.map((r) => r.path)).toEqual(['/rpc/begin_session']);
    expect(stack.pool.gateway.requests[0]!.bearerClientId).toBe('00000000-0000-0000-0000-000000000000');
    expect(stack.dedicated.gateway.count).toBe(0);

    for (const p of [stack.platform, stack.pool, stack.dedicated]) p.gateway.reset();
    const prepared = await prepareSession(fresh, metadata(A()), log);
    expect(stack.platform.gateway.count).toBe(1);
    expect(stack.pool.gateway.requests.map((r) => r.path)).toEqual(['/rpc/begin_session']);
    expect(prepared.degraded).toBe(false);
    expect(prepared.agent.instructions).toContain('2019 Trek Domane');
    await prepared.close();
  });
});
