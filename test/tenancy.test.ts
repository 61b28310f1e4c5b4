import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalStack } from '../src/stack/stack.js';
import {
  ClientNotFoundError,
  ClientNotReadyError,
  CrossTenantAccessError,
  MissingCredentialsError,
  PoolUnavailableError,
} from '../src/tenancy/errors.js';
import { createSupabase } from '../src/tenancy/supabase.js';
import { TenantTokenMinter } from '../src/tenancy/tokens.js';
import { asClientId, type ClientId } from '../src/tenancy/types.js';
import { connectionsTo, startTestStack } from './support/stack.js';

let stack: LocalStack;
let A: ClientId;
let B: ClientId;
let C: ClientId;

beforeAll(async () => {
  stack = await startTestStack();
  const demo = stack.demo!;
  A = asClientId(demo.adventurers[0]!.clientId);
  B = asClientId(demo.adventurers[1]!.clientId);
  C = asClientId(demo.champion.clientId);
});
afterAll(async () => {
  await stack?.stop();
});

function manager(opts: { ttlMs?: number; now?: () => number; maxProjects?: number } = {}) {
  return connectionsTo(stack, {
    ttlMs: opts.ttlMs ?? 30_000,
    now: opts.now,
    maxProjects: opts.maxProjects ?? 50,
  });
}

function resetGateways() {
  for (const p of [stack.platform, stack.pool, stack.dedicated]) p.gateway.reset();
}

describe('forClient reaches the database the platform names', () => {
  it('an adventurer reads its own sidekick from the shared pool with a tenant token, never the service key', async () => {
    resetGateways();
    const conn = await manager().forClient(A);
    expect(conn.hostingType).toBe('shared');
    expect(conn.tier).toBe('adventurer');
    expect(conn.features.video_chat_enabled).toBe(false);
    const { data, error } = await conn.db.from('agents').select('slug, client_id');
    expect(error).toBeNull();
    expect(data).toEqual([{ slug: 'bike-guide', client_id: A }]);

    const seen = stack.pool.gateway.requests;
    expect(seen.length).toBeGreaterThan(0);
    for (const r of seen) {
      expect(r.usedServiceKey).toBe(false);
      expect(r.apikeyRole).toBe('anon');
      expect(r.bearerRole).toBe('authenticated');
      expect(r.bearerClientId).toBe(A);
    }
    expect(stack.dedicated.gateway.count).toBe(0);
  });

  it('a champion reads from its dedicated project, and nothing goes to the pool', async () => {
    resetGateways();
    const conn = await manager().forClient(C);
    expect(conn.hostingType).toBe('dedicated');
    expect(conn.tier).toBe('champion');
    expect(conn.features.video_chat_enabled).toBe(true);
    const { data, error } = await conn.db.from('agents').select('slug');
    expect(error).toBeNull();
    expect(data).toEqual([{ slug: 'trip-planner' }]);
    expect(stack.dedicated.gateway.count).toBeGreaterThan(0);
    expect(stack.pool.gateway.count).toBe(0);
  });

  it('RPCs in the pool get p_client_id and the tenant token', async () => {
    resetGateways();
    const conn = await manager().forClient(A);
    const { data, error } = await conn.db.rpc('get_user_overview_for_agent', {
      p_user_id: stack.demo!.userId,
      p_agent_id: stack.demo!.adventurers[0]!.agentId,
    });
    expect(error).toBeNull();
    expect(data).toMatchObject({ bike: '2019 Trek Domane' });
    expect(stack.pool.gateway.requests.every((r) => r.bearerClientId === A && !r.usedServiceKey)).toBe(true);
  });
});

