/**
 * Usage, latency and limits (issue 15), through the real session code, PostgREST and LiveKit's own
 * JobRequest: each reply's latency stored with its transcript row, the usage ledger written once
 * (also when the job process is killed after its session), the concurrency cap across worker
 * runtimes, pending and dead workers' slots freed, and the monthly minutes quota.
 */
import { randomUUID } from 'node:crypto';
import { JobRequest } from '@livekit/agents';
import { Job } from '@livekit/protocol';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { decideJob, requestHandler } from '../src/agent/request.js';
import type { WorkerRuntime } from '../src/agent/runtime.js';
import { prepareSession } from '../src/agent/session.js';
import type { TurnLatency } from '../src/usage/latency.js';
import type { ClientUsageReport, TopClient } from '../src/usage/reports.js';
import {
  type AfterSessionBed,
  converse,
  metadataFor,
  startAfterSessionBed,
} from './support/after-session.js';
import { json, sidekick, stackEnv } from './support/cli.js';
import { ON_REAL_SERVER } from './support/db.js';
import { startJob } from './support/jobs.js';
import { captureLogs } from './support/logs.js';
import { messageText, tokens } from './support/openai-server.js';

let bed: AfterSessionBed;
beforeAll(async () => {
  bed = await startAfterSessionBed();
});
afterAll(async () => {
  await bed?.stop();
});
beforeEach(async () => {
  await bed.stack.platform.sql.exec(
    `DELETE FROM session_leases; DELETE FROM session_usage; UPDATE clients SET tier_features = '{}'`,
  );
  bed.openai.reset();
});

const demo = () => bed.stack.demo!;
const A = () => demo().adventurers[0]!;
const B = () => demo().adventurers[1]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const jobId = () => `AJ_${randomUUID().slice(0, 12)}`;

/** One job request through requestFunc, as LiveKit's worker makes it; what it answered. */
async function request(
  runtime: WorkerRuntime,
  client: { clientId: string; agentSlug: string },
  id = jobId(),
  log = captureLogs('warn'),
) {
  let answer: 'accepted' | 'rejected' | undefined;
  const req = new JobRequest(
    new Job({ id, metadata: JSON.stringify({ client_id: client.clientId, agent_slug: client.agentSlug }) }),
    async () => {
      answer = 'rejected';
    },
    async () => {
      answer = 'accepted';
    },
  );
  await requestHandler(runtime, log.log, 'sidekick')(req);
  const rejected = log.records().find((r) => r.msg === 'job rejected');
  return {
    id,
    answer,
    code: rejected?.code as string | undefined,
    reason: rejected?.reason as string | undefined,
  };
}

const leases = (clientId: string) =>
  bed.stack.platform.sql.query<{ job_id: string; status: string; holder: string }>(
    'SELECT job_id, status, holder FROM session_leases WHERE client_id = $1 ORDER BY acquired_at',
    [clientId],
  );

interface LedgerRow {
  job_id: string;
  client_id: string;
  tier: string;
  agent_slug: string;
  duration_seconds: string;
  llm_prompt_tokens: string;
  llm_completion_tokens: string;
  embedding_tokens: string;
  tts_characters: string;
  stt_audio_seconds: string;
  audio_in_seconds: string;
  user_turns: number;
  assistant_turns: number;
  tool_calls: number;
  models: Array<Record<string, unknown>>;
  end_reason: string;
  recorded_by: string;
}
const ledger = (id: string) =>
  bed.stack.platform.sql.query<LedgerRow>('SELECT * FROM session_usage WHERE job_id = $1', [id]);

/** What the OpenAI stand-in billed since its last reset: chat tokens in and out, embedding tokens. */
function billed() {
  const chat = bed.openai.chatRequests();
  const prompt = chat.reduce(
    (n, r) => n + r.body.messages.reduce((m, msg) => m + tokens(messageText(msg)), 0),
    0,
  );
  const inputs = bed.openai
    .embeddingRequests()
    .flatMap((r): unknown[] => (Array.isArray(r.body.input) ? r.body.input : [r.body.input]))
    .map(String);
  return { chatRequests: chat.length, prompt, embedding: inputs.reduce((n, t) => n + tokens(t), 0) };
}

