import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createRuntime } from '../src/agent/runtime.js';
import { loadConfig } from '../src/config.js';
import { PlatformAdmin } from '../src/ops/platform.js';
import { RETENTION_LEASE, sweepIfDue } from '../src/ops/retention.js';
import type { LocalProject } from '../src/stack/project.js';
import type { LocalStack } from '../src/stack/stack.js';
import { Leases } from '../src/work/leases.js';
import { json, sidekick, stackEnv } from './support/cli.js';
import { captureLogs } from './support/logs.js';
import { startTestStack } from './support/stack.js';

/**
 * Retention per tier: `sidekick retention run` deletes exactly the turns older than the client's
 * transcript_retention_days (adventurer 30, champion 365, an override per client) and the
 * conversations left without turns, in the pool (one client at a time, never another's rows) and
 * in a dedicated project; one sweeper at a time across workers; and its speed in rows per second.
 */

let stack: LocalStack;
const DAY = 86_400_000;
const ago = (days: number, extraMs = 0) => new Date(Date.now() - days * DAY - extraMs).toISOString();

beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(async () => {
  await stack?.stop();
});

const A = () => stack.demo!.adventurers[0]!;
const B = () => stack.demo!.adventurers[1]!;
const C = () => stack.demo!.champion;
const env = () => stackEnv(stack);

interface Planted {
  /** Rows that must go. */
  expired: { transcripts: string[]; conversations: string[] };
  /** Rows that must stay. */
  kept: { transcripts: string[]; conversations: string[] };
}

/**
 * For one client: a conversation wholly past the limit (it goes, turns and all), one with an old
 * and a fresh turn (the old turn goes, the conversation stays), one old but still active, and
 * turns a minute either side of the limit.
 */
async function plant(
  db: LocalProject,
  client: { clientId?: string; agentId: string },
  days: number,
): Promise<Planted> {
  const cid = client.clientId;
  const user = randomUUID();
  const conv = async (updated: string) => {
    const [row] = await db.sql.query<{ id: string }>(
      cid
        ? 'INSERT INTO conversations (client_id, agent_id, user_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING id'
        : 'INSERT INTO conversations (agent_id, user_id, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id',
      cid ? [cid, client.agentId, user, updated] : [client.agentId, user, updated],
    );
    return row!.id;
  };
  const turn = async (conversation: string, at: string) => {
    const [row] = await db.sql.query<{ id: string }>(
      cid
        ? `INSERT INTO conversation_transcripts (client_id, conversation_id, agent_id, user_id, role, content, embeddings, created_at)
           VALUES ($1, $2, $3, $4, 'user', 'x', array_fill(0.01, ARRAY[1024])::vector, $5) RETURNING id`
        : `INSERT INTO conversation_transcripts (conversation_id, agent_id, user_id, role, content, embeddings, created_at)
           VALUES ($1, $2, $3, 'user', 'x', array_fill(0.01, ARRAY[1024])::vector, $4) RETURNING id`,
      cid ? [cid, conversation, client.agentId, user, at] : [conversation, client.agentId, user, at],
    );
    return row!.id;
  };
  const gone = await conv(ago(days + 10));
  const goneTurns = [await turn(gone, ago(days + 10)), await turn(gone, ago(days, 60_000))];
  const mixed = await conv(ago(days + 10));
  const mixedOld = await turn(mixed, ago(days + 5));
  const mixedFresh = await turn(mixed, ago(days, -60_000));
  const fresh = await conv(ago(1));
  const freshTurn = await turn(fresh, ago(1));
  return {
    expired: { transcripts: [...goneTurns, mixedOld], conversations: [gone] },
    kept: { transcripts: [mixedFresh, freshTurn], conversations: [mixed, fresh] },
  };
}

async function present(db: LocalProject, table: 'conversations' | 'conversation_transcripts', ids: string[]) {
  const rows = await db.sql.query<{ id: string }>(
    `SELECT id::text FROM ${table} WHERE id = ANY($1::uuid[])`,
    [ids],
  );
  return rows.map((r) => r.id).sort();
}

async function expectSwept(db: LocalProject, p: Planted, swept: boolean) {
  expect(await present(db, 'conversation_transcripts', p.kept.transcripts)).toEqual(
    [...p.kept.transcripts].sort(),
  );
  expect(await present(db, 'conversations', p.kept.conversations)).toEqual([...p.kept.conversations].sort());
  const expiredTurns = await present(db, 'conversation_transcripts', p.expired.transcripts);
  const expiredConvs = await present(db, 'conversations', p.expired.conversations);
  expect(expiredTurns).toEqual(swept ? [] : [...p.expired.transcripts].sort());
  expect(expiredConvs).toEqual(swept ? [] : [...p.expired.conversations].sort());
}

