/**
 * Session start, cold, as production runs it: a fresh job process per job (LiveKit forks one and
 * runs prewarm in it), from the job's assignment to the session started and to the greeting's
 * first audio frame; the product's job against a bare worker's, alternately, in one run. Round
 * trips are counted at the stack's gateways during the job (prewarm's are reported apart).
 */
import { fork } from 'node:child_process';
import { OpenAIEmbedder } from '../src/context/embeddings.js';
import { startStack } from '../src/stack/stack.js';
import { startOpenAIServer } from '../test/support/openai-server.js';
import { summarize } from './data.js';

interface JobResult {
  prewarmMs: number;
  startedMs: number;
  firstAudioMs: number;
  platformTrips: number;
  clientTrips: number;
  prewarmPlatformTrips: number;
}

export async function benchColdStart(o: {
  serverUrl: string | undefined;
  jobs: number;
  out: (line?: string) => void;
}): Promise<void> {
  const openai = await startOpenAIServer({ speechDurationMs: () => 300 });
  openai.setDelay('speech', 150);
  const embedder = new OpenAIEmbedder({ apiKey: 'sk-loopback', baseURL: openai.baseURL });
  const stack = await startStack({ seed: true, serverUrl: o.serverUrl, embedder });
  const demo = stack.demo!;
  const acme = demo.adventurers[0]!;
  const [agent] = await stack.pool.sql.query<{ greeting: string }>(
    'SELECT greeting FROM agents WHERE client_id = $1 AND slug = $2',
    [acme.clientId, acme.agentSlug],
  );
  const env = {
    ...process.env,
    PLATFORM_SUPABASE_URL: stack.platform.url,
    PLATFORM_SUPABASE_SERVICE_ROLE_KEY: stack.platform.serviceRoleKey,
    OPENAI_API_KEY: 'sk-loopback',
    OPENAI_BASE_URL: openai.baseURL,
    EMBEDDING_PROVIDER: 'openai',
    LOG_LEVEL: 'error',
  };
  const job = {
    metadata: JSON.stringify({ client_id: acme.clientId, agent_slug: acme.agentSlug, user_id: demo.userId }),
    greeting: agent!.greeting,
  };

  const one = (kind: 'product' | 'bare') =>
    new Promise<JobResult>((resolve, reject) => {
      const platformBefore = stack.platform.gateway.count;
      let prewarmTrips = 0;
      const child = fork(new URL('./job-process.ts', import.meta.url), [kind], {
        env,
        execArgv: ['--import', 'tsx'],
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      });
      const result: Partial<JobResult> = {};
      let platformAtJob = 0;
      let clientAtJob = 0;
      child.on('message', (m: Record<string, unknown>) => {
        if ('prewarmMs' in m) result.prewarmMs = m.prewarmMs as number;
        if (m.ready) {
          prewarmTrips = stack.platform.gateway.count - platformBefore;
          platformAtJob = stack.platform.gateway.count;
          clientAtJob = stack.pool.gateway.count;
          child.send(job);
        }
        if ('startedMs' in m) {
          Object.assign(result, m, {
            platformTrips: stack.platform.gateway.count - platformAtJob,
            clientTrips: stack.pool.gateway.count - clientAtJob,
            prewarmPlatformTrips: prewarmTrips,
          });
        }
        if ('error' in m) reject(new Error(`${kind} job process: ${m.error}`));
      });
      child.on('exit', (code) =>
        result.startedMs !== undefined
          ? resolve(result as JobResult)
          : reject(new Error(`${kind} job exited ${code}`)),
      );
    });

  const results: Record<'product' | 'bare', JobResult[]> = { product: [], bare: [] };
  try {
    for (let i = 0; i < o.jobs; i++) {
      for (const kind of i % 2 ? (['bare', 'product'] as const) : (['product', 'bare'] as const)) {
        results[kind].push(await one(kind));
      }
    }
  } finally {
    await stack.stop();
    await openai.close();
  }
  const p = (xs: number[]) => summarize(xs).p50;
  const of = (kind: 'product' | 'bare', k: keyof JobResult) => p(results[kind].map((r) => r[k]));
  const fmt = (x: number) => `${x.toFixed(0)} ms`;
  o.out();
  o.out(
    `session start, cold: a fresh job process per job after prewarm and ${Number(process.env.JOB_IDLE_MS ?? 5000) / 1000} s idle (${o.jobs} jobs each, p50)`,
  );
  for (const k of ['startedMs', 'firstAudioMs'] as const) {
    const label = k === 'startedMs' ? 'assignment → session started' : "assignment → greeting's first audio";
    o.out(
      `  ${label}: bare ${fmt(of('bare', k))}, product ${fmt(of('product', k))}; ratio ${(of('product', k) / of('bare', k)).toFixed(2)}`,
    );
  }
  o.out(
    `  prewarm: bare ${fmt(of('bare', 'prewarmMs'))}, product ${fmt(of('product', 'prewarmMs'))} (platform round trips in prewarm ${Math.max(...results.product.map((r) => r.prewarmPlatformTrips))})`,
  );
  o.out(
    `  round trips during the job (max over jobs): platform ${Math.max(...results.product.map((r) => r.platformTrips))}, client database ${Math.max(...results.product.map((r) => r.clientTrips))}`,
  );
}