describe('per-turn latency, stored with the transcript', () => {
  it("a text session's reply carries its lookup time and outcomes, the model's TTFT and the end to end, all plausible; the greeting none", async () => {
    bed.openai.setDelay('chat', 80);
    const { prepared } = await converse(
      bed.runtime(),
      A(),
      ['What tyre pressure should my road bike have?'],
      {
        userId: demo().userId,
      },
    );
    const rows = await bed.stack.pool.sql.query<{
      role: string;
      content: string;
      metadata: Record<string, unknown>;
    }>(
      'SELECT role, content, metadata FROM conversation_transcripts WHERE conversation_id = $1 ORDER BY created_at',
      [prepared.conversationId],
    );
    expect(rows.map((r) => r.role).sort()).toEqual(['assistant', 'assistant', 'user']);
    // The greeting (said, no user turn to answer) and the question carry none; the reply does.
    const reply = rows.find((r) => r.content.startsWith('You said:'))!;
    for (const other of rows.filter((r) => r !== reply)) expect(other.metadata.latency).toBeUndefined();
    const latency = reply.metadata.latency as TurnLatency;
    expect(latency).toMatchObject({
      context_documents: 'ok',
      context_recall: 'ok',
      e2e_from: 'text_input',
      // No audio in a text turn: nothing of the voice pipeline is made up.
      end_of_turn_ms: null,
      transcription_ms: null,
      tts_ttfb_ms: null,
    });
    // The lookup ran within its budget (2 s here); the model waited 80 ms before its first token.
    expect(latency.context_ms).toBeGreaterThan(0);
    expect(latency.context_ms).toBeLessThan(2000);
    expect(latency.llm_ttft_ms).toBeGreaterThanOrEqual(80);
    // llmNode's TTFT includes the model's; the reply's first text came after both.
    expect(latency.llm_node_ttft_ms!).toBeGreaterThanOrEqual(latency.llm_ttft_ms! - 1);
    expect(latency.e2e_ms!).toBeGreaterThanOrEqual(latency.llm_node_ttft_ms! - 1);
    expect(latency.e2e_ms).toBeLessThan(5000);
  });
});