describe('the directory cache', () => {
  it('many concurrent lookups of one client make one platform request; after the TTL, one more', async () => {
    let now = 1_000_000;
    const m = manager({ ttlMs: 10_000, now: () => now });
    resetGateways();
    const conns = await Promise.all(Array.from({ length: 25 }, () => m.forClient(A)));
    expect(stack.platform.gateway.count).toBe(1);
    expect(new Set(conns).size).toBe(1);
    await m.forClient(A);
    expect(stack.platform.gateway.count).toBe(1);
    now += 10_001;
    await Promise.all(Array.from({ length: 5 }, () => m.forClient(A)));
    expect(stack.platform.gateway.count).toBe(2);
    m.directory.invalidate(A);
    await m.forClient(A);
    expect(stack.platform.gateway.count).toBe(3);
  });

  it('invalidate() while a lookup is in flight: the waiting callers still get the client, fresh', async () => {
    const m = manager();
    const pending = Promise.all([m.directory.getClient(A), m.directory.getClient(A)]);
    m.directory.invalidate(A); // e.g. a transcript write failed in another session of this client
    const [first, second] = await pending;
    expect(first.id).toBe(A);
    expect(second.id).toBe(A);
  });

  it('a change of the platform record is seen once the TTL has passed', async () => {
    let now = 5_000_000;
    const m = manager({ ttlMs: 10_000, now: () => now });
    expect((await m.forClient(B)).features.max_documents).toBe(50);
    await stack.platform.sql.query(
      `UPDATE clients SET tier_features = '{"max_documents": 75}' WHERE id = $1`,
      [B],
    );
    try {
      expect((await m.forClient(B)).features.max_documents).toBe(50);
      now += 10_001;
      expect((await m.forClient(B)).features.max_documents).toBe(75);
    } finally {
      await stack.platform.sql.query(`UPDATE clients SET tier_features = '{}' WHERE id = $1`, [B]);
    }
  });

  it('serves 1,000 different clients with one supabase-js client for their pool', async () => {
    // The demo pool holds 100 clients; these 1,000 are registered in it directly, so make room.
    await stack.platform.sql.query(
      'UPDATE shared_pool_config SET max_clients = max_clients + 1000 WHERE id = $1',
      [stack.poolId],
    );
    await stack.platform.sql.query(
      `INSERT INTO clients (id, name, tier, hosting_type, max_sidekicks, shared_pool_id, provisioning_status)
       SELECT ('5a000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, 'bulk ' || n, 'adventurer', 'shared', 1, $1, 'ready'
         FROM generate_series(1, 1000) AS n`,
      [stack.poolId],
    );
    const m = manager();
    resetGateways();
    for (let n = 1; n <= 1000; n++) {
      const conn = await m.forClient(
        asClientId(`5a000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`),
      );
      expect(conn.hostingType).toBe('shared');
    }
    expect(stack.platform.gateway.count).toBe(1000); // one platform request per cold client
    expect(m.liveClients).toBe(1);
    console.log(`live supabase-js clients after 1000 clients served: ${m.liveClients}`);
    await stack.platform.sql.query(`DELETE FROM clients WHERE name LIKE 'bulk %'`);
    await stack.platform.sql.query(
      'UPDATE shared_pool_config SET max_clients = max_clients - 1000 WHERE id = $1',
      [stack.poolId],
    );
  });

  it('keeps the number of live supabase-js clients bounded however many clients are served', async () => {
    const m = manager({ maxProjects: 10 });
    const ids = [A, B, C];
    for (let i = 0; i < 30; i++) await m.forClient(ids[i % 3]!);
    // One for the pool, one for the dedicated project.
    expect(m.liveClients).toBe(2);
  });
});

