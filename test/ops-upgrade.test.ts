import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vectorLiteral } from '../src/context/embeddings.js';
import { HashingEmbedder } from '../src/context/hashing-embedder.js';
import { TranscriptStore } from '../src/context/transcripts.js';
import type { RetryPolicy } from '../src/ops/requests.js';
import { DatabaseApiError, InjectedFailure, OpsError, UsageError } from '../src/ops/errors.js';
import { ExistingProjectProvisioner } from '../src/ops/existing-project.js';
import { LocalStackProvisioner } from '../src/ops/local-provisioner.js';
import { PlatformAdmin, PoolAdmins } from '../src/ops/platform.js';
import { provisionClient } from '../src/ops/provision.js';
import {
  abortUpgrade,
  cleanupClient,
  readMigrationState,
  UPGRADE_STEPS,
  type UpgradeDeps,
  type UpgradePhase,
  type UpgradeStep,
  upgradeClient,
} from '../src/ops/upgrade.js';
import type { SqlExecutor } from '../src/stack/sql.js';
import type { LocalStack } from '../src/stack/stack.js';
import { ClientConnectionManager } from '../src/tenancy/connections.js';
import { ClientDirectory } from '../src/tenancy/directory.js';
import { createSupabase } from '../src/tenancy/supabase.js';
import { TENANT_TABLES } from '../src/tenancy/tenant-query.js';
import { asClientId } from '../src/tenancy/types.js';
import { startTestStack } from './support/stack.js';

const log = pino({ level: 'silent' });
const retry: RetryPolicy = { retries: 1, minMs: 10, maxMs: 20 };
const TABLES = TENANT_TABLES;

let stack: LocalStack;
let platform: PlatformAdmin;
let provisioner: LocalStackProvisioner;
let deps: UpgradeDeps;

beforeAll(async () => {
  stack = await startTestStack();
  platform = PlatformAdmin.connect(stack.platform.url, stack.platform.serviceRoleKey, retry);
  provisioner = new LocalStackProvisioner(stack);
  deps = { platform, pools: new PoolAdmins(platform), provisioner, log, retry };
});
afterAll(async () => {
  await stack?.stop();
});

/**
 * Adds `n` document chunks (over 3 new documents) and `n` transcript turns (over 2 conversations) to
 * an adventurer in the pool, with random 1024-dim embeddings of mixed magnitudes, in two INSERTs.
 */
async function seedBulk(clientId: string, agentId: string, n: number): Promise<void> {
  const sql = stack.pool.sql;
  const docs = [randomUUID(), randomUUID(), randomUUID()];
  const convs = [randomUUID(), randomUUID()];
  for (const [i, id] of docs.entries()) {
    await sql.query(
      `INSERT INTO documents (id, client_id, title, content, status, metadata) VALUES ($1, $2, $3, $4, 'ready', $5)`,
      [id, clientId, `Bulk ${i}`, `bulk document ${i}`, JSON.stringify({ bulk: true, i })],
    );
    await sql.query('INSERT INTO agent_documents (client_id, agent_id, document_id) VALUES ($1, $2, $3)', [
      clientId,
      agentId,
      id,
    ]);
  }
  for (const id of convs) {
    await sql.query(
      'INSERT INTO conversations (id, client_id, agent_id, user_id, title) VALUES ($1, $2, $3, $4, $5)',
      [id, clientId, agentId, randomUUID(), 'bulk'],
    );
  }
  const vector = `(SELECT array_agg(x)::vector(1024) FROM (
      SELECT ((random() - 0.5) * power(10, random() * 8 - 4))::real AS x FROM generate_series(1, 1024) WHERE g > 0) v)`;
  await sql.query(
    `INSERT INTO document_chunks (client_id, document_id, chunk_index, content, embeddings, metadata, created_at)
     SELECT $1, ($2::uuid[])[1 + g % 3], g, 'chunk ' || g || ' ' || md5(g::text), ${vector},
            jsonb_build_object('g', g), now() - g * interval '1 second' + floor(random() * 1000000)::int * interval '1 microsecond'
       FROM generate_series(1, $3::int) g`,
    [clientId, docs, n],
  );
  await sql.query(
    `INSERT INTO conversation_transcripts (client_id, conversation_id, agent_id, user_id, role, content, turn_id, embeddings, created_at)
     SELECT $1, ($2::uuid[])[1 + g % 2], $4, NULL, CASE WHEN g % 2 = 0 THEN 'user' ELSE 'assistant' END,
            'turn ' || g, gen_random_uuid(), ${vector}, clock_timestamp()
       FROM generate_series(1, $3::int) g`,
    [clientId, convs, n, agentId],
  );
}