describe('the usage ledger', () => {
  it('a leased session leaves one row with what it used, written once: a second finish, a sweep and close again add nothing', async () => {
    const main = bed.runtime();
    const id = jobId();
    const gateway = bed.stack.platform.gateway;
    const leaseTrips = () => gateway.requests.map((r) => r.path).filter((p) => p.includes('session_lease'));
    gateway.reset();
    expect((await request(main, A(), id)).answer).toBe('accepted');
    expect(leaseTrips()).toEqual(['/rpc/acquire_session_lease']);
    expect(await leases(A().clientId)).toEqual([expect.objectContaining({ job_id: id, status: 'pending' })]);

    const job = bed.runtime();
    bed.openai.reset();
    gateway.reset();
    const { prepared } = await converse(job, A(), ['How often should I clean my chain?', 'And the brakes?'], {
      userId: demo().userId,
      sessionId: id,
      lease: true,
    });
    // The job's lease, in a session shorter than a renewal period: live at the start; ended, then finished.
    expect(leaseTrips()).toEqual([
      '/rpc/acquire_session_lease',
      '/rpc/renew_session_lease',
      '/rpc/finish_session_lease',
    ]);
    const used = billed();
    const rows = await ledger(id);
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row).toMatchObject({
      client_id: A().clientId,
      tier: 'adventurer',
      agent_slug: A().agentSlug,
      end_reason: 'completed',
      recorded_by: job.leases.holder,
      user_turns: 2,
      assistant_turns: 3,
      tool_calls: 0,
    });
    // Exactly what the model and the embeddings API billed (the stand-in's own counts).
    expect(used.chatRequests).toBe(2);
    expect(Number(row.llm_prompt_tokens)).toBe(used.prompt);
    expect(Number(row.llm_completion_tokens)).toBeGreaterThan(0);
    expect(used.embedding).toBeGreaterThan(0);
    expect(Number(row.embedding_tokens)).toBe(used.embedding);
    expect(Number(row.duration_seconds)).toBeGreaterThan(0);
    expect(Number(row.duration_seconds)).toBeLessThan(60);
    expect(row.models).toEqual([
      expect.objectContaining({ type: 'llm_usage', model: bed.config.models.llm }),
    ]);
    expect(await leases(A().clientId)).toEqual([]);

    // Once: the job's finish again, any worker's sweep, close() again.
    expect(await job.leases.finish(id, { ...emptyUsage(), llm_prompt_tokens: 1 })).toBe(false);
    expect(await main.leases.settleExpired()).toBe(0);
    await prepared.close();
    expect(await ledger(id)).toEqual(rows);
  });

  it('a job process killed after its session: the slot stays taken until its lease expires; then a second runtime writes the row once, from the last renewal, and the slot is free', async () => {
    // B may hold one session at a time.
    await bed.stack.platform.sql.query(
      `UPDATE clients SET tier_features = '{"max_concurrent_sessions": 1}' WHERE id = $1`,
      [B().clientId],
    );
    const short = { SESSION_LEASE_TTL_S: '3' };
    const main = bed.runtime(short);
    const id = jobId();
    expect((await request(main, B(), id)).answer).toBe('accepted');

    const child = startJob(B(), id, 'When should I water my fern?', { ...bed.env, ...short });
    try {
      await child.said('running');
      child.send('turn');
      await child.said('session over');
    } finally {
      await child.kill();
    }
    const used = billed();
    const [lease] = await bed.stack.platform.sql.query<{
      status: string;
      usage: Record<string, number>;
      expires_at: Date;
    }>('SELECT status, usage, expires_at FROM session_leases WHERE job_id = $1', [id]);
    expect(lease).toMatchObject({ status: 'live' });
    expect(lease!.usage.llm_prompt_tokens).toBe(used.prompt);

    // The dead job's slot is still taken: B's next session is refused, naming the limit.
    const refused = await request(main, B());
    expect(refused).toMatchObject({ answer: 'rejected', code: 'max_concurrent_sessions' });
    expect(refused.reason).toContain('max_concurrent_sessions = 1');
    expect(await ledger(id)).toEqual([]);

    // Once it expired, two other runtimes sweep at the same time: one row between them.
    await sleep(Math.max(0, new Date(lease!.expires_at).getTime() - Date.now()) + 300);
    const [second, third] = [bed.runtime(short), bed.runtime(short)];
    const written = await Promise.all([second.leases.settleExpired(), third.leases.settleExpired()]);
    expect(written[0]! + written[1]!).toBe(1);
    const rows = await ledger(id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ end_reason: 'recovered', user_turns: 1, assistant_turns: 2 });
    expect([second.leases.holder, third.leases.holder]).toContain(rows[0]!.recorded_by);
    expect(Number(rows[0]!.llm_prompt_tokens)).toBe(used.prompt);
    expect(Number(rows[0]!.embedding_tokens)).toBe(used.embedding);
    expect(await main.leases.settleExpired()).toBe(0);

    expect((await request(main, B())).answer).toBe('accepted');
  }, 60_000);
  it('a session whose lease expired behind its back (the platform out of reach too long) keeps running and is counted again; its row is the one the sweep wrote', async () => {
    const short = { SESSION_LEASE_TTL_S: '3' };
    const job = bed.runtime(short);
    const id = jobId();
    const logs = captureLogs('warn');
    const prepared = await prepareSession(job, metadataFor(A()), logs.log, { sessionId: id, lease: true });
    await bed.stack.platform.sql.query(
      `UPDATE session_leases SET expires_at = now() - interval '1 second' WHERE job_id = $1`,
      [id],
    );
    expect(await bed.runtime(short).leases.settleExpired()).toBe(1);
    // The next renewal finds it gone: it is taken again, the session goes on holding a slot.
    await sleep(1500);
    expect(logs.records().some((r) => String(r.msg).startsWith('session lease lost'))).toBe(true);
    expect(await leases(A().clientId)).toEqual([expect.objectContaining({ job_id: id, status: 'live' })]);
    await prepared.close();
    expect(await leases(A().clientId)).toEqual([]);
    const rows = await ledger(id);
    expect(rows.map((r) => r.end_reason)).toEqual(['recovered']);
  });
});

