/**
 * How long `npm start` with nothing configured takes to be ready, and how much memory all of its
 * processes hold together; also what the orphan tests use to start the README's command.
 *
 *   npm run bench:start                                  (the README's command: npm start)
 *   npm run bench:start -- --settle-ms 15000 --cwd ../other-checkout -- node dist/agent/main.js start
 *
 * Ready is what an operator waits for: the health endpoint answers (503 until LiveKit is there)
 * and the worker has said that it waits for LiveKit. Memory is the sum of VmRSS over the process
 * tree (npm, the worker, PostgREST, LiveKit's job and inference processes) from /proc, at ready and
 * every 250 ms of the settle period after it. RSS counts pages shared between processes once per
 * process, so the sum is an upper bound; PSS (shared pages split among their users) is printed
 * too. Then every embedded database is used once, as the first sessions of an adventurer and a
 * champion would, and the tree is measured again.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from '@supabase/supabase-js';
import { type ProcessInfo, processTree } from '../src/agent/footprint.js';
import { freePort } from '../src/stack/ports.js';

export interface StartedWorker {
  child: ChildProcess;
  /** Milliseconds from spawn to ready. */
  readyMs: number;
  /** What stdout and stderr said so far. */
  output(): string;
  tree(): ProcessInfo[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface StartOptions {
  command?: string;
  args?: readonly string[];
  cwd?: string;
  /** Added to the environment, which has every configuration variable removed. */
  env?: Record<string, string>;
  healthPort: number;
  timeoutMs?: number;
  /** Ready when this holds for the output so far (default: the worker's, see startWorker). */
  ready?: (output: string) => boolean;
}

const REPO = fileURLToPath(new URL('..', import.meta.url));

/** Variables that would configure the worker: removed, so the start is a newcomer's. */
const CONFIG_PREFIXES = [
  'PLATFORM_',
  'STACK_',
  'LIVEKIT_',
  'OPENAI_',
  'EMBEDDING_',
  'SHARED_POOL_',
  'DEDICATED_',
];

function unconfiguredEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (CONFIG_PREFIXES.some((p) => k.startsWith(p)) || k === 'NODE_ENV' || k === 'LOG_LEVEL') continue;
    if (k.startsWith('VITEST') || k.startsWith('npm_')) continue; // a test's or a script's, not a newcomer's
    env[k] = v;
  }
  // As npm scripts have it: `node` is the Node 24 of the `node` devDependency.
  env.PATH = `${join(REPO, 'node_modules', '.bin')}${delimiter}${env.PATH ?? ''}`;
  return { ...env, ...extra };
}

/** The worker's line saying that it waits for LiveKit (src/agent/livekit-wait.ts). */
export const WAITING_FOR_LIVEKIT = /waiting for a LiveKit server/;

/**
 * Starts the command (default `npm start`) with nothing configured and resolves once it is ready:
 * the health endpoint answers and the worker said it waits for LiveKit.
 */
export async function startWorker(opts: StartOptions): Promise<StartedWorker> {
  const t0 = performance.now();
  const child = spawn(opts.command ?? 'npm', opts.args ?? ['start'], {
    cwd: opts.cwd ?? REPO,
    env: unconfiguredEnv({ HEALTH_PORT: String(opts.healthPort), ...opts.env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout!.on('data', (b: Buffer) => (text += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (text += b.toString()));
  let gone = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      gone = true;
      resolve({ code, signal });
    }),
  );
  const timeoutMs = opts.timeoutMs ?? 120_000;
  for (;;) {
    if (gone) throw new Error(`the worker exited before it was ready:\n${text.slice(-4000)}`);
    if (performance.now() - t0 > timeoutMs) {
      for (const p of processTree(child.pid!)) process.kill(p.pid, 'SIGKILL');
      throw new Error(`the worker was not ready within ${timeoutMs} ms:\n${text.slice(-4000)}`);
    }
    if (opts.ready ? opts.ready(text) : WAITING_FOR_LIVEKIT.test(text) && (await answers(opts.healthPort)))
      break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    readyMs: performance.now() - t0,
    output: () => text,
    tree: () => processTree(child.pid!),
    exited,
  };
}

async function answers(port: number): Promise<boolean> {
  try {
    await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) });
    return true;
  } catch {
    return false;
  }
}

