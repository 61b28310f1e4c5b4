import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { voice } from '@livekit/agents';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLLM } from '../src/agent/models.js';
import type { WorkerRuntime } from '../src/agent/runtime.js';
import { prepareSession } from '../src/agent/session.js';
import { POST_SESSION } from '../src/work/post-session.js';
import { TRANSCRIPT_SPOOL, transcriptSpoolHandler } from '../src/work/spool.js';
import {
  type AfterSessionBed,
  digestResponder,
  metadataFor,
  runnerFor,
  startAfterSessionBed,
} from './support/after-session.js';

/**
 * Issue 9.4: a session that ends while its client's database refuses writes (a tier move's fence)
 * for longer than the grace period keeps its turns: in the platform's work queue, or in a local
 * spool file when the platform is down too; they are written once the fence lifts, exactly once,
 * and only then is the session's post-session work queued.
 */

let bed: AfterSessionBed;
let spoolDir: string;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  spoolDir = await mkdtemp(join(tmpdir(), 'spool-test-'));
  bed = await startAfterSessionBed({ TRANSCRIPT_GRACE_MS: '1500', TRANSCRIPT_SPOOL_DIR: spoolDir });
  bed.openai.setResponder(digestResponder(() => ({ title: 't', summary: 's', facts: [] })));
});
afterAll(async () => {
  await bed?.stop();
  await rm(spoolDir, { recursive: true, force: true });
});
beforeEach(async () => {
  await bed.stack.platform.gateway.start();
  await bed.stack.platform.sql.exec('DELETE FROM work_items');
});

const A = () => bed.stack.demo!.adventurers[0]!;
const fence = (state: 'open' | 'fenced') =>
  bed.stack.pool.sql.query('UPDATE pool_clients SET write_fence = $2 WHERE client_id = $1', [
    A().clientId,
    state,
  ]);

/** A session of A: one turn while writes are open, then the fence, two more turns, and the end. */
async function sessionEndingInAFence(runtime: WorkerRuntime, onFenced: () => Promise<void> = async () => {}) {
  const prepared = await prepareSession(
    runtime,
    metadataFor(A(), { user_id: bed.stack.demo!.userId }),
    runtime.log,
  );
  const session = new voice.AgentSession({ llm: createLLM(runtime.config) });
  prepared.attach(session);
  await session.start({ agent: prepared.agent });
  await session.run({ userInput: 'My chain squeaks after rain.' }).wait();
  await prepared.transcripts.flush();
  await fence('fenced');
  await onFenced();
  await session.run({ userInput: 'Should I use wet or dry lube?' }).wait();
  await session.run({ userInput: 'And how often?' }).wait();
  await session.close();
  const said = session.history.items.filter((i) => i.type === 'message').length;
  const closed = await prepared.close();
  return { prepared, closed, said };
}

const rowsOf = (conversationId: string) =>
  bed.stack.pool.sql.query<{ id: string; role: string; content: string; has_vector: boolean }>(
    'SELECT id, role, content, embeddings IS NOT NULL AS has_vector FROM conversation_transcripts WHERE conversation_id = $1 ORDER BY created_at',
    [conversationId],
  );

describe('turns held back when the session ends', () => {
  it('go to the platform work queue, and reach the client database once the fence lifts, exactly once', async () => {
    const runtime = bed.runtime();
    const { prepared, closed, said } = await sessionEndingInAFence(runtime);
    try {
      expect(closed.dropped).toBe(0);
      expect(closed.spooled).toBeGreaterThanOrEqual(4); // two questions, two replies
      expect(closed.written + closed.spooled).toBe(said);
      const [spool] = await runtime.work.list({ kind: TRANSCRIPT_SPOOL });
      expect(spool).toMatchObject({ status: 'pending', client_id: A().clientId });
      // The post-session work waits for the turns: it rides along with them.
      expect(await runtime.work.list({ kind: POST_SESSION })).toEqual([]);

      // Still fenced: the replay is refused and retried later, nothing is lost.
      const runner = runnerFor(bed.runtime());
      expect(await runner.drain()).toBe(1);
      const [waiting] = await runtime.work.list({ kind: TRANSCRIPT_SPOOL });
      expect(waiting).toMatchObject({ status: 'pending', attempts: 1 });
      expect(waiting!.last_error).toContain('fenced');
      expect((await rowsOf(prepared.conversationId)).length).toBe(closed.written);
    } finally {
      await fence('open');
    }
    await sleep(1100);
    const runner = runnerFor(bed.runtime());
    expect(await runner.drain()).toBe(2); // the spool, then the post-session work it released
    const rows = await rowsOf(prepared.conversationId);
    expect(rows).toHaveLength(said);
    expect(rows.filter((r) => r.role === 'user').map((r) => r.content)).toEqual([
      'My chain squeaks after rain.',
      'Should I use wet or dry lube?',
      'And how often?',
    ]);
    expect(rows.every((r) => r.has_vector)).toBe(true);
    const [post] = await runtime.work.list({ kind: POST_SESSION });
    expect(post).toMatchObject({ status: 'done' });
    expect(post!.payload).toMatchObject({ conversation_id: prepared.conversationId });

    // A replay that runs again (a lease lost after it wrote) writes nothing twice.
    const [done] = await runtime.work.list({ kind: TRANSCRIPT_SPOOL });
    const handler = transcriptSpoolHandler({
      connections: runtime.connections,
      embedder: runtime.embedder,
      queue: runtime.work,
      log: runtime.log,
    });
    await handler.run(done!, new AbortController().signal);
    expect(await rowsOf(prepared.conversationId)).toEqual(rows);
    expect(await runtime.work.list({ kind: POST_SESSION })).toHaveLength(1);
  });

  it('with the platform down too, go to a local spool file, moved to the queue when it answers', async () => {
    const runtime = bed.runtime();
    let prepared: Awaited<ReturnType<typeof sessionEndingInAFence>>;
    try {
      prepared = await sessionEndingInAFence(runtime, () => bed.stack.platform.gateway.stop());
      expect(prepared.closed).toMatchObject({ dropped: 0 });
      expect(prepared.closed.spooled).toBeGreaterThanOrEqual(4);
      const files = await readdir(spoolDir);
      expect(files).toHaveLength(1);
      expect(files[0]).toMatch(new RegExp(`^${A().clientId}\\.[0-9a-f-]{36}\\.json$`));
    } finally {
      await bed.stack.platform.gateway.start();
      await fence('open');
    }
    // The worker's main process moves the file into the queue (twice: still one item) and writes it.
    const main = bed.runtime();
    expect(await main.spool.flushLocal()).toBe(1);
    expect(await main.spool.flushLocal()).toBe(0);
    expect(await readdir(spoolDir)).toEqual([]);
    expect(await runnerFor(main).drain()).toBe(2);
    const rows = await rowsOf(prepared.prepared.conversationId);
    expect(rows).toHaveLength(prepared.said);
    expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
  });
});