/** Every row of the client, as the dedicated schema would hold it (client_id dropped), in id order. */
async function clientRows(sql: SqlExecutor, table: string, clientId?: string): Promise<string[]> {
  const rows = await sql.query<{ j: string }>(
    clientId
      ? `SELECT (to_jsonb(t) - 'client_id')::text AS j FROM ${table} t WHERE client_id = $1 ORDER BY id`
      : `SELECT to_jsonb(t)::text AS j FROM ${table} t ORDER BY id`,
    clientId ? [clientId] : [],
  );
  return rows.map((r) => r.j);
}

async function embeddingsText(sql: SqlExecutor, table: string, clientId?: string) {
  return sql.query<{ id: string; e: string }>(
    `SELECT id::text AS id, embeddings::text AS e FROM ${table} ${clientId ? 'WHERE client_id = $1' : ''} ORDER BY id`,
    clientId ? [clientId] : [],
  );
}

/** A fingerprint of everything in the pool that does not belong to `except`. */
async function othersSnapshot(except: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const t of [...TABLES, 'pool_clients']) {
    const [row] = await stack.pool.sql.query<{ n: number; h: string | null }>(
      `SELECT count(*)::int AS n, md5(string_agg(t::text, '|' ORDER BY t::text)) AS h
         FROM ${t} t WHERE client_id <> ALL($1::uuid[])`,
      [except],
    );
    out[t] = `${row!.n}:${row!.h}`;
  }
  return out;
}

async function sourceSnapshot(clientId: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const t of TABLES) out[t] = await clientRows(stack.pool.sql, t, clientId);
  return out;
}

async function targetSnapshot(ref: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const t of TABLES) out[t] = await clientRows(provisioner.project(ref).sql, t);
  return out;
}