describe('max_concurrent_sessions', () => {
  it("an adventurer's third session is refused while two hold slots, naming the limit; a redelivered job keeps its slot; the refused job takes nothing", async () => {
    const [one, two] = [bed.runtime(), bed.runtime()];
    const first = await request(one, A());
    expect((await request(two, A())).answer).toBe('accepted');
    const third = await request(one, A());
    expect(third).toMatchObject({ answer: 'rejected', code: 'max_concurrent_sessions' });
    expect(third.reason).toBe(
      `client ${A().clientId} has 2 session(s) running, its limit of max_concurrent_sessions = 2 (from the adventurer tier): a new one can start when one ends, or raise the limit (a tier upgrade or a tier_features override)`,
    );
    // The dispatcher gives the first job to the other worker: the same slot, not a third.
    expect((await request(two, A(), first.id)).answer).toBe('accepted');
    const held = await leases(A().clientId);
    expect(held.map((l) => l.status)).toEqual(['pending', 'pending']);
    expect(held.find((l) => l.job_id === first.id)?.holder).toBe(two.leases.holder);
    expect(held.map((l) => l.job_id)).not.toContain(third.id);
  });

  it('a job accepted but never started frees its slot once its pending lease expires', async () => {
    const quick = bed.runtime({ SESSION_LEASE_PENDING_S: '1' });
    await request(quick, A());
    await request(quick, A());
    expect((await request(quick, A())).code).toBe('max_concurrent_sessions');
    await sleep(1300);
    expect((await request(quick, A())).answer).toBe('accepted');
    // Nothing started, so nothing is billed.
    expect(await bed.stack.platform.sql.query('SELECT 1 FROM session_usage')).toEqual([]);
  });

  it('an override raises the cap, unlimited (null) takes it away; the lease still records the session', async () => {
    const rt = bed.runtime();
    await bed.stack.platform.sql.query(
      `UPDATE clients SET tier_features = '{"max_concurrent_sessions": null}' WHERE id = $1`,
      [A().clientId],
    );
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push((await request(rt, A())).answer);
    expect(answers).toEqual(['accepted', 'accepted', 'accepted', 'accepted']);
    expect(await leases(A().clientId)).toHaveLength(4);
  });

  it.runIf(ON_REAL_SERVER)(
    'with a cap of 2, five concurrent requestFunc calls for one client on two worker runtimes: exactly 2 accepted, 3 refused naming the limit (real server)',
    async () => {
      // Warm runtimes (client records cached), so that the five requests reach the lease together.
      const runtimes = [
        bed.runtime({ CLIENT_CACHE_TTL_MS: '60000' }),
        bed.runtime({ CLIENT_CACHE_TTL_MS: '60000' }),
      ];
      const job = JSON.stringify({ client_id: A().clientId, agent_slug: A().agentSlug });
      for (const rt of runtimes)
        expect(await decideJob(job, rt, captureLogs().log)).toEqual({ accept: true });
      const results = await Promise.all(Array.from({ length: 5 }, (_, i) => request(runtimes[i % 2]!, A())));
      expect(results.filter((r) => r.answer === 'accepted')).toHaveLength(2);
      const refused = results.filter((r) => r.answer === 'rejected');
      expect(refused).toHaveLength(3);
      for (const r of refused) {
        expect(r.code).toBe('max_concurrent_sessions');
        expect(r.reason).toContain('max_concurrent_sessions = 2');
      }
      expect(await leases(A().clientId)).toHaveLength(2);
    },
  );
});