/** Proportional set size (kB): pages shared between processes divided among them. */
function pssKb(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * Uses each embedded database once, as the first sessions would (the platform, the pool, the
 * champion's project). The worker's platform URL and key are local-only values that its children
 * inherit: read from the environment of a process the worker forked.
 */
export async function useEveryDatabase(tree: ProcessInfo[]): Promise<void> {
  const forked = tree.find((p) => p.command.includes('@livekit/agents/dist/ipc/'));
  if (!forked) throw new Error('no process forked by the worker to read the embedded platform from');
  const env = Object.fromEntries(
    readFileSync(`/proc/${forked.pid}/environ`, 'utf8')
      .split('\0')
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
  const platform = createClient(env.PLATFORM_SUPABASE_URL!, env.PLATFORM_SUPABASE_SERVICE_ROLE_KEY!);
  const pools = await platform.from('shared_pool_config').select('supabase_url, supabase_service_role_key');
  const champions = await platform
    .from('clients')
    .select('supabase_url, supabase_service_role_key')
    .eq('hosting_type', 'dedicated');
  const projects = [...(pools.data ?? []), ...(champions.data ?? [])];
  if (pools.error || champions.error || projects.length < 2) {
    throw new Error(
      `the embedded platform did not answer: ${pools.error?.message ?? champions.error?.message}`,
    );
  }
  for (const p of projects) {
    const { error } = await createClient(p.supabase_url, p.supabase_service_role_key)
      .from('agents')
      .select('slug');
    if (error) throw new Error(`${p.supabase_url} did not answer: ${error.message}`);
  }
}

export interface StartFigures {
  readyMs: number;
  /** Sum of RSS of the tree (MB) at ready, the highest sum seen while settling, and at its end. */
  rssAtReadyMb: number;
  rssPeakMb: number;
  rssSettledMb: number;
  pssSettledMb: number;
  processes: Array<{ pid: number; rssMb: number; command: string }>;
  /** After every embedded database was used once (absent with `useDatabases: false`). */
  afterFirstUse?: { ms: number; rssMb: number; pssMb: number; processes: number };
}

const mb = (kb: number) => Math.round(kb / 1024);
const sumRss = (procs: ProcessInfo[]) => procs.reduce((s, p) => s + p.rssKb, 0);
const sumPss = (procs: ProcessInfo[]) => procs.reduce((s, p) => s + pssKb(p.pid), 0);

/** Starts, measures, and stops the whole tree (SIGKILL to each of its processes). */
export async function measureStart(
  opts: Omit<StartOptions, 'healthPort'> & { settleMs?: number; useDatabases?: boolean } = {},
): Promise<StartFigures> {
  const worker = await startWorker({ ...opts, healthPort: await freePort() });
  try {
    const atReady = sumRss(worker.tree());
    let peak = atReady;
    const until = performance.now() + (opts.settleMs ?? 10_000);
    while (performance.now() < until) {
      await new Promise((r) => setTimeout(r, 250));
      peak = Math.max(peak, sumRss(worker.tree()));
    }
    const settled = worker.tree();
    const figures: StartFigures = {
      readyMs: Math.round(worker.readyMs),
      rssAtReadyMb: mb(atReady),
      rssPeakMb: mb(peak),
      rssSettledMb: mb(sumRss(settled)),
      pssSettledMb: mb(sumPss(settled)),
      processes: settled.map((p) => ({ pid: p.pid, rssMb: mb(p.rssKb), command: p.command.slice(0, 110) })),
    };
    if (opts.useDatabases ?? true) {
      const t = performance.now();
      await useEveryDatabase(settled);
      const ms = Math.round(performance.now() - t);
      await new Promise((r) => setTimeout(r, 2000));
      const used = worker.tree();
      figures.afterFirstUse = {
        ms,
        rssMb: mb(sumRss(used)),
        pssMb: mb(sumPss(used)),
        processes: used.length,
      };
    }
    return figures;
  } finally {
    for (const p of worker.tree()) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await worker.exited;
  }
}

export function describeStart(f: StartFigures): string {
  const first = f.afterFirstUse
    ? `; after each database's first use (${(f.afterFirstUse.ms / 1000).toFixed(1)} s): ${f.afterFirstUse.rssMb} MB in ${f.afterFirstUse.processes} processes (PSS ${f.afterFirstUse.pssMb} MB)`
    : '';
  return `ready in ${(f.readyMs / 1000).toFixed(1)} s; ${f.rssSettledMb} MB resident in ${f.processes.length} processes together (RSS sum; at ready ${f.rssAtReadyMb} MB, peak ${f.rssPeakMb} MB; PSS ${f.pssSettledMb} MB)${first}`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  // [--settle-ms N] [--cwd DIR] [-- COMMAND ARGS...]
  const argv = process.argv.slice(2);
  const dashes = argv.indexOf('--');
  const flags = dashes >= 0 ? argv.slice(0, dashes) : argv;
  const flag = (name: string) => (flags.includes(name) ? flags[flags.indexOf(name) + 1] : undefined);
  const settleMs = Number(flag('--settle-ms') ?? 10_000);
  const cwd = flag('--cwd');
  const [command, ...args] = dashes >= 0 ? argv.slice(dashes + 1) : ['npm', 'start'];
  const figures = await measureStart({ command, args, settleMs, ...(cwd ? { cwd } : {}) });
  console.log(`\`${[command, ...args].join(' ')}\` with nothing configured: ${describeStart(figures)}`);
  for (const p of figures.processes)
    console.log(`  ${String(p.rssMb).padStart(5)} MB  ${p.pid}  ${p.command}`);
}
