import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { type Config, loadConfig } from '../config.js';
import { type Embedder, OpenAIEmbedder } from '../context/embeddings.js';
import { HashingEmbedder } from '../context/hashing-embedder.js';
import { Allowlist, OutboundClient } from '../outbound/index.js';
import { SecretsKeyring } from '../secrets/keyring.js';
import { ClientSecretStore } from '../secrets/store.js';
import type { LocalStack } from '../stack/stack.js';
import { ClientConnectionManager } from '../tenancy/connections.js';
import { readSessionStart } from '../tenancy/session-start.js';
import { createSupabase } from '../tenancy/supabase.js';
import { asClientId } from '../tenancy/types.js';
import { WorkerMetrics } from '../usage/metrics.js';
import { SessionLeases } from '../usage/session-leases.js';
import { WorkQueue, workerIdentity } from '../work/queue.js';
import { TranscriptSpool } from '../work/spool.js';
import { parseJobMetadata } from './metadata.js';

/**
 * What a process builds once: config, the client directory and its connections, the embedder.
 * LiveKit runs each job in a process of its own (made in prewarm), so in a job this serves one
 * session; in the main process (requestFunc) and in `sidekick chat` the caches serve many lookups.
 */
export interface WorkerRuntime {
  config: Config;
  log: Logger;
  connections: ClientConnectionManager;
  embedder: Embedder;
  /** The platform's durable work queue: post-session work, webhooks, spooled turns. */
  work: WorkQueue;
  /** Where a session's unwritten turns go at its end (the work queue, or a local file). */
  spool: TranscriptSpool;
  /** Every call to a URL a client wrote (tools, MCP servers) goes through it. */
  outbound: OutboundClient;
  /** Clients' secrets (platform database); null without SECRETS_KEY: sessions get no client tools. */
  secrets: ClientSecretStore | null;
  /** Sessions' leases: the concurrency cap and quota across workers, and the usage ledger. */
  leases: SessionLeases;
  /** This process's Prometheus metrics (a job process sends them to the main one, which serves them). */
  metrics: WorkerMetrics;
}

export function createEmbedder(config: Config): Embedder {
  const e = config.embeddings;
  if (e.provider === 'local') return new HashingEmbedder({ dimensions: e.dimensions });
  return new OpenAIEmbedder({
    apiKey: e.apiKey,
    baseURL: e.baseUrl ?? undefined,
    model: e.model,
    dimensions: e.dimensions,
  });
}

export function createRuntime(
  config: Config,
  log: Logger,
  overrides: { embedder?: Embedder; work?: WorkQueue; outbound?: OutboundClient } = {},
): WorkerRuntime {
  if (config.platform.mode !== 'remote') {
    throw new Error(
      'createRuntime needs PLATFORM_SUPABASE_URL: start the embedded stack first (main.ts does)',
    );
  }
  const connections = ClientConnectionManager.forPlatform({
    url: config.platform.url,
    serviceRoleKey: config.platform.serviceRoleKey,
    ttlMs: config.tenancy.clientCacheTtlMs,
    tokenTtlSeconds: config.tenancy.tenantTokenTtlS,
    maxProjects: config.tenancy.maxCachedConnections,
    warn: (msg, fields) => log.warn(fields, msg),
  });
  // The platform as this process's own work sees it (queue, secrets, leases), with the service role.
  const platform = createSupabase(config.platform.url, config.platform.serviceRoleKey, { timeoutMs: 5000 });
  const work = overrides.work ?? new WorkQueue(platform, workerIdentity());
  const keyring = SecretsKeyring.from(config.secrets);
  const metrics = new WorkerMetrics();
  return {
    config,
    log,
    connections,
    embedder: overrides.embedder ?? createEmbedder(config),
    work,
    spool: new TranscriptSpool({ queue: work, dir: config.transcripts.spoolDir, log }),
    outbound:
      overrides.outbound ??
      new OutboundClient({ allowlist: Allowlist.parse(config.outbound.allowlist.join(',')) }),
    secrets: keyring ? new ClientSecretStore(platform, keyring) : null,
    leases: new SessionLeases(
      platform,
      work.workerId,
      { ttlSeconds: config.leases.ttlS, pendingSeconds: config.leases.pendingS },
      (operation, seconds) => metrics.lease(operation, seconds),
    ),
    metrics,
  };
}

/**
 * What a job process does in prewarm, before it knows its client, so that its one session starts
 * as fast as a bare worker's: the supabase-js clients and token minters of every active pool (one
 * platform request), their signing keys imported, and the job's hot path run once with nothing to
 * find (a directory lookup of an unknown client, a session start in each pool for no client), so
 * the first real one meets warm code and no key import. Failures only cost the warm-up.
 */
export async function prewarmRuntime(runtime: WorkerRuntime): Promise<void> {
  const { connections, log } = runtime;
  try {
    const unknown = randomUUID();
    parseJobMetadata(JSON.stringify({ client_id: unknown, agent_slug: 'prewarm' }));
    const [pools] = await Promise.all([
      connections.prewarm(),
      connections.directory.getClient(asClientId(unknown)).catch(() => undefined),
    ]);
    await Promise.all(
      pools.map((db) =>
        readSessionStart(db, {
          clientId: db.clientId,
          agentSlug: 'prewarm',
          maxSidekicks: null,
          claimConversation: false,
        }).catch(() => undefined),
      ),
    );
    connections.directory.invalidate(unknown);
  } catch (err) {
    log.warn(
      { reason: (err as Error).message },
      'prewarm of the client connections failed; the first session sets them up',
    );
  }
}

/**
 * With no PLATFORM_SUPABASE_URL, starts the embedded local stack with the demo clients and points
 * `env` (and so the returned config) at it; with one, returns the config unchanged. Demo documents
 * are embedded with the worker's own embedder, so retrieval matches its queries.
 */
export async function withEmbeddedPlatform(
  config: Config,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ config: Config; stack: LocalStack | undefined }> {
  if (config.platform.mode !== 'embedded') return { config, stack: undefined };
  log.info('no PLATFORM_SUPABASE_URL: starting the embedded local stack with demo clients');
  // Loaded only here: a configured worker runs without the stack's (optional) packages installed.
  const { startStack } = await import('../stack/stack.js');
  const stack = await startStack({
    seed: true,
    // Each database starts when a session (or a command) first needs it: the platform at the
    // first job, the pool at the first adventurer's, the demo champion's project at its first.
    lazy: true,
    onProjectStarted: (name, ms) =>
      log.info({ project: name, startup_ms: Math.round(ms) }, `embedded ${name} database started`),
    serverUrl: config.stack.postgresUrl ?? undefined,
    embedder: createEmbedder(config),
  });
  // Job processes are forked from this one and read their config from the environment.
  Object.assign(env, {
    PLATFORM_SUPABASE_URL: stack.platform.url,
    PLATFORM_SUPABASE_SERVICE_ROLE_KEY: stack.platform.serviceRoleKey,
  });
  const demo = stack.demo!;
  log.info(
    {
      startup_ms: Math.round(stack.startupMs),
      adventurers: demo.adventurers.map((c) => `${c.clientId} (${c.agentSlug})`),
      champion: `${demo.champion.clientId} (${demo.champion.agentSlug})`,
      user_id: demo.userId,
    },
    'embedded stack ready with demo clients (each database starts on its first request)',
  );
  return { config: loadConfig(env), stack };
}