describe('max_session_minutes', () => {
  /** A past session in the ledger, `minutes` long, started `start` (SQL). */
  const billedSession = (clientId: string, start: string, minutes: number) =>
    bed.stack.platform.sql.query(
      `INSERT INTO session_usage (job_id, client_id, tier, agent_slug, started_at, ended_at, end_reason, recorded_by)
       VALUES ($1, $2, 'adventurer', 'garden-helper', ${start}, ${start} + make_interval(mins => $3), 'completed', 'test')`,
      [jobId(), clientId, minutes],
    );

  it("refuses a session once the month's minutes are used, naming the quota; last month's do not count", async () => {
    const rt = bed.runtime();
    await bed.stack.platform.sql.query(
      `UPDATE clients SET tier_features = '{"max_session_minutes": 30}' WHERE id = $1`,
      [B().clientId],
    );
    await billedSession(B().clientId, `date_trunc('month', now(), 'UTC') - interval '2 days'`, 45);
    await billedSession(B().clientId, `date_trunc('month', now(), 'UTC')`, 20);
    const allowed = await request(rt, B());
    expect(allowed.answer).toBe('accepted');
    await rt.leases.release(allowed.id);

    await billedSession(B().clientId, `date_trunc('month', now(), 'UTC')`, 10);
    const refused = await request(rt, B());
    expect(refused).toMatchObject({ answer: 'rejected', code: 'max_session_minutes' });
    expect(refused.reason).toContain(
      `client ${B().clientId} has used 30 of its 30 session minutes this month`,
    );
    expect(refused.reason).toContain("this client's tier_features override");
    expect(await leases(B().clientId)).toEqual([]);
  });
});

