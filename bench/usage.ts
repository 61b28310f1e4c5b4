/**
 * `npx tsx bench/usage.ts [--jobs N] [--turns N]` (with STACK_POSTGRES_URL: on the real server):
 * what issue 15's bookkeeping costs.
 *
 * Per job: the session lease's platform round trips, counted at the platform's gateway for each
 * step (requestFunc, the job's start, its end), and each request timed where the worker makes it.
 * Per turn: the latency recording's own CPU time (the recorder and the metrics, on the session's
 * real ChatMessages), what it adds to the transcript row, and the pool requests of a turn (the
 * latency rides the row the turn writes anyway).
 */
import { randomUUID } from 'node:crypto';
import { JobRequest, llm, voice } from '@livekit/agents';
import { Job } from '@livekit/protocol';
import { Command } from 'commander';
import { createLLM } from '../src/agent/models.js';
import { requestHandler } from '../src/agent/request.js';
import { prepareSession } from '../src/agent/session.js';
import type { TurnContext } from '../src/context/context-manager.js';
import { createSupabase } from '../src/tenancy/supabase.js';
import { SessionMeter } from '../src/usage/meter.js';
import { WorkerMetrics } from '../src/usage/metrics.js';
import { type LeaseOperation, SessionLeases } from '../src/usage/session-leases.js';
import { metadataFor, startAfterSessionBed } from '../test/support/after-session.js';
import { captureLogs } from '../test/support/logs.js';
import { summarize } from './data.js';

const opts = new Command()
  .option('--jobs <n>', 'leased sessions', (v) => Number(v), 20)
  .option('--turns <n>', 'user turns per session', (v) => Number(v), 2)
  .option('--iterations <n>', 'recorder iterations for the CPU time', (v) => Number(v), 100_000)
  .parse()
  .opts<{ jobs: number; turns: number; iterations: number }>();

const bed = await startAfterSessionBed({ CLIENT_CACHE_TTL_MS: '30000' });
const client = bed.stack.demo!.adventurers[0]!;
const timings = new Map<LeaseOperation, number[]>();
const timed = (operation: LeaseOperation, seconds: number) => {
  timings.set(operation, [...(timings.get(operation) ?? []), seconds * 1000]);
};
/** A runtime whose leases are timed here (each process has its own, as the worker's do). */
const runtime = () => {
  const rt = bed.runtime();
  rt.leases = new SessionLeases(
    createSupabase(bed.stack.platform.url, bed.stack.platform.serviceRoleKey, { timeoutMs: 5000 }),
    rt.work.workerId,
    rt.leases.times,
    timed,
  );
  return rt;
};
const leaseRequests = () =>
  bed.stack.platform.gateway.requests.filter((r) => /session_lease/.test(r.path)).map((r) => r.path);

const main = runtime();
const steps = { request: [] as string[][], start: [] as string[][], end: [] as string[][] };
const poolPerTurn: number[] = [];
let rowBytes = 0;
for (let j = 0; j < opts.jobs; j++) {
  const id = `AJ_bench_${randomUUID().slice(0, 8)}`;
  bed.stack.platform.gateway.reset();
  await requestHandler(
    main,
    captureLogs('warn').log,
    'sidekick',
  )(
    new JobRequest(
      new Job({ id, metadata: JSON.stringify({ client_id: client.clientId, agent_slug: client.agentSlug }) }),
      async () => undefined,
      async () => undefined,
    ),
  );
  steps.request.push(leaseRequests());
  const job = runtime();
  bed.stack.platform.gateway.reset();
  const prepared = await prepareSession(job, metadataFor(client), job.log, { sessionId: id, lease: true });
  steps.start.push(leaseRequests());
  const session = new voice.AgentSession({ llm: createLLM(job.config) });
  prepared.attach(session);
  await session.start({ agent: prepared.agent });
  for (let t = 0; t < opts.turns; t++) {
    await prepared.transcripts.flush();
    bed.stack.pool.gateway.reset();
    await session.run({ userInput: `How often should I clean my chain? (${t})` }).wait();
    await prepared.transcripts.flush();
    poolPerTurn.push(bed.stack.pool.gateway.count);
  }
  await session.close();
  bed.stack.platform.gateway.reset();
  await prepared.close();
  steps.end.push(leaseRequests());
  const [row] = await bed.stack.pool.sql.query<{ bytes: number }>(
    `SELECT length((metadata -> 'latency')::text) AS bytes FROM conversation_transcripts
      WHERE conversation_id = $1 AND metadata ? 'latency' LIMIT 1`,
    [prepared.conversationId],
  );
  rowBytes = row?.bytes ?? rowBytes;
}

// The recorder's own time, on a reply's real shapes: the user turn, the LLM's metrics, the reply.
const meter = new SessionMeter({ tier: 'adventurer', audio: true, metrics: new WorkerMetrics() });
const context = {
  elapsedMs: 42.7,
  outcomes: { documents: 'ok', recall: 'ok' },
} as unknown as TurnContext;
const user = llm.ChatMessage.create({
  role: 'user',
  content: 'How often should I clean my chain?',
  metrics: { transcriptionDelay: 0.21, endOfTurnDelay: 0.55, stoppedSpeakingAt: Date.now() / 1000 },
});
const started = performance.now();
for (let i = 0; i < opts.iterations; i++) {
  const reply = llm.ChatMessage.create({
    role: 'assistant',
    content: 'Every 300 km, or after a wet ride.',
    metrics: { llmNodeTtft: 0.31, ttsNodeTtfb: 0.12, e2eLatency: 0.98, startedSpeakingAt: Date.now() / 1000 },
  });
  meter.turn(user, undefined);
  meter.turn(reply, { ...context });
}
const perTurnUs = ((performance.now() - started) * 1000) / opts.iterations;

const same = (list: string[][]) => {
  const distinct = new Set(list.map((l) => l.join(' ')));
  return distinct.size === 1
    ? `${list[0]!.length} (${list[0]!.join(', ') || 'none'})`
    : `varied: ${[...distinct].join(' | ')}`;
};
const ms = (op: LeaseOperation) => {
  const s = summarize(timings.get(op) ?? []);
  return `${op}: median ${s.p50.toFixed(2)} ms, p95 ${s.p95.toFixed(2)} ms (n=${s.n})`;
};
console.log(
  `database: ${process.env.STACK_POSTGRES_URL ? 'real PostgreSQL server' : 'PGlite'}; ${opts.jobs} jobs of ${opts.turns} turns`,
);
console.log('lease round trips per job, at the platform gateway:');
console.log(`  requestFunc: ${same(steps.request)}`);
console.log(`  job start:   ${same(steps.start)}`);
console.log(`  job end:     ${same(steps.end)}`);
console.log(`  while the session lives: 1 renewal per SESSION_LEASE_TTL_S / 3 (20 s by default)`);
for (const op of ['acquire', 'start', 'renew', 'finish'] as const) console.log(`  ${ms(op)}`);
console.log('latency recording per turn:');
console.log(`  CPU: ${perTurnUs.toFixed(2)} µs (recorder + metrics, ${opts.iterations} replies)`);
console.log(`  transcript row: +${rowBytes} bytes of metadata.latency, no request of its own`);
console.log(
  `  pool requests per turn (its lookup and transcript writes, the latency in them): ${[...new Set(poolPerTurn)].sort().join(' or ')}`,
);
await bed.stop();
process.exit(0);
