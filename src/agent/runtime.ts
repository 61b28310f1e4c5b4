import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { type Embedder, OpenAIEmbedder } from '../context/embeddings.js';
import { HashingEmbedder } from '../context/hashing-embedder.js';
import { ClientConnectionManager } from '../tenancy/connections.js';
import { ClientDirectory } from '../tenancy/directory.js';
import { createSupabase } from '../tenancy/supabase.js';
import type { SidekickRow } from './session-plan.js';

/**
 * What every job of one worker process shares: config, the client directory and its connections
 * (caches survive from job to job), the embedder, and the last known sidekick rows (so a session
 * can still start, degraded, while a client's database is down).
 */
export interface WorkerRuntime {
  config: Config;
  log: Logger;
  connections: ClientConnectionManager;
  embedder: Embedder;
  sidekicks: LRUCache<string, SidekickRow>;
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
  overrides: { embedder?: Embedder } = {},
): WorkerRuntime {
  if (config.platform.mode !== 'remote') {
    throw new Error(
      'createRuntime needs PLATFORM_SUPABASE_URL: start the embedded stack first (main.ts does)',
    );
  }
  const directory = new ClientDirectory({
    platform: createSupabase(config.platform.url, config.platform.serviceRoleKey, { timeoutMs: 5000 }),
    ttlMs: config.tenancy.clientCacheTtlMs,
  });
  const connections = new ClientConnectionManager({
    directory,
    tokenTtlSeconds: config.tenancy.tenantTokenTtlS,
    maxProjects: config.tenancy.maxCachedConnections,
    requestTimeoutMs: 10_000,
    warn: (msg, fields) => log.warn(fields, msg),
  });
  return {
    config,
    log,
    connections,
    embedder: overrides.embedder ?? createEmbedder(config),
    sidekicks: new LRUCache({ max: 10_000 }),
  };
}