describe('sidekick usage', () => {
  /** percentile_cont: linear between the two nearest ranks. */
  const percentile = (values: number[], p: number) => {
    const v = [...values].sort((a, b) => a - b);
    const pos = p * (v.length - 1);
    const lo = Math.floor(pos);
    return v[lo]! + (v[Math.min(lo + 1, v.length - 1)]! - v[lo]!) * (pos - lo);
  };

  it('per sidekick: the ledger totals and the replies’ latency percentiles; --top orders clients by a cost driver', async () => {
    const job = bed.runtime();
    for (const [client, lines] of [
      [A(), ['What tyre pressure should my road bike have?', 'And for gravel?']],
      [A(), ['How often should I clean my chain?']],
      [B(), ['When should I water my fern?']],
    ] as const) {
      const id = jobId();
      expect((await request(job, client, id)).answer).toBe('accepted');
      await converse(job, client, lines, { userId: demo().userId, sessionId: id, lease: true });
    }
    const env = stackEnv(bed.stack);
    const run = await sidekick(['usage', '--client', A().clientId, '--json'], env);
    expect(run.code, run.stderr).toBe(0);
    const report = json<ClientUsageReport>(run);
    const [ledgerA] = await bed.stack.platform.sql.query<{ n: number; llm: number; minutes: number }>(
      `SELECT count(*)::int AS n, sum(llm_prompt_tokens + llm_completion_tokens)::int AS llm,
              round(sum(duration_seconds) / 60, 2)::float8 AS minutes
         FROM session_usage WHERE client_id = $1`,
      [A().clientId],
    );
    expect(report).toMatchObject({ client_id: A().clientId, tier: 'adventurer', latency_unavailable: null });
    expect(report.sidekicks.map((s) => s.agent_slug)).toEqual([A().agentSlug]);
    const bike = report.sidekicks[0]!;
    expect(bike.usage.sessions).toBe(2);
    expect(ledgerA!.n).toBe(2);
    expect(bike.usage.llm_prompt_tokens + bike.usage.llm_completion_tokens).toBe(ledgerA!.llm);
    expect(bike.usage.minutes).toBe(ledgerA!.minutes);
    // Every reply of A's this month that has a latency (earlier tests' included), as stored.
    const e2e = (
      await bed.stack.pool.sql.query<{ e2e: number }>(
        `SELECT (metadata -> 'latency' ->> 'e2e_ms')::float8 AS e2e FROM conversation_transcripts
          WHERE client_id = $1 AND role = 'assistant' AND metadata ? 'latency' AND created_at >= date_trunc('month', now(), 'UTC')`,
        [A().clientId],
      )
    ).map((r) => r.e2e);
    expect(e2e.length).toBeGreaterThanOrEqual(3);
    expect(bike.latency.e2e?.turns).toBe(e2e.length);
    for (const [p, key] of [
      [0.5, 'p50_ms'],
      [0.9, 'p90_ms'],
      [0.99, 'p99_ms'],
    ] as const) {
      expect(bike.latency.e2e![key]).toBeCloseTo(percentile(e2e, p), 0);
    }
    expect(bike.latency.context?.turns).toBe(e2e.length);
    expect(bike.latency.llm_ttft?.turns).toBe(e2e.length);
    // A text session has no end of turn, STT or TTS: nothing made up for them.
    expect(bike.latency.end_of_turn).toBeUndefined();
    expect(bike.latency.tts_ttfb).toBeUndefined();

    const text = await sidekick(['usage', '--client', A().clientId], env);
    expect(text.stdout).toContain(`sidekick ${A().agentSlug}: 2 sessions, ${ledgerA!.minutes} min`);
    expect(text.stdout).toMatch(/\n {4}e2e +\d+ +\d+\.\d +\d+\.\d +\d+\.\d\n/);

    const top = json<{ by: string; clients: TopClient[] }>(
      await sidekick(['usage', '--top', '--by', 'llm_tokens', '--json'], env),
    );
    expect(top.by).toBe('llm_tokens');
    expect(top.clients.map((c) => c.client_id)).toEqual([A().clientId, B().clientId]);
    expect(top.clients[0]!.llm_tokens).toBe(ledgerA!.llm);
    expect(top.clients[0]!.llm_tokens).toBeGreaterThan(top.clients[1]!.llm_tokens);
    expect(top.clients[1]).toMatchObject({ name: expect.any(String), tier: 'adventurer', sessions: 1 });
  });

  it('refuses what it cannot answer, naming the option', async () => {
    const env = stackEnv(bed.stack);
    const neither = await sidekick(['usage'], env);
    expect([neither.code, neither.stderr.trim()]).toEqual([2, 'error: give either --client <id> or --top']);
    const bad = await sidekick(['usage', '--top', '--from', '2026-05-01T10:00'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("option '--from <date>' argument '2026-05-01T10:00' is invalid");
    const backwards = await sidekick(['usage', '--top', '--from', '2026-05-02', '--to', '2026-05-01'], env);
    expect([backwards.code, backwards.stderr.trim()]).toEqual([2, 'error: --from: must be before --to']);
    const unknown = await sidekick(['usage', '--client', randomUUID(), '--json'], env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('is not in the platform database');
  });
});

function emptyUsage() {
  return {
    audio_in_seconds: 0,
    audio_out_seconds: 0,
    llm_prompt_tokens: 0,
    llm_prompt_cached_tokens: 0,
    llm_completion_tokens: 0,
    tts_characters: 0,
    tts_audio_seconds: 0,
    stt_audio_seconds: 0,
    embedding_tokens: 0,
    tool_calls: 0,
    user_turns: 0,
    assistant_turns: 0,
    models: [],
  };
}

afterEach(() => {
  bed.openai.setDelay('chat', 0);
});
