/**
 * `npm run bench`: speed and memory of the per-turn and per-job paths, measured in one run and
 * printed as ratios and counts (these machines are shared and noisy: compare within a run).
 *   npm run bench -- --clients 100 --docs 50 --chunks 20 --turns 200
 *   npm run bench -- --sections audio,start       (only the audio path and the cold session start)
 *   STACK_POSTGRES_URL=postgres://... npm run bench      (the same on a real PostgreSQL server)
 */
import { spawnSync } from 'node:child_process';
import { Command } from 'commander';
import pino from 'pino';
import { parseJobMetadata } from '../src/agent/metadata.js';
import { planSession } from '../src/agent/session-plan.js';
import { ContextManager } from '../src/context/context-manager.js';
import { HashingEmbedder } from '../src/context/hashing-embedder.js';
import { type LocalProject, startProject } from '../src/stack/project.js';
import { startStack } from '../src/stack/stack.js';
import { ClientConnectionManager } from '../src/tenancy/connections.js';
import { asClientId } from '../src/tenancy/types.js';
import { benchAudioPath } from './audio-path.js';
import { benchColdStart } from './cold-start.js';
import { BENCH_USER, clientIdOf, loadTenants, type Shape, summarize } from './data.js';
import { describeStart, measureStart } from './start.js';

const opts = new Command('bench')
  .option('--clients <n>', 'clients in the large pool', '100')
  .option('--small <n>', 'clients in the small pool', '10')
  .option('--docs <n>', 'documents per client', '50')
  .option('--chunks <n>', 'chunks per document', '20')
  .option('--transcripts <n>', 'past transcript turns per client', '40')
  .option('--turns <n>', 'turns measured per target', '200')
  .option(
    '--sections <list>',
    'what to measure: audio, retrieval, start, memory',
    'audio,retrieval,start,memory',
  )
  .option('--audio-turns <n>', 'single-segment turns per audio-path configuration', '6')
  .option('--ttft <list>', 'LLM times to first token for the audio path, ms', '300,600,1000')
  .option('--stt-ms <n>', 'loopback STT: end of a segment to its final transcript, ms', '300')
  .option('--tts-ms <n>', 'loopback TTS: time to first byte, ms', '150')
  .option('--jobs <n>', 'fresh job processes per kind for the cold session start', '8')
  .option('--postgres-url <url>', 'real PostgreSQL server (default: STACK_POSTGRES_URL, else PGlite)')
  .parse()
  .opts<Record<string, string>>();

const num = (k: string) => Number(opts[k]);
const serverUrl = opts.postgresUrl ?? process.env.STACK_POSTGRES_URL ?? undefined;
const shape: Omit<Shape, 'clients'> = {
  docs: num('docs'),
  chunks: num('chunks'),
  transcripts: num('transcripts'),
};
const log = pino({ level: 'warn' }, pino.destination(2));
const embedder = new HashingEmbedder({ dimensions: 1024 });
const fmt = (ms: number) => `${ms.toFixed(1)} ms`;
const out = (line = '') => console.log(line);

const t0 = performance.now();
const sections = new Set(String(opts.sections).split(','));
out(`# backend: ${serverUrl ? 'real PostgreSQL server' : 'PGlite'}`);
if (sections.has('audio')) {
  await benchAudioPath({
    serverUrl,
    ttfts: String(opts.ttft).split(',').map(Number),
    turns: num('audioTurns'),
    sttMs: num('sttMs'),
    ttsMs: num('ttsMs'),
    out,
  });
}
if (sections.has('start')) await benchColdStart({ serverUrl, jobs: num('jobs'), out });
if (!sections.has('retrieval') && !sections.has('memory')) {
  out(`# total bench time ${fmt(performance.now() - t0)}`);
  process.exit(0);
}
const stack = await startStack({ serverUrl });
const small = await startProject({ name: 'small-pool', kind: 'shared_pool', serverUrl });
out();
out(`# retrieval bench stack up in ${fmt(stack.startupMs)}`);