async function poolLeftovers(clientId: string): Promise<number> {
  let n = 0;
  for (const t of TABLES) {
    const [row] = await stack.pool.sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${t} WHERE client_id = $1`,
      [clientId],
    );
    n += row!.n;
  }
  return n;
}

describe('upgrading an adventurer to champion', () => {
  it('moves more than 2,500 chunks and transcripts past the API row cap: same ids, byte-identical embeddings, others untouched', async () => {
    const acme = stack.demo!.adventurers[0]!;
    await seedBulk(acme.clientId, acme.agentId, 2600);
    const before = await sourceSnapshot(acme.clientId);
    expect(before.document_chunks!.length).toBe(2604);
    expect(before.conversation_transcripts!.length).toBe(2602);
    const chunkVectors = await embeddingsText(stack.pool.sql, 'document_chunks', acme.clientId);
    const turnVectors = await embeddingsText(stack.pool.sql, 'conversation_transcripts', acme.clientId);
    const others = await othersSnapshot([acme.clientId]);
    const [{ count: poolCountBefore }] = (await stack.platform.sql.query<{ count: number }>(
      'SELECT current_client_count AS count FROM shared_pool_config WHERE id = $1',
      [stack.poolId],
    )) as [{ count: number }];
    const progress: string[] = [];

    const result = await upgradeClient(deps, {
      clientId: acme.clientId,
      pageSize: 500,
      fenceSettleMs: 50,
      onProgress: (p) => progress.push(`${p.table}:${p.copied}/${p.total}`),
    });
    console.log(
      `upgrade on ${stack.pool.backend === 'pglite' ? 'PGlite' : 'the real PostgreSQL server'}: ${result.rowsCopied} rows copied in ${result.copySeconds.toFixed(1)} s = ${Math.round(result.rowsPerSecond)} rows/s; whole upgrade (provision, verify, HNSW rebuild, cleanup) ${result.totalSeconds.toFixed(1)} s`,
    );

    expect(result.outcome).toBe('upgraded');
    expect(result.rowsCopied).toBe(Object.values(before).reduce((n, rows) => n + rows.length, 0));
    expect(progress).toContain('document_chunks:2604/2604');
    expect(progress.filter((p) => p.startsWith('document_chunks:')).length).toBeGreaterThan(5);
    const ref = result.project!.ref;
    expect(await targetSnapshot(ref)).toEqual(before);
    expect(await embeddingsText(provisioner.project(ref).sql, 'document_chunks')).toEqual(chunkVectors);
    expect(await embeddingsText(provisioner.project(ref).sql, 'conversation_transcripts')).toEqual(
      turnVectors,
    );
    for (const t of result.tables) expect(t.rows).toBe(before[t.table]!.length);

    const row = await platform.getClient(acme.clientId);
    expect(row).toMatchObject({
      tier: 'champion',
      hosting_type: 'dedicated',
      max_sidekicks: null,
      shared_pool_id: null,
      supabase_project_ref: ref,
      supabase_url: provisioner.project(ref).url,
      supabase_service_role_key: provisioner.project(ref).serviceRoleKey,
      migration_status: 'none',
      provisioning_status: 'ready',
    });
    expect(row.migration_state).toMatchObject({ phase: 'cleaned', indexes_dropped: false });
    expect(await poolLeftovers(acme.clientId)).toBe(0);
    const [fence] = await stack.pool.sql.query<{ write_fence: string }>(
      'SELECT write_fence FROM pool_clients WHERE client_id = $1',
      [acme.clientId],
    );
    expect(fence!.write_fence).toBe('moved');
    expect(await othersSnapshot([acme.clientId])).toEqual(others);
    const [{ count: poolCountAfter }] = (await stack.platform.sql.query<{ count: number }>(
      'SELECT current_client_count AS count FROM shared_pool_config WHERE id = $1',
      [stack.poolId],
    )) as [{ count: number }];
    expect(poolCountAfter).toBe(poolCountBefore - 1);
    const indexes = await provisioner
      .project(ref)
      .sql.query<{ indexname: string }>(
        `SELECT indexname FROM pg_indexes WHERE indexname LIKE '%hnsw' ORDER BY 1`,
      );
    expect(indexes.map((i) => i.indexname)).toEqual([
      'idx_chunks_embeddings_hnsw',
      'idx_transcripts_embeddings_hnsw',
    ]);

    // The worker now finds the sidekick's documents in the new project.
    const conn = await new ClientConnectionManager({
      directory: new ClientDirectory({
        platform: createSupabase(stack.platform.url, stack.platform.serviceRoleKey),
        ttlMs: 1000,
      }),
      tokenTtlSeconds: 300,
      maxProjects: 10,
    }).forClient(asClientId(acme.clientId));
    expect(conn.hostingType).toBe('dedicated');
    const query = new HashingEmbedder().embedOne('how much pressure for gravel tyres');
    const { data, error } = await conn.db.rpc('match_documents', {
      p_query_embedding: vectorLiteral(query),
      p_agent_slug: acme.agentSlug,
      p_match_threshold: 0.1,
      p_match_count: 3,
    });
    expect(error).toBeNull();
    expect((data as Array<{ title: string }>)[0]!.title).toBe('Tyre pressure guide');

    // Running it again is a no-op.
    expect((await upgradeClient(deps, { clientId: acme.clientId })).outcome).toBe('already_upgraded');
  }, 240_000);

  it('a crash after some pages and a target outage mid-copy: re-runs reach the same end state, no duplicates', async () => {
    const bloom = stack.demo!.adventurers[1]!;
    await seedBulk(bloom.clientId, bloom.agentId, 300);
    const before = await sourceSnapshot(bloom.clientId);
    const opts = { clientId: bloom.clientId, pageSize: 100, fenceSettleMs: 10 };
    const noRetry = { ...deps, retry: { retries: 0, minMs: 0, maxMs: 0 } };

    // Run 1: "crashes" after 4 pages (agents, documents, and two pages of chunks).
    // (seedBulk added 300 chunks to the 4 of the demo data: pages of 100, 100, 100, 4.)
    await expect(upgradeClient(noRetry, { ...opts, hooks: { failAfterPages: 4 } })).rejects.toBeInstanceOf(
      InjectedFailure,
    );
    let row = await platform.getClient(bloom.clientId);
    expect(row).toMatchObject({ migration_status: 'migrating', hosting_type: 'shared', tier: 'adventurer' });
    const state = row.migration_state as { cursors: Record<string, string>; copied: Record<string, number> };
    expect(state.copied.document_chunks).toBe(200);
    expect(state.cursors.document_chunks).toBe(JSON.parse(before.document_chunks![199]!).id);
    const [fence] = await stack.pool.sql.query<{ write_fence: string }>(
      'SELECT write_fence FROM pool_clients WHERE client_id = $1',
      [bloom.clientId],
    );
    expect(fence!.write_fence).toBe('fenced');
    const ref = row.supabase_project_ref!;
    const project = provisioner.project(ref);

    // Run 2: the target's API goes down after the second page of this run.
    const err = await upgradeClient(noRetry, {
      ...opts,
      hooks: {
        onPage: async ({ page }) => {
          if (page === 2) await project.gateway.stop();
        },
      },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(DatabaseApiError);
    await project.gateway.start();
    row = await platform.getClient(bloom.clientId);
    expect(row.migration_status).toBe('migrating');
    expect((row.migration_state as { copied: Record<string, number> }).copied.document_chunks).toBe(
      before.document_chunks!.length,
    );

    // Run 3 finishes. Pages written twice (crash between write and cursor) are ignored as duplicates.
    const result = await upgradeClient(noRetry, opts);
    expect(result).toMatchObject({ outcome: 'upgraded', resumed: true });
    expect(result.project!.ref).toBe(ref);
    expect(await targetSnapshot(ref)).toEqual(before);
    expect(await poolLeftovers(bloom.clientId)).toBe(0);
    expect(await platform.getClient(bloom.clientId)).toMatchObject({
      tier: 'champion',
      hosting_type: 'dedicated',
      migration_status: 'none',
    });
    expect(stack.dedicated.gateway.isUp).toBe(true);
  });

  it('verification catches rows that changed in the pool after their page was copied, and copies them again', async () => {
    const { client } = await provisionClient(deps, { name: 'Racy Co', tier: 'adventurer' });
    const agentId = randomUUID();
    await stack.pool.sql.query(
      `INSERT INTO agents (id, client_id, name, slug) VALUES ($1, $2, 'Racer', 'racer')`,
      [agentId, client.id],
    );
    await seedBulk(client.id, agentId, 20);
    const result = await upgradeClient(deps, {
      clientId: client.id,
      fenceSettleMs: 0,
      hooks: {
        onPhase: async (phase) => {
          if (phase !== 'copied') return;
          // Writes that passed the fence check just before it went up and committed after the copy
          // (done here as service_role, which the fence lets through).
          await stack.pool.sql.exec(`BEGIN;
            SET LOCAL ROLE service_role;
            INSERT INTO conversation_transcripts (client_id, conversation_id, agent_id, role, content)
              SELECT client_id, conversation_id, agent_id, 'user', 'late turn' FROM conversation_transcripts
               WHERE client_id = '${client.id}' LIMIT 1;
            UPDATE documents SET title = 'Renamed late' WHERE client_id = '${client.id}' AND title = 'Bulk 0';
            COMMIT;`);
        },
      },
    });
    const reconciled = Object.fromEntries(result.tables.map((t) => [t.table, t.reconciled]));
    expect(reconciled).toMatchObject({ conversation_transcripts: 1, documents: 1, document_chunks: 0 });
    const target = provisioner.project(result.project!.ref).sql;
    expect(
      await target.query(`SELECT 1 FROM conversation_transcripts WHERE content = 'late turn'`),
    ).toHaveLength(1);
    expect(await target.query(`SELECT 1 FROM documents WHERE title = 'Renamed late'`)).toHaveLength(1);
    expect(await poolLeftovers(client.id)).toBe(0);
  });

  it('an upgrade into a non-empty project is refused before anything is fenced; a stuck move can be aborted', async () => {
    const { client } = await provisionClient(deps, { name: 'Abort Co', tier: 'adventurer' });
    await stack.pool.sql.query(`INSERT INTO agents (client_id, name, slug) VALUES ($1, 'A', 'a')`, [
      client.id,
    ]);
    const fence = async () =>
      (
        await stack.pool.sql.query<{ write_fence: string }>(
          'SELECT write_fence FROM pool_clients WHERE client_id = $1',
          [client.id],
        )
      )[0]!.write_fence;

    // The stack's dedicated project already holds the demo champion: refused, nothing fenced.
    const occupied = new ExistingProjectProvisioner({
      ref: 'occupied',
      url: stack.dedicated.url,
      anonKey: stack.dedicated.anonKey,
      serviceRoleKey: stack.dedicated.serviceRoleKey,
    });
    const refused = await upgradeClient({ ...deps, provisioner: occupied }, { clientId: client.id }).catch(
      (e) => e,
    );
    expect(refused).toBeInstanceOf(UsageError);
    expect(refused.message).toMatch(/already holds data/);
    expect(await fence()).toBe('open');
    expect(await platform.getClient(client.id)).toMatchObject({
      migration_status: 'none',
      supabase_project_ref: 'occupied',
    });
    const released = await abortUpgrade(deps, { clientId: client.id });
    expect(released).toMatchObject({ abandonedProject: { ref: 'occupied' }, partialCopy: false });

    // A move that stopped half-way (fenced, migrating) is backed out: writes open, record as before.
    await expect(
      upgradeClient(deps, { clientId: client.id, fenceSettleMs: 0, hooks: { failAfterPages: 1 } }),
    ).rejects.toBeInstanceOf(InjectedFailure);
    expect(await fence()).toBe('fenced');
    const aborted = await abortUpgrade(deps, { clientId: client.id });
    expect(aborted.partialCopy).toBe(true);
    expect(await fence()).toBe('open');
    expect(await platform.getClient(client.id)).toMatchObject({
      tier: 'adventurer',
      hosting_type: 'shared',
      migration_status: 'none',
      supabase_project_ref: null,
      supabase_service_role_key: null,
      shared_pool_id: client.shared_pool_id,
    });
    await expect(abortUpgrade(deps, { clientId: client.id })).rejects.toBeInstanceOf(UsageError);
  });

  it('an abort while the upgrade runs wins: it does not switch, and the client stays in its pool, writable', async () => {
    const { client } = await provisionClient(deps, { name: 'Race Abort Co', tier: 'adventurer' });
    await stack.pool.sql.query(`INSERT INTO agents (client_id, name, slug) VALUES ($1, 'A', 'a')`, [
      client.id,
    ]);
    const err = await upgradeClient(deps, {
      clientId: client.id,
      fenceSettleMs: 0,
      hooks: {
        // An operator runs `clients upgrade --abort` from another terminal just before the switch.
        onPhase: async (p) => {
          if (p === 'verified') await abortUpgrade(deps, { clientId: client.id });
        },
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpsError);
    expect((err as Error).message).toMatch(/changed meanwhile/);
    expect(await platform.getClient(client.id)).toMatchObject({
      hosting_type: 'shared',
      migration_status: 'none',
      shared_pool_id: client.shared_pool_id,
    });
    const [pool] = await stack.pool.sql.query<{ write_fence: string; agents: number }>(
      `SELECT write_fence, (SELECT count(*)::int FROM agents WHERE client_id = $1) AS agents
         FROM pool_clients WHERE client_id = $1`,
      [client.id],
    );
    expect(pool).toEqual({ write_fence: 'open', agents: 1 });
  });

  it('turns a live session writes before, during (fenced) and after the switch all land once in the new project', async () => {
    const { client } = await provisionClient(deps, { name: 'Live Session Co', tier: 'adventurer' });
    const clientId = asClientId(client.id);
    const agentId = randomUUID();
    await stack.pool.sql.query(
      `INSERT INTO agents (id, client_id, name, slug) VALUES ($1, $2, 'Helper', 'helper')`,
      [agentId, clientId],
    );
    // A worker of its own: directory with a short TTL, tenant tokens, the real TranscriptStore.
    const directory = new ClientDirectory({
      platform: createSupabase(stack.platform.url, stack.platform.serviceRoleKey),
      ttlMs: 300,
      notReadyTtlMs: 100,
    });
    const manager = new ClientConnectionManager({ directory, tokenTtlSeconds: 300, maxProjects: 10 });
    const conversationId = randomUUID();
    const store = new TranscriptStore({
      resolveDb: async () => (await manager.forClient(clientId)).db,
      onWriteFailure: () => directory.invalidate(clientId),
      embedder: new HashingEmbedder(),
      conversation: { id: conversationId, agentId, userId: randomUUID() },
      log,
      batchSize: 5,
      maxBuffered: 1000,
      graceMs: 30_000,
      retry: { minMs: 20, maxMs: 150 },
    });
    const said: string[] = [];
    const say = (label: string, n: number) => {
      for (let i = 0; i < n; i++) {
        const content = `${label} turn ${i}`;
        said.push(content);
        store.add({ role: i % 2 ? 'assistant' : 'user', content });
      }
    };

    say('before', 6);
    await store.flush();
    expect(store.stats.written).toBe(6);
    const writesWhileFenced: number[] = [];
    const phases: UpgradePhase[] = [];
    const result = await upgradeClient(deps, {
      clientId,
      keepSource: true,
      fenceSettleMs: 100,
      hooks: {
        onPhase: async (phase) => {
          phases.push(phase);
          if (phase === 'fenced') say('fenced', 4);
          if (phase === 'copied') {
            say('copying', 3);
            await new Promise((r) => setTimeout(r, 300));
            writesWhileFenced.push(store.stats.written, store.stats.failedAttempts);
          }
          if (phase === 'switched') say('switched', 3);
        },
      },
    });
    say('after', 4);
    const stats = await store.close();

    expect(result.outcome).toBe('cleanup_pending');
    expect(phases).toEqual(['target_ready', 'fenced', 'copied', 'verified', 'switched', 'indexed']);
    // While fenced nothing was written, and the refused attempts were retried.
    expect(writesWhileFenced[0]).toBe(6);
    expect(writesWhileFenced[1]).toBeGreaterThan(0);
    expect(stats).toMatchObject({ written: said.length, dropped: 0, pending: 0 });

    const target = provisioner.project(result.project!.ref).sql;
    const landed = await target.query<{ content: string; n: number }>(
      `SELECT content, count(*)::int AS n FROM conversation_transcripts WHERE conversation_id = $1 GROUP BY content ORDER BY content`,
      [conversationId],
    );
    expect(landed.map((r) => r.content)).toEqual([...said].sort());
    expect(landed.every((r) => r.n === 1)).toBe(true);
    // Until cleanup the pool keeps only what it held before the move.
    const [inPool] = await stack.pool.sql.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM conversation_transcripts WHERE client_id = $1',
      [clientId],
    );
    expect(inPool!.n).toBe(6);

    const cleaned = await cleanupClient(deps, { clientId });
    expect(cleaned.deleted.conversation_transcripts).toBe(6);
    expect(await poolLeftovers(clientId)).toBe(0);
    expect((await platform.getClient(clientId)).migration_status).toBe('none');
  });
});

describe('the upgrade steps and their cursor', () => {
  it('a clean run does each step once, in order, and records the last as its cursor', async () => {
    const { client } = await provisionClient(deps, { name: 'Steps Co', tier: 'adventurer' });
    const agentId = randomUUID();
    await stack.pool.sql.query(`INSERT INTO agents (id, client_id, name, slug) VALUES ($1, $2, 'S', 's')`, [
      agentId,
      client.id,
    ]);
    await seedBulk(client.id, agentId, 10);
    const steps: UpgradeStep[] = [];
    const result = await upgradeClient(deps, {
      clientId: client.id,
      fenceSettleMs: 0,
      hooks: { onStep: (s) => void steps.push(s) },
    });
    expect(result).toMatchObject({ outcome: 'upgraded', resumed: false });
    expect(steps).toEqual([
      'ensure_target',
      'fence',
      'copy',
      'verify',
      'switch',
      'mark_moved',
      'rebuild_indexes',
      'clean_up',
    ]);
    expect(steps).toEqual(UPGRADE_STEPS);
    expect((await platform.getClient(client.id)).migration_state).toMatchObject({
      step: 'clean_up',
      phase: 'cleaned',
    });
  });

  it('a resume starts at the step after the cursor, also from a row the earlier format (booleans and phase) wrote', async () => {
    const { client } = await provisionClient(deps, { name: 'Resume Co', tier: 'adventurer' });
    const agentId = randomUUID();
    await stack.pool.sql.query(`INSERT INTO agents (id, client_id, name, slug) VALUES ($1, $2, 'R', 'r')`, [
      agentId,
      client.id,
    ]);
    await seedBulk(client.id, agentId, 250);
    const before = await sourceSnapshot(client.id);
    const opts = { clientId: client.id, pageSize: 100, fenceSettleMs: 0 };
    const noRetry = { ...deps, retry: { retries: 0, minMs: 0, maxMs: 0 } };

    // Run 1 stops inside the copy (agents, documents, one page of chunks written).
    await expect(upgradeClient(noRetry, { ...opts, hooks: { failAfterPages: 3 } })).rejects.toBeInstanceOf(
      InjectedFailure,
    );
    let row = await platform.getClient(client.id);
    const written = row.migration_state as Record<string, unknown>;
    expect(written).toMatchObject({ step: 'fence', indexes_dropped: true, copied: { document_chunks: 100 } });

    // The same progress as the code before the cursor recorded it.
    const { step: _, phase: __, ...rest } = written;
    await platform.updateClient(client.id, {
      migration_state: {
        ...rest,
        phase: 'fenced',
        target_ready: true,
        copy_started: true,
        index_build_started: false,
      },
    });

    // Run 2 continues with the copy and stops right after the switch.
    const run2: UpgradeStep[] = [];
    await expect(
      upgradeClient(noRetry, {
        ...opts,
        hooks: {
          onStep: (s) => void run2.push(s),
          onPhase: (p) => {
            if (p === 'switched') throw new InjectedFailure('crash after the switch');
          },
        },
      }),
    ).rejects.toBeInstanceOf(InjectedFailure);
    expect(run2).toEqual(['copy', 'verify', 'switch', 'mark_moved']);
    row = await platform.getClient(client.id);
    expect(row).toMatchObject({ migration_status: 'switched', hosting_type: 'dedicated' });
    expect(row.migration_state).toMatchObject({ step: 'mark_moved', copied: { document_chunks: 250 } });
    expect(row.migration_state).not.toHaveProperty('copy_started');

    // Run 3 does what is left.
    const run3: UpgradeStep[] = [];
    const result = await upgradeClient(noRetry, { ...opts, hooks: { onStep: (s) => void run3.push(s) } });
    expect(run3).toEqual(['rebuild_indexes', 'clean_up']);
    expect(result).toMatchObject({ outcome: 'upgraded', resumed: true, tier: 'champion', rowsCopied: 0 });
    expect(await targetSnapshot(result.project!.ref)).toEqual(before);
    expect(await poolLeftovers(client.id)).toBe(0);
    const indexes = await provisioner
      .project(result.project!.ref)
      .sql.query<{ indexname: string }>(`SELECT indexname FROM pg_indexes WHERE indexname LIKE '%hnsw'`);
    expect(indexes).toHaveLength(2);
  });

  it('reads the earlier migration_state format as the cursor it implies', () => {
    const step = (state: Record<string, unknown> | null) => readMigrationState(state).step;
    expect(step(null)).toBeNull();
    expect(step({})).toBeNull();
    expect(step({ aborted_at: '2026-01-01T00:00:00Z', abandoned_project: null })).toBeNull();
    expect(step({ target_ready: false, copy_started: false })).toBeNull();
    expect(step({ target_ready: true, phase: 'target_ready' })).toBe('ensure_target');
    expect(step({ target_ready: true })).toBe('ensure_target');
    expect(step({ target_ready: true, copy_started: true, phase: 'fenced' })).toBe('fence');
    expect(step({ target_ready: true, copy_started: true, phase: 'target_ready' })).toBe('fence');
    expect(step({ target_ready: true, copy_started: true, phase: 'copied' })).toBe('copy');
    expect(step({ target_ready: true, copy_started: true, phase: 'verified' })).toBe('verify');
    expect(step({ copy_started: true, phase: 'switched', index_build_started: true })).toBe('switch');
    expect(step({ copy_started: true, phase: 'cleaned' })).toBe('clean_up');
    // The current format: the cursor is the truth, `phase` only its label.
    expect(step({ step: 'copy', phase: 'cleaned' })).toBe('copy');
    expect(step({ step: null, copy_started: true })).toBeNull();

    const legacy = readMigrationState({
      kind: 'tier_upgrade',
      target_tier: 'paragon',
      phase: 'fenced',
      source_pool_id: 'pool-1',
      target_ready: true,
      copy_started: true,
      indexes_dropped: true,
      index_build_started: false,
      keep_source: true,
      cursors: { agents: 'a1', documents: 'd9' },
      copied: { agents: 1, documents: 9 },
      done_tables: ['agents'],
    });
    expect(legacy).toMatchObject({
      step: 'fence',
      target_tier: 'paragon',
      source_pool_id: 'pool-1',
      indexes_dropped: true,
      keep_source: true,
      cursors: { agents: 'a1', documents: 'd9' },
      copied: { agents: 1, documents: 9 },
      done_tables: ['agents'],
    });
    for (const gone of ['target_ready', 'copy_started', 'index_build_started']) {
      expect(legacy).not.toHaveProperty(gone);
    }
    expect(() => readMigrationState({ step: 'teleport' })).toThrow();
  });
});