/** `retention run --json` (keys snake_case, as every `--json`). */
interface SweepJson {
  dry_run: boolean;
  clients: Array<{
    client_id: string;
    hosting: string;
    retention_days: number | null;
    skipped?: string;
    transcripts: number;
    conversations: number;
    pages: number;
    seconds: number;
  }>;
}
const sweepOf = (r: SweepJson, clientId: string) => r.clients.find((c) => c.client_id === clientId);

describe('retention per tier', () => {
  let a: Planted;
  let b: Planted;
  let c: Planted;
  beforeEach(async () => {
    await stack.platform.sql.exec(`UPDATE clients SET tier_features = '{}'`);
  });

  it('a dry run counts exactly what is older than each tier’s days, and deletes nothing', async () => {
    a = await plant(stack.pool, A(), 30);
    b = await plant(stack.pool, B(), 30);
    c = await plant(stack.dedicated, { agentId: C().agentId }, 365);
    const run = await sidekick(['retention', 'run', '--dry-run', '--json'], env());
    expect(run.code).toBe(0);
    const r = json<SweepJson>(run);
    expect(r.dry_run).toBe(true);
    for (const [client, days] of [
      [A(), 30],
      [B(), 30],
      [C(), 365],
    ] as const) {
      expect(sweepOf(r, client.clientId)).toMatchObject({
        retention_days: days,
        transcripts: 3,
        conversations: 1,
      });
    }
    await expectSwept(stack.pool, a, false);
    await expectSwept(stack.dedicated, c, false);
  });

  it('--client sweeps that client only: its expired rows go, every other row stays', async () => {
    const run = await sidekick(['retention', 'run', '--client', A().clientId, '--page-size', '2'], env());
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^deleted 3 turns and 1 conversation of 1 client in [\d.]+ s \(\d+ rows\/s\)/);
    expect(run.stderr).toContain(`${A().clientId} Acme Bikes: adventurer, 30 days`);
    await expectSwept(stack.pool, a, true);
    await expectSwept(stack.pool, b, false);
    await expectSwept(stack.dedicated, c, false);
    // The seeded history of the demo (a day old) is within every limit.
    const [seeded] = await stack.pool.sql.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM conversations WHERE id = $1',
      [A().conversationId],
    );
    expect(seeded!.n).toBe(1);
  });

  it('every client, both schemas: the pool’s by the adventurer’s 30 days, the project’s by the champion’s 365', async () => {
    const r = json<SweepJson>(await sidekick(['retention', 'run', '--json'], env()));
    expect(sweepOf(r, A().clientId)).toMatchObject({ transcripts: 0, conversations: 0 });
    expect(sweepOf(r, B().clientId)).toMatchObject({ transcripts: 3, conversations: 1 });
    expect(sweepOf(r, C().clientId)).toMatchObject({
      transcripts: 3,
      conversations: 1,
      hosting: 'dedicated',
    });
    await expectSwept(stack.pool, b, true);
    await expectSwept(stack.dedicated, c, true);
  });

  it('a per-client override wins: unlimited keeps everything, fewer days take more', async () => {
    const kept = await plant(stack.pool, B(), 30);
    await stack.platform.sql.query(
      `UPDATE clients SET tier_features = '{"transcript_retention_days": null}' WHERE id = $1`,
      [B().clientId],
    );
    let r = json<SweepJson>(await sidekick(['retention', 'run', '--client', B().clientId, '--json'], env()));
    expect(sweepOf(r, B().clientId)).toMatchObject({
      retention_days: null,
      skipped: 'kept without limit',
      transcripts: 0,
    });
    await expectSwept(stack.pool, kept, false);

    await stack.platform.sql.query(
      `UPDATE clients SET tier_features = '{"transcript_retention_days": 0}' WHERE id = $1`,
      [B().clientId],
    );
    r = json<SweepJson>(await sidekick(['retention', 'run', '--client', B().clientId, '--json'], env()));
    // 0 days: every turn and conversation of the client goes, the seeded history too.
    const [left] = await stack.pool.sql.query<{ n: number }>(
      'SELECT (SELECT count(*) FROM conversation_transcripts WHERE client_id = $1) + (SELECT count(*) FROM conversations WHERE client_id = $1) AS n',
      [B().clientId],
    );
    expect(Number(left!.n)).toBe(0);
    expect(sweepOf(r, B().clientId)!.transcripts).toBeGreaterThanOrEqual(5);
    // A was not touched by B's sweep.
    const [ofA] = await stack.pool.sql.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM conversation_transcripts WHERE client_id = $1',
      [A().clientId],
    );
    expect(ofA!.n).toBeGreaterThan(0);
  });
});

