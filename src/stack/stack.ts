import { randomUUID } from 'node:crypto';
import type { Embedder } from '../context/embeddings.js';
import { pgliteTemplate } from './pglite-template.js';
import { type LocalProject, startProject } from './project.js';
import { type DemoClients, demoClients, registerDemoClients, seedDemoData } from './seed.js';
import type { SqlExecutor } from './sql.js';

export interface StackOptions {
  /** Superuser URL of a real PostgreSQL server with pgvector; each project becomes a database on it. */
  serverUrl?: string;
  /** Per project, overriding `serverUrl`: e.g. only the pool on a real server, the rest on PGlite. */
  serverUrls?: Partial<Record<'platform' | 'pool' | 'dedicated', string>>;
  /** Register the demo clients (two adventurers in the pool, one champion on the dedicated project). */
  seed?: boolean;
  /** Embeds the demo documents and transcripts; defaults to the built-in hashing embedder. */
  embedder?: Embedder;
  /** Gateway ports basePort, +1, +2 (platform, pool, dedicated); absent = any free ports. */
  basePort?: number;
  onLog?: (line: string) => void;
  /**
   * Start each project's database and PostgREST on its first request (seeded then, with `seed`),
   * not now; URLs and keys are known at once. What the embedded worker does: it is ready sooner
   * and holds only the databases that sessions have needed so far.
   */
  lazy?: boolean;
  /** Called as each project's database and PostgREST are up (with `lazy`: on first use). */
  onProjectStarted?: (name: string, ms: number) => void;
}

export interface LocalStack {
  platform: LocalProject;
  pool: LocalProject;
  dedicated: LocalProject;
  /** The pool's id in the platform's shared_pool_config. */
  poolId: string;
  demo: DemoClients | undefined;
  startupMs: number;
  /** Starts another dedicated project (a champion's own), as the tier upgrade needs. */
  addDedicated(name?: string): Promise<LocalProject>;
  /** The stack as environment variables (what `npm run stack` prints). */
  env(): Record<string, string>;
  stop(): Promise<void>;
}

export const SHARED_POOL_NAME = 'adventurer_pool';

/**
 * Starts the local Supabase-compatible stack: a platform project, one shared pool and one dedicated
 * project, each PGlite (or a database on a real server) + PostgREST 12 + the gateway. The pool is
 * registered in the platform's shared_pool_config, as an operator would do on hosted Supabase.
 * With `lazy`, each project's database and PostgREST start when it is first used.
 */
export async function startStack(opts: StackOptions = {}): Promise<LocalStack> {
  const t0 = performance.now();
  const port = (i: number) => (opts.basePort ? opts.basePort + i : undefined);
  const on = (server: 'platform' | 'pool' | 'dedicated', name: string = server) => ({
    serverUrl: opts.serverUrls?.[server] ?? opts.serverUrl,
    onLog: opts.onLog,
    onStarted: (ms: number) => opts.onProjectStarted?.(name, ms),
  });
  // Each project's demo data goes in as it starts (now, or on its first request when lazy);
  // the platform's records need only the other projects' URLs and keys.
  const seeding = (kind: 'shared_pool' | 'dedicated') =>
    opts.seed ? { onStart: (sql: SqlExecutor) => seedDemoData(kind, sql, opts.embedder) } : {};
  const lazy = opts.lazy ?? false;
  const poolId = randomUUID();
  let pool: LocalProject | undefined;
  let dedicated: LocalProject | undefined;
  const register = async (sql: SqlExecutor) => {
    await sql.query(
      `INSERT INTO shared_pool_config (id, pool_name, supabase_url, supabase_service_role_key, supabase_anon_key,
         supabase_project_ref, jwt_algorithm, jwt_secret, max_clients, is_active)
       VALUES ($1, $2, $3, $4, $5, 'local-pool', 'HS256', $6, 1000, true)`,
      [poolId, SHARED_POOL_NAME, pool!.url, pool!.serviceRoleKey, pool!.anonKey, pool!.jwtSecret],
    );
    if (opts.seed) await registerDemoClients({ platform: sql, dedicated: dedicated!, poolId });
  };
  const started = await Promise.allSettled([
    // Lazy: registered on its first request (the others are there by then). Eager: below.
    startProject({
      ...on('platform'),
      name: 'platform',
      kind: 'platform',
      port: port(0),
      lazy,
      ...(lazy ? { onStart: register } : {}),
    }),
    startProject({
      ...on('pool'),
      name: 'pool',
      kind: 'shared_pool',
      port: port(1),
      lazy,
      ...seeding('shared_pool'),
    }),
    startProject({
      ...on('dedicated'),
      name: 'dedicated',
      kind: 'dedicated',
      port: port(2),
      lazy,
      ...seeding('dedicated'),
    }),
  ]);
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await Promise.all(started.map((s) => (s.status === 'fulfilled' ? s.value.stop() : undefined)));
    throw (failed as PromiseRejectedResult).reason;
  }
  const [platform, ...others] = started.map((s) => (s as PromiseFulfilledResult<LocalProject>).value) as [
    LocalProject,
    LocalProject,
    LocalProject,
  ];
  [pool, dedicated] = others;
  const extra: LocalProject[] = [];
  const stop = async () => {
    await Promise.all([platform, pool, dedicated, ...extra].map((p) => p.stop()));
  };
  if (lazy) {
    // Templates missing (the first start after an install) are built now, one after the other in
    // a child process each, so that a project's first request does not wait for one.
    void (async () => {
      for (const [server, kind] of [
        ['platform', 'platform'],
        ['pool', 'shared_pool'],
        ['dedicated', 'dedicated'],
      ] as const) {
        if (!on(server).serverUrl) await pgliteTemplate(kind);
      }
    })().catch(() => {}); // a template that cannot be built now is built (or skipped) on first use
  }
  try {
    if (!lazy) await register(platform.sql);
    const demo: DemoClients | undefined = opts.seed ? demoClients() : undefined;
    return {
      platform,
      pool,
      dedicated,
      poolId,
      demo,
      startupMs: performance.now() - t0,
      async addDedicated(name = `dedicated-${extra.length + 2}`) {
        const p = await startProject({ ...on('dedicated', name), name, kind: 'dedicated' });
        extra.push(p);
        return p;
      },
      env() {
        const env: Record<string, string> = {
          PLATFORM_SUPABASE_URL: platform.url,
          PLATFORM_SUPABASE_SERVICE_ROLE_KEY: platform.serviceRoleKey,
          SHARED_POOL_SUPABASE_URL: pool.url,
          SHARED_POOL_ANON_KEY: pool.anonKey,
          SHARED_POOL_SERVICE_ROLE_KEY: pool.serviceRoleKey,
          SHARED_POOL_JWT_SECRET: pool.jwtSecret,
          DEDICATED_SUPABASE_URL: dedicated.url,
          DEDICATED_SUPABASE_ANON_KEY: dedicated.anonKey,
          DEDICATED_SUPABASE_SERVICE_ROLE_KEY: dedicated.serviceRoleKey,
        };
        if (demo) {
          env.DEMO_ADVENTURER_CLIENT_IDS = demo.adventurers.map((c) => c.clientId).join(',');
          env.DEMO_CHAMPION_CLIENT_ID = demo.champion.clientId;
          env.DEMO_USER_ID = demo.userId;
        }
        return env;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
