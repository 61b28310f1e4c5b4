/**
 * /metrics for operators: served on the health port by the worker's main process, the sum of its
 * own metrics (requestFunc's decisions, the outbox) and of each job process's (sent over the
 * relay socket from a real child process running a real session). Prometheus' text format, labels
 * by tier and reason, never a client id or a secret.
 */
import { randomUUID } from 'node:crypto';
import { JobRequest } from '@livekit/agents';
import { Job } from '@livekit/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestHandler } from '../src/agent/request.js';
import { type HealthServer, serveWorkerHealth } from '../src/usage/health-server.js';
import { METRICS_SOCKET_ENV } from '../src/usage/metrics-relay.js';
import { type AfterSessionBed, startAfterSessionBed } from './support/after-session.js';
import { startJob } from './support/jobs.js';
import { captureLogs } from './support/logs.js';

let bed: AfterSessionBed;
let health: HealthServer;
/** Where the main process told its job processes to send their metrics. */
const jobEnv: NodeJS.ProcessEnv = {};
let main: ReturnType<AfterSessionBed['runtime']>;

beforeAll(async () => {
  bed = await startAfterSessionBed();
  main = bed.runtime();
  ({ health } = await serveWorkerHealth(main, 0, captureLogs().log, { env: jobEnv, outboxCacheMs: 0 }));
});
afterAll(async () => {
  await health?.close();
  await bed?.stop();
});

const A = () => bed.stack.demo!.adventurers[0]!;

async function scrape(): Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(`http://127.0.0.1:${health.port}/metrics`);
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

/** The value of one sample (`name{labels}`), or undefined when the series is not there. */
function sample(body: string, series: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Prometheus' text exposition format, line by line (version 0.0.4). */
function expectExpositionFormat(body: string): void {
  const name = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const labels = `\\{(?:${name}="(?:[^"\\\\\\n]|\\\\.)*"(?:,${name}="(?:[^"\\\\\\n]|\\\\.)*")*)?\\}`;
  const value = '(?:[-+]?(?:\\d+(?:\\.\\d*)?(?:e[-+]?\\d+)?|\\.\\d+)|NaN|[+-]Inf)';
  const line = new RegExp(
    `^(?:# HELP ${name} .*|# TYPE ${name} (?:counter|gauge|histogram|summary|untyped)|${name}(?:${labels})? ${value}(?: \\d+)?)$`,
  );
  const lines = body.split('\n').filter((l) => l !== '');
  expect(lines.length).toBeGreaterThan(20);
  for (const l of lines) expect(l).toMatch(line);
}

async function decide(clientId: string, agentSlug: string) {
  const req = new JobRequest(
    new Job({
      id: `AJ_${randomUUID().slice(0, 12)}`,
      metadata: JSON.stringify({ client_id: clientId, agent_slug: agentSlug }),
    }),
    async () => undefined,
    async () => undefined,
  );
  await requestHandler(main, captureLogs('warn').log, 'sidekick')(req);
  return req.id;
}

describe('/metrics on the health port', () => {
  it("sums the main process's and a job process's metrics in Prometheus' text format: decisions by tier and reason, the live session, lookups and latency, the lease round trips, the outbox; no client id, no secret", async () => {
    await bed.stack.platform.sql.exec('DELETE FROM session_leases; DELETE FROM work_items');
    // requestFunc in the main process: one accepted, one refused (an unknown client has no tier).
    const id = await decide(A().clientId, A().agentSlug);
    await decide(randomUUID(), 'nobody');

    const job = startJob(A(), id, 'What tyre pressure should my road bike have?', {
      ...bed.env,
      SESSION_LEASE_TTL_S: '3',
      [METRICS_SOCKET_ENV]: jobEnv[METRICS_SOCKET_ENV],
    });
    try {
      await job.said('running');
      const during = await scrape();
      expect(sample(during.body, 'sidekick_sessions_active{tier="adventurer"}')).toBe(1);
      job.send('turn');
      await job.said('session over');
      job.send('close');
      await job.said('closed');
      await job.exited;
    } finally {
      await job.kill();
    }

    const { status, type, body } = await scrape();
    expect(status).toBe(200);
    expect(type).toBe('text/plain; version=0.0.4; charset=utf-8');
    expectExpositionFormat(body);
    expect(sample(body, 'sidekick_jobs_total{tier="adventurer",decision="accepted",reason="ok"}')).toBe(1);
    expect(
      sample(body, 'sidekick_jobs_total{tier="unknown",decision="rejected",reason="client_not_found"}'),
    ).toBe(1);
    // The job process is gone: what it counted stays, what it held (the live session) goes.
    expect(sample(body, 'sidekick_sessions_active{tier="adventurer"}')).toBeUndefined();
    expect(sample(body, 'sidekick_context_lookup_seconds_count{tier="adventurer"}')).toBe(1);
    expect(
      sample(body, 'sidekick_context_lookups_total{tier="adventurer",part="documents",outcome="ok"}'),
    ).toBe(1);
    expect(sample(body, 'sidekick_llm_ttft_seconds_count{tier="adventurer"}')).toBe(1);
    expect(sample(body, 'sidekick_turn_e2e_seconds_count{tier="adventurer",from="text_input"}')).toBe(1);
    expect(sample(body, 'sidekick_transcript_turns_dropped_total{tier="adventurer"}') ?? 0).toBe(0);
    // The lease's round trips: requestFunc's acquire here, the job's start, renewals and finish there.
    expect(sample(body, 'sidekick_session_lease_seconds_count{operation="acquire"}')).toBe(1);
    expect(sample(body, 'sidekick_session_lease_seconds_count{operation="start"}')).toBe(1);
    expect(sample(body, 'sidekick_session_lease_seconds_count{operation="finish"}')).toBe(1);
    expect(sample(body, 'sidekick_session_lease_seconds_count{operation="renew"}')).toBeGreaterThanOrEqual(2);
    // The session's post-session work waits in the outbox (no runner here).
    expect(sample(body, 'sidekick_work_items{kind="post_session",status="pending"}')).toBe(1);
    expect(body).toContain('sidekick_worker_process_resident_memory_bytes');

    const clients = await bed.stack.platform.sql.query<{ id: string }>('SELECT id FROM clients');
    expect(clients.length).toBeGreaterThan(2);
    for (const c of clients) expect(body).not.toContain(c.id);
    for (const secret of [bed.stack.platform.serviceRoleKey, bed.env.OPENAI_API_KEY!, bed.env.SECRETS_KEY!])
      expect(body).not.toContain(secret);
    expect(body).not.toContain('tyre');
  }, 60_000);

  it('everything else on the port is LiveKit’s: before its server listens, / is 503 (not ready) and /worker 200 (alive)', async () => {
    const res = await fetch(`http://127.0.0.1:${health.port}/`);
    expect([res.status, await res.text()]).toEqual([503, 'worker starting\n']);
    const alive = await fetch(`http://127.0.0.1:${health.port}/worker`);
    expect([alive.status, await alive.json()]).toEqual([200, { state: 'starting' }]);
    const post = await fetch(`http://127.0.0.1:${health.port}/metrics`, { method: 'POST' });
    expect(post.status).toBe(405);
  });
});
