import { createDatabase } from './databases.js';
import { Gateway } from './gateway.js';
import { createProjectKeys, type ProjectKeys } from './keys.js';
import { stackModule } from './packages.js';
import { assertPortFree, freePort } from './ports.js';
import { type PostgrestProcess, postgrestBinary, startPostgrest } from './postgrest.js';
import { applyMigrations, type DatabaseKind, type SqlExecutor } from './sql.js';

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
  /** 'pglite', or the database's URL on the real server. */
  backend: string;
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
}

/** Local-only password of the `authenticator` role (migrations/local); never used against a real project. */
const AUTHENTICATOR = 'authenticator:authenticator-local-only';

export async function startProject(opts: ProjectOptions): Promise<LocalProject> {
  if (opts.port) await assertPortFree(opts.port, `${opts.name} gateway`);
  // Where the binary is missing (npm has it for linux-x64 only), say so before building databases.
  await postgrestBinary();
  const db = await createDatabase({ serverUrl: opts.serverUrl, label: opts.name });
  const cleanups: Array<() => Promise<void>> = [() => db.drop()];
  const stopAll = async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  };
  try {
    // Migrations go in before PostgREST starts, so its first schema cache sees them.
    await applyMigrations(db.sql, opts.kind, { bootstrap: true });
    const keys = await createProjectKeys(opts.name);

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
    const gateway = new Gateway({
      port: opts.port ?? 0,
      upstreamPort: postgrest.port,
      anonKey: keys.anonKey,
      serviceRoleKey: keys.serviceRoleKey,
    });
    await gateway.start();
    cleanups.push(() => gateway.stop());
    return {
      name: opts.name,
      kind: opts.kind,
      url: gateway.url,
      anonKey: keys.anonKey,
      serviceRoleKey: keys.serviceRoleKey,
      jwtSecret: keys.jwtSecret,
      keys,
      sql: db.sql,
      gateway,
      postgrest,
      backend: db.pglite ? 'pglite' : db.url!,
      stop: stopAll,
    };
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