async function registerPool(project: LocalProject, name: string): Promise<string> {
  const [row] = await stack.platform.sql.query<{ id: string }>(
    `INSERT INTO shared_pool_config (pool_name, supabase_url, supabase_service_role_key, supabase_anon_key, jwt_secret, max_clients)
     VALUES ($1, $2, $3, $4, $5, 100000) RETURNING id`,
    [name, project.url, project.serviceRoleKey, project.anonKey, project.jwtSecret],
  );
  return row!.id;
}

async function registerShared(ids: string[], poolId: string) {
  for (const id of ids) {
    await stack.platform.sql.query(
      `INSERT INTO clients (id, name, tier, hosting_type, max_sidekicks, shared_pool_id, provisioning_status)
       VALUES ($1, 'bench', 'adventurer', 'shared', 1, $2, 'ready')`,
      [id, poolId],
    );
  }
}

const large = num('clients');
const smallN = num('small');
const t = performance.now();
const largeIds = await loadTenants(stack.pool.sql, 'shared_pool', { ...shape, clients: large });
await registerShared(largeIds, stack.poolId);
const smallIds = await loadTenants(small.sql, 'shared_pool', { ...shape, clients: smallN }, 10_000);
await registerShared(smallIds, await registerPool(small, 'small_pool'));
const dedicatedId = clientIdOf(20_000);
await loadTenants(stack.dedicated.sql, 'dedicated', { ...shape, clients: 1 }, 20_000);
await stack.platform.sql.query(
  `INSERT INTO clients (id, name, tier, hosting_type, supabase_url, supabase_service_role_key, provisioning_status)
   VALUES ($1, 'bench', 'champion', 'dedicated', $2, $3, 'ready')`,
  [dedicatedId, stack.dedicated.url, stack.dedicated.serviceRoleKey],
);
const perClient = shape.docs * shape.chunks;
out(
  `# data: large pool ${large} clients, small pool ${smallN}, dedicated 1; ${perClient} chunks and ${shape.transcripts} transcript turns per client; loaded in ${fmt(performance.now() - t)}`,
);

function newManager(ttlMs = 60_000) {
  return ClientConnectionManager.forPlatform({
    url: stack.platform.url,
    serviceRoleKey: stack.platform.serviceRoleKey,
    ttlMs,
    maxProjects: 100,
  });
}

// ---- context retrieval per turn -------------------------------------------------------------
const manager = newManager();
const QUERIES = ['how do I reset it', 'what is the warranty', 'passage about documents', 'turn of the user'];

async function measureRetrieval(ids: string[], gateway: LocalProject['gateway']) {
  const turns = num('turns');
  const samples: number[] = [];
  let roundTrips = 0;
  for (let i = 0; i < turns + 10; i++) {
    const clientId = ids[i % ids.length]!;
    const conn = await manager.forClient(asClientId(clientId));
    const context = new ContextManager({
      db: conn.db,
      embedder,
      settings: { ragEnabled: true, matchCount: 5, matchThreshold: -1, recallCount: 3 },
      budgets: { lookupMs: 30_000, maxChars: 6000 },
      log,
    });
    const before = gateway.count;
    const ctx = await context.retrieve({
      query: `${QUERIES[i % QUERIES.length]} ${i}`,
      agentSlug: 'bench',
      userId: BENCH_USER,
      conversationId: undefined,
    });
    if (ctx.outcomes.documents !== 'ok' || ctx.outcomes.recall !== 'ok') {
      throw new Error(`lookup failed: ${JSON.stringify(ctx.outcomes)}`);
    }
    if (i >= 10) {
      samples.push(ctx.elapsedMs);
      roundTrips += gateway.count - before;
    }
  }
  return { ...summarize(samples), roundTripsPerTurn: roundTrips / turns };
}