describe('isolation through TenantQuery and RLS', () => {
  it("A's queries never return B's rows, even without a filter in the calling code", async () => {
    const m = manager();
    const a = await m.forClient(A);
    for (const table of [
      'documents',
      'document_chunks',
      'conversations',
      'conversation_transcripts',
    ] as const) {
      const { data, error } = await a.db.from(table).select('client_id');
      expect(error).toBeNull();
      expect(data!.length).toBeGreaterThan(0);
      expect(new Set(data!.map((r) => r.client_id))).toEqual(new Set([A]));
    }
    // Bypass TenantQuery's filter: a raw request with A's token still sees only A's rows (RLS).
    const pool = stack.pool;
    const token = await new TenantTokenMinter(
      { alg: 'HS256', secret: pool.jwtSecret },
      { ttlSeconds: 60 },
    ).tokenFor(A);
    const raw = createSupabase(pool.url, pool.anonKey, {
      fetch: (input, init) => {
        const headers = new Headers(init?.headers);
        headers.set('Authorization', `Bearer ${token}`);
        return fetch(input, { ...init, headers });
      },
    });
    const unfiltered = await raw.from('documents').select('client_id');
    expect(unfiltered.error).toBeNull();
    expect(unfiltered.data!.length).toBeGreaterThan(0);
    expect(new Set(unfiltered.data!.map((r) => r.client_id))).toEqual(new Set([A]));
    // With only the anon key (no tenant token), nothing at all.
    const anon = await createSupabase(pool.url, pool.anonKey).from('documents').select('id');
    expect(anon.data ?? []).toEqual([]);
  });

  it("A cannot write a row tagged B: TenantQuery refuses before sending, and B's rows stay unchanged", async () => {
    const a = await manager().forClient(A);
    resetGateways();
    expect(() => a.db.from('documents').insert({ client_id: B, title: 'x' })).toThrow(CrossTenantAccessError);
    expect(() => a.db.from('documents').update({ client_id: B })).toThrow(CrossTenantAccessError);
    expect(() => a.db.rpc('get_user_overview_for_agent', { p_client_id: B })).toThrow(CrossTenantAccessError);
    expect(stack.pool.gateway.count).toBe(0);

    const before = await stack.pool.sql.query(
      'SELECT count(*)::int AS n FROM documents WHERE client_id = $1',
      [B],
    );
    const { error } = await a.db
      .from('documents')
      .update({ title: 'hijacked' })
      .neq('id', '00000000-0000-0000-0000-000000000000');
    expect(error).toBeNull();
    const titles = await stack.pool.sql.query<{ title: string }>(
      'SELECT title FROM documents WHERE client_id = $1',
      [B],
    );
    expect(titles.map((t) => t.title)).not.toContain('hijacked');
    const after = await stack.pool.sql.query(
      'SELECT count(*)::int AS n FROM documents WHERE client_id = $1',
      [B],
    );
    expect(after).toEqual(before);
    await stack.pool.sql.query(`UPDATE documents SET title = 'restored' WHERE client_id = $1`, [A]);
  });

  it('in a dedicated project client_id is kept out of writes', async () => {
    const c = await manager().forClient(C);
    const { data, error } = await c.db
      .from('documents')
      .insert({ client_id: C, title: 'Packing list', content: 'passport', status: 'ready' })
      .select('id, title');
    expect(error).toBeNull();
    expect(data).toEqual([{ id: expect.any(String), title: 'Packing list' }]);
    await c.db.from('documents').delete().eq('id', data![0]!.id);
  });
});

describe('typed errors', () => {
  async function addClient(sql: string, params: unknown[]) {
    await stack.platform.sql.query(sql, params);
  }

  it('an unknown client is ClientNotFoundError', async () => {
    const err = await manager()
      .forClient(asClientId('99999999-9999-4999-8999-999999999999'))
      .catch((e) => e);
    expect(err).toBeInstanceOf(ClientNotFoundError);
    expect(err.message).toContain('99999999-9999-4999-8999-999999999999 is not in the platform database');
  });

  it('a client still provisioning is ClientNotReadyError', async () => {
    const id = '7a000000-0000-4000-8000-000000000001';
    await addClient(
      `INSERT INTO clients (id, name, tier, hosting_type, max_sidekicks, provisioning_status) VALUES ($1, 'P', 'champion', 'dedicated', NULL, 'provisioning')`,
      [id],
    );
    const err = await manager()
      .forClient(asClientId(id))
      .catch((e) => e);
    expect(err).toBeInstanceOf(ClientNotReadyError);
    expect(err.message).toMatch(/not ready \(provisioning\): it is still being provisioned/);
  });

  it('a dedicated client without credentials is MissingCredentialsError', async () => {
    const id = '7a000000-0000-4000-8000-000000000002';
    await addClient(
      `INSERT INTO clients (id, name, tier, hosting_type, max_sidekicks, provisioning_status) VALUES ($1, 'Q', 'champion', 'dedicated', NULL, 'ready')`,
      [id],
    );
    const err = await manager()
      .forClient(asClientId(id))
      .catch((e) => e);
    expect(err).toBeInstanceOf(MissingCredentialsError);
    expect(err.message).toContain('has no supabase_url, supabase_service_role_key');
  });

  it('a client of an inactive pool is PoolUnavailableError', async () => {
    const [pool] = await stack.platform.sql.query<{ id: string }>(
      `INSERT INTO shared_pool_config (pool_name, supabase_url, supabase_service_role_key, supabase_anon_key, jwt_secret, is_active, max_clients)
       VALUES ('retired_pool', 'http://127.0.0.1:1', 'k', 'a', 'a-secret-of-at-least-32-characters!!', false, 10) RETURNING id`,
    );
    const id = '7a000000-0000-4000-8000-000000000003';
    await addClient(
      `INSERT INTO clients (id, name, tier, hosting_type, max_sidekicks, shared_pool_id, provisioning_status) VALUES ($1, 'R', 'adventurer', 'shared', 1, $2, 'ready')`,
      [id, pool!.id],
    );
    const err = await manager()
      .forClient(asClientId(id))
      .catch((e) => e);
    expect(err).toBeInstanceOf(PoolUnavailableError);
    expect(err.message).toContain('the pool is marked inactive');
  });
});