describe('one sweeper at a time', () => {
  const holderOf = async () =>
    (
      await stack.platform.sql.query<{ holder: string | null }>(
        'SELECT holder FROM platform_leases WHERE name = $1',
        [RETENTION_LEASE],
      )
    )[0]?.holder ?? null;

  it.each(['0', '20000'])(
    '--page-size %s is bad input (exit 2, naming the option), before anything is swept',
    async (size) => {
      const run = await sidekick(['retention', 'run', '--page-size', size], env());
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(`--page-size: must be a whole number from 1 to 10000, got ${size}`);
      expect(run.stderr).not.toMatch(/\(22023\)|sweep_expired/);
    },
  );

  it('while another holds the lease, `retention run` refuses (exit 1) and says who', async () => {
    const leases = new Leases(createSupabasePlatform());
    expect(await leases.take(RETENTION_LEASE, 'worker-elsewhere:1', 60)).toBe(true);
    try {
      const run = await sidekick(['retention', 'run'], env());
      expect(run.code).toBe(1);
      expect(run.stderr).toContain('another retention sweep is running (worker-elsewhere:1)');
    } finally {
      expect(await leases.release(RETENTION_LEASE, 'worker-elsewhere:1')).toBe(true);
    }
    expect(await holderOf()).toBeNull();
  });

  it('workers that all schedule it: one sweeps, the others skip; none again within the interval', async () => {
    await stack.platform.sql.exec(`UPDATE platform_leases SET last_finished_at = now() - interval '2 hours'`);
    const config = loadConfig(env());
    const workers = [1, 2, 3].map((i) => {
      const runtime = createRuntime(config, captureLogs().log);
      return {
        platform: PlatformAdmin.connect(stack.platform.url, stack.platform.serviceRoleKey),
        connections: runtime.connections,
        leases: new Leases(createSupabasePlatform()),
        holder: `worker-${i}`,
        log: runtime.log,
      };
    });
    const results = await Promise.all(workers.map((w) => sweepIfDue(w, 3600)));
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(await Promise.all(workers.map((w) => sweepIfDue(w, 3600)))).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
    const [lease] = await stack.platform.sql.query<{
      holder: string | null;
      last_result: Record<string, unknown>;
    }>('SELECT holder, last_result FROM platform_leases WHERE name = $1', [RETENTION_LEASE]);
    expect(lease).toMatchObject({ holder: null, last_result: { failed: 0 } });
  });
});

describe('speed', () => {
  it('sweeps tens of thousands of expired turns (with their 1024-dim embeddings) in pages: rows per second', async () => {
    const conversations = 200;
    const perConversation = 100;
    await stack.pool.sql.query(
      `WITH c AS (
         INSERT INTO conversations (client_id, agent_id, user_id, created_at, updated_at)
         SELECT $1, $2, gen_random_uuid(), now() - interval '60 days', now() - interval '60 days'
           FROM generate_series(1, $3::int) RETURNING id)
       INSERT INTO conversation_transcripts (client_id, conversation_id, agent_id, role, content, embeddings, created_at)
       SELECT $1, c.id, $2, 'user', repeat('words ', 20), array_fill(0.01, ARRAY[1024])::vector, now() - interval '60 days'
         FROM c, generate_series(1, $4::int)`,
      [A().clientId, A().agentId, conversations, perConversation],
    );
    const run = json<SweepJson>(
      await sidekick(['retention', 'run', '--client', A().clientId, '--page-size', '1000', '--json'], env()),
    );
    const a = sweepOf(run, A().clientId)!;
    expect(a).toMatchObject({ transcripts: conversations * perConversation, conversations });
    console.log(
      `retention sweep (${stack.pool.backend === 'pglite' ? 'PGlite' : 'PostgreSQL'}): ${a.transcripts} turns + ${a.conversations} conversations in ${a.pages} pages, ${a.seconds.toFixed(2)} s, ${Math.round((a.transcripts + a.conversations) / a.seconds)} rows/s`,
    );
  }, 300_000);
});

function createSupabasePlatform() {
  return PlatformAdmin.connect(stack.platform.url, stack.platform.serviceRoleKey).db;
}