const rLarge = await measureRetrieval(largeIds, stack.pool.gateway);
const rSmall = await measureRetrieval(smallIds, small.gateway);
const rDedicated = await measureRetrieval([dedicatedId], stack.dedicated.gateway);
out();
out(`context retrieval per turn (${num('turns')} turns each; documents + recall in one round trip)`);
out(`  shared pool, ${large} clients:  p50 ${fmt(rLarge.p50)}  p95 ${fmt(rLarge.p95)}`);
out(`  shared pool, ${smallN} clients:   p50 ${fmt(rSmall.p50)}  p95 ${fmt(rSmall.p95)}`);
out(`  dedicated project:        p50 ${fmt(rDedicated.p50)}  p95 ${fmt(rDedicated.p95)}`);
out(`  ratio shared/dedicated (p50): ${(rLarge.p50 / rDedicated.p50).toFixed(2)}`);
out(`  ratio large/small pool (p50): ${(rLarge.p50 / rSmall.p50).toFixed(2)}`);
out(
  `  database round trips per turn (counted at the gateway): shared ${rLarge.roundTripsPerTurn}, dedicated ${rDedicated.roundTripsPerTurn}`,
);

// ---- session preparation ---------------------------------------------------------------------
const prep = { cold: [] as number[], warm: [] as number[], coldTrips: 0, warmTrips: 0 };
const prepManager = newManager();
const jobs = Math.min(50, largeIds.length);
for (const phase of ['cold', 'warm'] as const) {
  for (let i = 0; i < jobs; i++) {
    const raw = JSON.stringify({ client_id: largeIds[i], agent_slug: 'bench', user_id: BENCH_USER });
    const before = stack.platform.gateway.count;
    const start = performance.now();
    await planSession(parseJobMetadata(raw), prepManager, log, { claimConversation: false, embedder });
    prep[phase].push(performance.now() - start);
    prep[`${phase}Trips`] += stack.platform.gateway.count - before;
  }
}
const cold = summarize(prep.cold);
const warm = summarize(prep.warm);
out();
out(`session preparation, metadata → plan (${jobs} jobs each)`);
out(
  `  cold cache: p50 ${fmt(cold.p50)}  p95 ${fmt(cold.p95)}  platform round trips per job ${prep.coldTrips / jobs}`,
);
out(
  `  warm cache: p50 ${fmt(warm.p50)}  p95 ${fmt(warm.p95)}  platform round trips per job ${prep.warmTrips / jobs}`,
);
out(`  ratio cold/warm (p50): ${(cold.p50 / warm.p50).toFixed(2)}`);
out(
  `  live supabase-js clients after ${largeIds.length + smallIds.length + 1} clients served: ${manager.liveClients}`,
);

// ---- memory of a job process -----------------------------------------------------------------
// What prewarm loads in every job process (agents framework, OpenAI plugin, Silero VAD, runtime).
const probe = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    '-e',
    `const silero = await import('@livekit/agents-plugin-silero'); await import('@livekit/agents-plugin-openai');
     await import('./src/agent/session.ts'); const vad = await silero.VAD.load();
     globalThis.gc?.(); console.log(JSON.stringify({ rss: process.memoryUsage().rss }));`,
  ],
  { encoding: 'utf8' },
);
const rss = probe.stdout.trim().split('\n').at(-1);
out();
out(
  `job process after prewarm: ${rss ? `${Math.round(JSON.parse(rss).rss / 1024 / 1024)} MB resident` : `not measured (${probe.stderr.slice(0, 200)})`}`,
);
out(
  `stack process (3 projects + small pool + data): ${Math.round(process.memoryUsage().rss / 1024 / 1024)} MB resident`,
);
await small.stop();
await stack.stop();

// ---- the embedded default: npm start with nothing configured --------------------------------
// Measured after the bench's own stack is gone (bench/start.ts: ready = health endpoint up and
// waiting for LiveKit; memory = the sum of RSS over all of its processes).
const started = await measureStart();
out();
out(`npm start with nothing configured: ${describeStart(started)}`);
out(`# total bench time ${fmt(performance.now() - t0)}`);
process.exit(0);
