import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type LocalProject, startProject } from '../src/stack/project.js';
import { createSupabase } from '../src/tenancy/supabase.js';
import { WorkQueue } from '../src/work/queue.js';
import { GiveUp, type WorkHandler, WorkRunner } from '../src/work/runner.js';
import { ON_REAL_SERVER, REAL_SERVER_URL } from './support/db.js';
import { captureLogs } from './support/logs.js';

/** The platform's durable work queue through the real PostgREST, as workers use it. */
let platform: LocalProject;
const queueOf = (worker: string) =>
  new WorkQueue(createSupabase(platform.url, platform.serviceRoleKey), worker);

beforeAll(async () => {
  platform = await startProject({ name: 'platform', kind: 'platform', serverUrl: REAL_SERVER_URL });
});
afterAll(async () => {
  await platform?.stop();
});
beforeEach(async () => {
  await platform.sql.exec('DELETE FROM work_items');
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the work queue', () => {
  it('an item enqueued twice under one dedupe key is one item', async () => {
    const q = queueOf('w1');
    const key = randomUUID();
    const a = await q.enqueue({ kind: 'post_session', dedupeKey: key, payload: { n: 1 } });
    const b = await q.enqueue({ kind: 'post_session', dedupeKey: key, payload: { n: 2 } });
    expect(b.id).toBe(a.id);
    expect(b.payload).toEqual({ n: 1 });
    expect(await platform.sql.query('SELECT id FROM work_items')).toHaveLength(1);
  });

  it('a claimed item is nobody else’s until its lease expires; then another worker does it, and only its outcome counts', async () => {
    const [w1, w2] = [queueOf('w1'), queueOf('w2')];
    await w1.enqueue({ kind: 'post_session', payload: {} });
    const [mine] = await w1.claim(['post_session'], { limit: 5, leaseSeconds: 1 });
    expect(mine?.attempts).toBe(1);
    expect(await w2.claim(['post_session'], { limit: 5, leaseSeconds: 30 })).toEqual([]);
    await sleep(1200);
    // w1 "died": its lease expired, w2 takes the item over as attempt 2.
    const [theirs] = await w2.claim(['post_session'], { limit: 5, leaseSeconds: 30 });
    expect(theirs).toMatchObject({ id: mine!.id, attempts: 2 });
    expect(await w1.complete(mine!)).toBe(false);
    expect(await w2.complete(theirs!, { summary: 'ok' })).toBe(true);
    const [row] = await platform.sql.query<{ status: string; result: unknown }>(
      'SELECT status, result FROM work_items',
    );
    expect(row).toEqual({ status: 'done', result: { summary: 'ok' } });
    expect(await w1.claim(['post_session'], { limit: 5, leaseSeconds: 30 })).toEqual([]);
  });

  it('a failure is retried after its backoff, and given up after max_attempts with the reason kept', async () => {
    const q = queueOf('w1');
    await q.enqueue({ kind: 'webhook', payload: {}, maxAttempts: 2 });
    const [first] = await q.claim(['webhook'], { limit: 1, leaseSeconds: 30 });
    expect(await q.retry(first!, 'HTTP 500', 1)).toBe(true);
    expect(await q.claim(['webhook'], { limit: 1, leaseSeconds: 30 })).toEqual([]);
    await sleep(1100);
    const [second] = await q.claim(['webhook'], { limit: 1, leaseSeconds: 30 });
    expect(second?.attempts).toBe(2);
    expect(await q.retry(second!, 'HTTP 502', 1)).toBe(true);
    const [row] = await q.list({ kind: 'webhook' });
    expect(row).toMatchObject({ status: 'failed', last_error: 'HTTP 502', attempts: 2 });
    expect(row?.finished_at).not.toBeNull();
  });

  it('only the kinds asked for are claimed', async () => {
    const q = queueOf('w1');
    await q.enqueue({ kind: 'webhook', payload: {} });
    expect(await q.claim(['post_session'], { limit: 5, leaseSeconds: 30 })).toEqual([]);
    expect(await q.claim(['webhook', 'post_session'], { limit: 5, leaseSeconds: 30 })).toHaveLength(1);
  });

  it.runIf(ON_REAL_SERVER)('workers claiming at the same time never get the same item', async () => {
    const seed = queueOf('seed');
    for (let i = 0; i < 40; i++) await seed.enqueue({ kind: 'post_session', payload: { i } });
    const workers = Array.from({ length: 8 }, (_, i) => queueOf(`w${i}`));
    const claims = await Promise.all(
      workers.flatMap((w) => [1, 2, 3].map(() => w.claim(['post_session'], { limit: 3, leaseSeconds: 60 }))),
    );
    const ids = claims.flat().map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.length).toBe(40);
  });
});

describe('the work runner', () => {
  it('runs each due item once, retries a failure later, gives up on GiveUp, and says none of the payload', async () => {
    const q = queueOf('runner');
    const runs: string[] = [];
    let flaky = 0;
    const handler: WorkHandler = {
      kind: 'post_session',
      async run(item) {
        runs.push(String(item.payload.name));
        if (item.payload.name === 'flaky' && flaky++ === 0) throw new Error('the model timed out');
        if (item.payload.name === 'doomed') throw new GiveUp('the client is gone');
        return { ok: true };
      },
    };
    for (const name of ['a', 'b', 'flaky', 'doomed']) {
      await q.enqueue({ kind: 'post_session', payload: { name, secret_text: 'I live at 12 Elm Street' } });
    }
    const { log, output } = captureLogs('debug');
    const runner = new WorkRunner({
      queue: q,
      handlers: [handler],
      log,
      concurrency: 2,
      backoffSeconds: () => 1,
    });
    expect(await runner.drain()).toBe(4);
    expect(runs.sort()).toEqual(['a', 'b', 'doomed', 'flaky']);
    await sleep(1100);
    expect(await runner.drain()).toBe(1);
    const rows = await platform.sql.query<{
      name: string;
      status: string;
      attempts: number;
      last_error: string | null;
    }>(`SELECT payload->>'name' AS name, status, attempts, last_error FROM work_items ORDER BY 1`);
    expect(rows).toEqual([
      { name: 'a', status: 'done', attempts: 1, last_error: null },
      { name: 'b', status: 'done', attempts: 1, last_error: null },
      { name: 'doomed', status: 'failed', attempts: 1, last_error: 'the client is gone' },
      { name: 'flaky', status: 'done', attempts: 2, last_error: 'the model timed out' },
    ]);
    expect(output()).not.toContain('Elm Street');
  });

  it('started, it picks up work enqueued later; stopped, it takes no more', async () => {
    const q = queueOf('poller');
    const seen: string[] = [];
    const runner = new WorkRunner({
      queue: q,
      log: captureLogs().log,
      pollMs: 50,
      handlers: [{ kind: 'webhook', run: async (item) => void seen.push(String(item.payload.n)) }],
    });
    runner.start();
    await q.enqueue({ kind: 'webhook', payload: { n: 1 } });
    for (let i = 0; i < 100 && seen.length < 1; i++) await sleep(20);
    expect(seen).toEqual(['1']);
    await runner.stop();
    await q.enqueue({ kind: 'webhook', payload: { n: 2 } });
    await sleep(200);
    expect(seen).toEqual(['1']);
  });
});
