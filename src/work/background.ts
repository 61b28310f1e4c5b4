import OpenAI from 'openai';
import type { WorkerRuntime } from '../agent/runtime.js';
import type { Config } from '../config.js';
import type { PlatformAdmin } from '../ops/platform.js';
import { sweepIfDue } from '../ops/retention.js';
import { Leases } from './leases.js';
import { postSessionHandler } from './post-session.js';
import { type WorkHandler, WorkRunner } from './runner.js';
import { transcriptSpoolHandler } from './spool.js';
import { webhookHandler } from './webhook.js';
import {
  outboundTransport,
  type SigningSecrets,
  signingSecretsFrom,
  type WebhookTransport,
} from './webhook-outbound.js';

/**
 * The work the worker's main process does beside LiveKit's jobs: the durable queue's items
 * (post-session digests, webhooks, spooled turns), local spool files moved into the queue once the
 * platform answers, and the retention sweep on its schedule. Job processes only enqueue.
 */

export interface AfterSessionDeps {
  transport: WebhookTransport;
  secrets: SigningSecrets;
}

/** The runtime's outbound client (the guard, OUTBOUND_ALLOWLIST) and its clients' signing secrets. */
export function afterSessionDeps(runtime: Pick<WorkerRuntime, 'outbound' | 'secrets'>): AfterSessionDeps {
  return { transport: outboundTransport(runtime.outbound), secrets: signingSecretsFrom(runtime.secrets) };
}

/** The session's own model for post-session digests; undefined without an API key. */
export function digestModel(config: Config) {
  if (!config.openai.apiKey) return undefined;
  return {
    client: new OpenAI({
      apiKey: config.openai.apiKey,
      baseURL: config.openai.baseUrl ?? undefined,
      maxRetries: 0,
    }),
    model: config.models.llm,
  };
}

/** Every handler of the after-session work, wired to the runtime (the worker, commands, tests). */
export function afterSessionHandlers(runtime: WorkerRuntime, deps: AfterSessionDeps): WorkHandler[] {
  const { connections, work: queue, log } = runtime;
  return [
    postSessionHandler({ connections, queue, llm: digestModel(runtime.config), log }),
    transcriptSpoolHandler({ connections, embedder: runtime.embedder, queue, log }),
    webhookHandler({ connections, transport: deps.transport, secrets: deps.secrets, log }),
  ];
}

export interface BackgroundWork {
  /** No new work; what runs gets `graceMs` to finish (what does not resumes on another worker). */
  stop(graceMs?: number): Promise<void>;
}

export function startBackgroundWork(
  runtime: WorkerRuntime,
  deps: AfterSessionDeps & { platform: PlatformAdmin },
): BackgroundWork {
  const { log } = runtime;
  const runner = new WorkRunner({
    queue: runtime.work,
    handlers: afterSessionHandlers(runtime, deps),
    log: log.child({ component: 'work' }),
    pollMs: 2000,
    concurrency: 4,
  });
  runner.start();

  const timers: NodeJS.Timeout[] = [];
  const every = (ms: number, what: string, task: () => Promise<unknown>) => {
    let busy = false;
    const t = setInterval(() => {
      if (busy) return;
      busy = true;
      task()
        .catch((err: Error) => log.warn({ reason: err.message }, `${what} failed; trying again later`))
        .finally(() => {
          busy = false;
        });
    }, ms);
    t.unref();
    timers.push(t);
  };
  every(10_000, 'moving the local transcript spool', () => runtime.spool.flushLocal());
  // Sessions whose process died: their leases expire, and their ledger rows are written from the
  // last renewal (by whichever worker gets there first, once).
  every(Math.min(30_000, runtime.config.leases.ttlS * 500), 'settling expired session leases', () =>
    runtime.leases.settleExpired(),
  );
  const interval = runtime.config.retention.sweepIntervalS;
  if (interval > 0) {
    const retention = {
      platform: deps.platform,
      connections: runtime.connections,
      leases: new Leases(deps.platform.db),
      holder: runtime.work.workerId,
      log: log.child({ component: 'retention' }),
    };
    every(Math.min(60_000, interval * 1000), 'the retention sweep', () => sweepIfDue(retention, interval));
  }
  return {
    async stop(graceMs = 10_000) {
      for (const t of timers) clearInterval(t);
      await runner.stop(graceMs);
    },
  };
}
