import { createDatabase } from './databases.js';
import { Gateway } from './gateway.js';
import { createProjectKeys, type ProjectKeys } from './keys.js';
import { stackModule } from './packages.js';
import { assertPortFree, freePort } from './ports.js';
import { type PostgrestProcess, postgrestBinary, startPostgrest } from './postgrest.js';
import type { DatabaseKind, SqlExecutor } from './sql.js';

/** One local stand-in for a Supabase project: a database, PostgREST and the API gateway in front. */
export interface LocalProject {
  name: string;
  kind: DatabaseKind;
  /** The project URL, as supabase-js takes it (`http://127.0.0.1:PORT`). */
  url: string;
  anonKey: string;
  serviceRoleKey: string;
  jwtSecret: string;
  keys: ProjectKeys;
  /** Superuser SQL straight to the database, behind PostgREST's back (seeding, test assertions). */
  sql: SqlExecutor;
  gateway: Gateway;
  postgrest: PostgrestProcess;
  /** 'pglite', or the database's URL on the real server ('' while a lazy project has not started). */
  backend: string;
  /** The database and PostgREST are up (a lazy project: after its first request). */
  readonly started: boolean;
  stop(): Promise<void>;
}

export interface ProjectOptions {
  name: string;
  kind: DatabaseKind;
  /** Superuser URL of a real PostgreSQL server with pgvector; absent = PGlite. */
  serverUrl?: string;
  /** Fixed gateway port (the CLI's); 0 or absent = any free port. */
  port?: number;
  onLog?: (line: string) => void;
  /**
   * Start the database and PostgREST when first needed (the first request to the gateway, or the
   * first use of `sql`), not now: the gateway listens at once, so the URL and keys are known.
   */
  lazy?: boolean;
  /** Runs once on the new database, after its migrations and before PostgREST serves it (seeding). */
  onStart?: (sql: SqlExecutor) => Promise<void>;
  /** Called once the database and PostgREST are up, with how long that took. */
  onStarted?: (ms: number) => void;
}

/** Local-only password of the `authenticator` role (migrations/local); never used against a real project. */
const AUTHENTICATOR = 'authenticator:authenticator-local-only';

export async function startProject(opts: ProjectOptions): Promise<LocalProject> {
  if (opts.port) await assertPortFree(opts.port, `${opts.name} gateway`);
  // Where the binary is missing (npm has it for linux-x64 only), say so before building databases.
  await postgrestBinary();
  const keys = await createProjectKeys(opts.name);
  let booting: Promise<Backend> | undefined;
  let started: Backend | undefined;
  const boot = () => {
    const t0 = performance.now();
    booting ??= startBackend(opts, keys).then(
      (backend) => {
        started = backend;
        opts.onStarted?.(performance.now() - t0);
        return backend;
      },
      (err: unknown) => {
        booting = undefined; // a lazy project tries again on the next request
        throw err;
      },
    );
    return booting;
  };
  const gateway = new Gateway({
    port: opts.port ?? 0,
    upstreamPort: async () => (await boot()).postgrest.port,
    anonKey: keys.anonKey,
    serviceRoleKey: keys.serviceRoleKey,
  });
  const stop = async () => {
    await gateway.stop();
    const backend = await booting?.catch(() => undefined);
    await backend?.stop();
  };
  if (!opts.lazy) await boot();
  try {
    await gateway.start();
  } catch (err) {
    await stop();
    throw err;
  }
  const sql: SqlExecutor = {
    exec: async (text) => (await boot()).sql.exec(text),
    query: async (text, params) => (await boot()).sql.query(text, params),
    // Closing a database that never started does not start it.
    close: async () => (await booting?.catch(() => undefined))?.sql.close(),
  };
  const postgrest: PostgrestProcess = {
    get port() {
      return started?.postgrest.port ?? 0;
    },
    reloadSchema: async () => (await boot()).postgrest.reloadSchema(),
    stop: async () => (await booting?.catch(() => undefined))?.postgrest.stop(),
  };
  return {
    name: opts.name,
    kind: opts.kind,
    url: gateway.url,
    anonKey: keys.anonKey,
    serviceRoleKey: keys.serviceRoleKey,
    jwtSecret: keys.jwtSecret,
    keys,
    sql,
    gateway,
    postgrest,
    get backend() {
      return started?.backend ?? (opts.serverUrl ? '' : 'pglite');
    },
    get started() {
      return started !== undefined;
    },
    stop,
  };
}

/** What a project runs behind its gateway. */
interface Backend {
  sql: SqlExecutor;
  postgrest: PostgrestProcess;
  backend: string;
  stop(): Promise<void>;
}

async function startBackend(opts: ProjectOptions, keys: ProjectKeys): Promise<Backend> {
  // Migrations go in before PostgREST starts, so its first schema cache sees them.
  const db = await createDatabase({ serverUrl: opts.serverUrl, label: opts.name, schema: opts.kind });
  const cleanups: Array<() => Promise<void>> = [() => db.drop()];
  const stopAll = async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  };
  try {
    await opts.onStart?.(db.sql);
    let dbUri: string;
    if (db.pglite) {
      const { PGLiteSocketServer } = await stackModule('@electric-sql/pglite-socket');
      const socket = new PGLiteSocketServer({ db: db.pglite, port: 0, host: '127.0.0.1', maxConnections: 8 });
      await socket.start();
      cleanups.push(() => socket.stop());
      dbUri = `postgres://${AUTHENTICATOR}@${socket.getServerConn()}/postgres`;
    } else {
      const u = new URL(db.url!);
      dbUri = `postgres://${AUTHENTICATOR}@${u.host}${u.pathname}`;
    }
    const postgrest = await startOnFreePorts(async () =>
      startPostgrest({
        dbUri,
        jwtSecret: keys.postgrestJwks,
        port: await freePort(),
        adminPort: await freePort(),
        pool: db.pglite ? 2 : 10,
        preparedStatements: !db.pglite,
        onLog: opts.onLog,
      }),
    );
    cleanups.push(() => postgrest.stop());
    return { sql: db.sql, postgrest, backend: db.pglite ? 'pglite' : db.url!, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/**
 * A port found free can be taken by another process before PostgREST binds it (tests start many
 * stacks at once): then PostgREST exits with "Address in use", and new ports are tried.
 */
async function startOnFreePorts<T>(start: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      if (attempt >= attempts || !/address (already )?in use/i.test((err as Error).message)) throw err;
    }
  }
}
