import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exitCodeFor } from '../src/commands/exit-codes.js';
import type { RetryPolicy } from '../src/ops/requests.js';
import { NoPoolCapacityError, OpsError, UsageError } from '../src/ops/errors.js';
import { ExistingProjectProvisioner } from '../src/ops/existing-project.js';
import { LocalStackProvisioner } from '../src/ops/local-provisioner.js';
import { ManagementApiError, ManagementApiProvisioner } from '../src/ops/management-api.js';
import { PlatformAdmin, PoolAdmins } from '../src/ops/platform.js';
import { provisionClient } from '../src/ops/provision.js';
import { type DedicatedProvisioner, projectNameFor } from '../src/ops/provisioner.js';
import { migrationFiles } from '../src/stack/sql.js';
import type { LocalStack } from '../src/stack/stack.js';
import { asClientId } from '../src/tenancy/types.js';
import { ON_REAL_SERVER, REAL_SERVER_URL } from './support/db.js';
import { ManagementApiServer } from './support/management-api.js';
import { connectionsTo, startTestStack } from './support/stack.js';

const log = pino({ level: 'silent' });
const retry: RetryPolicy = { retries: 1, minMs: 10, maxMs: 20 };
const fastClock = { now: () => new Date(), sleep: () => new Promise<void>((r) => setTimeout(r, 1)) };

let stack: LocalStack;
let platform: PlatformAdmin;
let pools: PoolAdmins;

beforeAll(async () => {
  stack = await startTestStack({ seed: false });
  platform = PlatformAdmin.connect(stack.platform.url, stack.platform.serviceRoleKey, retry);
  pools = new PoolAdmins(platform);
});
afterAll(async () => {
  await stack?.stop();
});

/** Registers another pool (backed by the stack's pool project) in the platform. */
async function addPool(name: string, maxClients: number, isActive = true): Promise<string> {
  const [row] = await stack.platform.sql.query<{ id: string }>(
    `INSERT INTO shared_pool_config (pool_name, supabase_url, supabase_service_role_key, supabase_anon_key,
       jwt_algorithm, jwt_secret, max_clients, is_active)
     VALUES ($1, $2, $3, $4, 'HS256', $5, $6, $7) RETURNING id`,
    [
      name,
      stack.pool.url,
      stack.pool.serviceRoleKey,
      stack.pool.anonKey,
      stack.pool.jwtSecret,
      maxClients,
      isActive,
    ],
  );
  return row!.id;
}

async function setActive(poolIds: string[], active: boolean): Promise<void> {
  await stack.platform.sql.query('UPDATE shared_pool_config SET is_active = $2 WHERE id = ANY($1::uuid[])', [
    poolIds,
    active,
  ]);
}

async function poolCounts(): Promise<Record<string, { count: number; actual: number; max: number }>> {
  const rows = await stack.platform.sql.query<{
    pool_name: string;
    count: number;
    actual: number;
    max: number;
  }>(
    `SELECT p.pool_name, p.current_client_count AS count, p.max_clients AS max,
            (SELECT count(*)::int FROM clients c WHERE c.shared_pool_id = p.id) AS actual
       FROM shared_pool_config p`,
  );
  return Object.fromEntries(rows.map((r) => [r.pool_name, { count: r.count, actual: r.actual, max: r.max }]));
}

const connections = () => connectionsTo(stack, { ttlMs: 1000, maxProjects: 20 });

describe('adventurer provisioning', () => {
  it('chooses an active pool with room (never a full or inactive one), registers the client there, ready', async () => {
    const fullPool = await addPool('full_pool', 1);
    const inactivePool = await addPool('inactive_pool', 100, false);
    // Fill full_pool with one client, as an earlier provisioning would have.
    await stack.platform.sql.query(
      `INSERT INTO clients (name, tier, hosting_type, max_sidekicks, shared_pool_id, provisioning_status)
       VALUES ('occupant', 'adventurer', 'shared', 1, $1, 'ready')`,
      [fullPool],
    );
    const deps = { platform, pools, log, retry };
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { client, created } = await provisionClient(deps, { name: `Shop ${i}`, tier: 'adventurer' });
      expect(created).toBe(true);
      ids.push(client.id);
      expect(client).toMatchObject({
        tier: 'adventurer',
        hosting_type: 'shared',
        max_sidekicks: 1,
        provisioning_status: 'ready',
        provisioning_error: null,
        shared_pool_id: stack.poolId,
      });
      expect(client.provisioning_completed_at).not.toBeNull();
    }
    expect([fullPool, inactivePool]).not.toContain(ids[0]);
    const registered = await stack.pool.sql.query<{
      client_id: string;
      max_sidekicks: number;
      write_fence: string;
    }>(
      'SELECT client_id, max_sidekicks, write_fence FROM pool_clients WHERE client_id = ANY($1::uuid[]) ORDER BY client_id',
      [ids],
    );
    expect(registered).toHaveLength(3);
    for (const r of registered) expect(r).toMatchObject({ max_sidekicks: 1, write_fence: 'open' });
    const counts = await poolCounts();
    expect(counts.full_pool).toMatchObject({ count: 1, actual: 1 });
    expect(counts.inactive_pool).toMatchObject({ count: 0, actual: 0 });
    expect(counts.adventurer_pool!.count).toBe(counts.adventurer_pool!.actual);

    // The worker can serve it: its tenant token writes a sidekick; the pool enforces the limit of one.
    const conn = await connections().forClient(asClientId(ids[0]));
    expect(conn.hostingType).toBe('shared');
    const first = await conn.db.from('agents').insert({ name: 'Guide', slug: 'guide' });
    expect(first.error).toBeNull();
    const second = await conn.db.from('agents').insert({ name: 'Another', slug: 'another' });
    expect(second.error?.message).toMatch(/sidekick limit/);

    // Provisioning again is a no-op.
    const again = await provisionClient(deps, { clientId: ids[0], name: 'Shop 0', tier: 'adventurer' });
    expect(again).toMatchObject({ created: false, alreadyReady: true });
    await setActive([fullPool], false);
  });

  it('no room in any pool is a clear error (exit code 3); the same client finishes once there is room', async () => {
    await setActive([stack.poolId], false);
    const deps = { platform, pools, log, retry };
    const id = randomUUID();
    try {
      const err = await provisionClient(deps, { clientId: id, name: 'Late', tier: 'adventurer' }).catch(
        (e) => e,
      );
      expect(err).toBeInstanceOf(NoPoolCapacityError);
      expect(exitCodeFor(err)).toBe(3);
      expect(err.message).toMatch(/no shared pool has room for client/);
      expect(err.message).toMatch(/shared_pool_config/);
      const row = await platform.getClient(id);
      expect(row).toMatchObject({ provisioning_status: 'failed', shared_pool_id: null });
      expect(row.provisioning_error).toMatch(/no shared pool has room/);
    } finally {
      await setActive([stack.poolId], true);
    }
    const done = await provisionClient(deps, { clientId: id, name: 'Late', tier: 'adventurer' });
    expect(done).toMatchObject({ created: false, alreadyReady: false });
    expect(done.client).toMatchObject({ provisioning_status: 'ready', shared_pool_id: stack.poolId });
  });

  it.runIf(ON_REAL_SERVER)(
    '30 concurrent adventurer provisionings into pools of total capacity 20: exactly 20 ready, 10 "no room" (real PostgreSQL server)',
    async () => {
      const a = await addPool('concurrent_a', 12);
      const b = await addPool('concurrent_b', 8);
      const idle = await addPool('concurrent_idle', 50, false);
      const active = await stack.platform.sql.query<{ id: string }>(
        'SELECT id FROM shared_pool_config WHERE is_active AND id <> ALL($1::uuid[])',
        [[a, b]],
      );
      await setActive(
        active.map((r) => r.id),
        false,
      );
      try {
        const deps = { platform, pools, log, retry: { retries: 0, minMs: 0, maxMs: 0 } };
        const t0 = performance.now();
        const results = await Promise.allSettled(
          Array.from({ length: 30 }, (_, i) =>
            provisionClient(deps, { name: `Rush ${i}`, tier: 'adventurer' }),
          ),
        );
        const ms = performance.now() - t0;
        const ready = results.filter((r) => r.status === 'fulfilled');
        const refused = results.filter((r) => r.status === 'rejected');
        for (const r of refused)
          expect((r as PromiseRejectedResult).reason).toBeInstanceOf(NoPoolCapacityError);
        expect(ready).toHaveLength(20);
        expect(refused).toHaveLength(10);
        const counts = await poolCounts();
        expect(counts.concurrent_a).toEqual({ count: 12, actual: 12, max: 12 });
        expect(counts.concurrent_b).toEqual({ count: 8, actual: 8, max: 8 });
        expect(counts.concurrent_idle).toEqual({ count: 0, actual: 0, max: 50 });
        const readyIds = ready.map(
          (r) => (r as PromiseFulfilledResult<{ client: { id: string } }>).value.client.id,
        );
        const registered = await stack.pool.sql.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM pool_clients WHERE client_id = ANY($1::uuid[])',
          [readyIds],
        );
        expect(registered[0]!.n).toBe(20);
        const failed = await stack.platform.sql.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM clients WHERE name LIKE 'Rush %' AND provisioning_status = 'failed' AND shared_pool_id IS NULL`,
        );
        expect(failed[0]!.n).toBe(10);
        console.log(
          `concurrent provisioning: 30 requests in ${Math.round(ms)} ms on ${stack.platform.backend}`,
        );
      } finally {
        await setActive([a, b, idle], false);
        await setActive(
          active.map((r) => r.id),
          true,
        );
      }
    },
  );
});

describe('champion provisioning on the local stack', () => {
  it('creates a dedicated project with the migrations applied; a failure half-way is finished by a re-run on the same project', async () => {
    const local = new LocalStackProvisioner(stack);
    let created = 0;
    let keyFailures = 1;
    // The local provisioner with a getKeys that fails once: the run stops after the project exists.
    const flaky: DedicatedProvisioner = {
      kind: 'flaky-local',
      findProject: (name) => local.findProject(name),
      createProject: (req) => {
        created++;
        return local.createProject(req);
      },
      waitUntilReady: (ref) => local.waitUntilReady(ref),
      getKeys: async (ref) => {
        if (keyFailures-- > 0) throw new OpsError('api-keys unavailable (injected)');
        return local.getKeys(ref);
      },
      runSql: (ref, sql) => local.runSql(ref, sql),
    };
    const deps = { platform, pools, provisioner: flaky, log, retry };
    const id = randomUUID();
    await expect(provisionClient(deps, { clientId: id, name: 'Nimbus', tier: 'champion' })).rejects.toThrow(
      /api-keys unavailable/,
    );
    const failed = await platform.getClient(id);
    expect(failed).toMatchObject({
      provisioning_status: 'failed',
      hosting_type: 'dedicated',
      supabase_project_ref: projectNameFor(id),
    });
    expect(failed.supabase_url).toBe(local.project(projectNameFor(id)).url);
    expect(failed.supabase_service_role_key).toBeNull();

    const { client } = await provisionClient(deps, { clientId: id, name: 'Nimbus', tier: 'champion' });
    expect(created).toBe(1);
    expect(client).toMatchObject({
      tier: 'champion',
      hosting_type: 'dedicated',
      max_sidekicks: null,
      provisioning_status: 'ready',
      shared_pool_id: null,
    });
    const conn = await connections().forClient(asClientId(id));
    expect(conn.hostingType).toBe('dedicated');
    for (const slug of ['one', 'two']) {
      expect((await conn.db.from('agents').insert({ name: slug, slug })).error).toBeNull();
    }
  });
});

describe('a dedicated project holds one client', () => {
  it('a second client given the same existing project is refused, naming the first; a re-run with --id says how to finish', async () => {
    const project = await stack.addDedicated('shared-by-mistake');
    const existing = new ExistingProjectProvisioner({
      ref: 'shared-by-mistake',
      url: project.url,
      anonKey: project.anonKey,
      serviceRoleKey: project.serviceRoleKey,
    });
    const deps = { platform, pools, provisioner: existing, log, retry };
    const first = await provisionClient(deps, { name: 'First Co', tier: 'champion' });
    expect(first.client.supabase_project_ref).toBe('shared-by-mistake');
    const second = await provisionClient(deps, { name: 'Second Co', tier: 'paragon' }).catch((e) => e);
    expect(second).toBeInstanceOf(UsageError);
    expect(second.message).toContain(`project shared-by-mistake already holds client ${first.client.id}`);
    expect(second.message).toMatch(/run again with --id [0-9a-f-]{36} to finish/);
  });
});

describe('the Management API provisioner', () => {
  let api: ManagementApiServer;
  const token = 'sbp_test_0123456789abcdef';
  beforeAll(async () => {
    api = await ManagementApiServer.start({
      accessToken: token,
      comingUpPolls: 2,
      serverUrl: REAL_SERVER_URL,
    });
  });
  afterAll(async () => {
    await api?.stop();
  });

  function provisioner(opts: { token?: string } = {}) {
    return new ManagementApiProvisioner({
      baseUrl: api.url,
      accessToken: opts.token ?? token,
      organizationSlug: 'acme-org',
      region: 'eu-central-1',
      pollIntervalMs: 5,
      retry: { retries: 2, minMs: 5, maxMs: 10 },
      clock: fastClock,
      projectUrl: (ref) => `https://${ref}.supabase.co`,
    });
  }

  it('sends the documented requests with the bearer token, and the migrations really apply', async () => {
    const id = randomUUID();
    api.requests.length = 0;
    const { client } = await provisionClient(
      { platform, pools, provisioner: provisioner(), log, retry },
      { clientId: id, name: 'Paragon Co', tier: 'paragon' },
    );
    const seen = api.requests;
    for (const r of seen) expect(r.authorization).toBe(`Bearer ${token}`);
    const calls = seen.map((r) => `${r.method} ${r.path.replace(/[a-z]{20}/, '{ref}')}`);

    // Not found by name (GET /v1/projects), then created once.
    expect(calls[0]).toBe('GET /v1/projects');
    const creates = seen.filter((r) => r.method === 'POST' && r.path === '/v1/projects');
    expect(creates).toHaveLength(1);
    const body = creates[0]!.body as Record<string, unknown>;
    expect(body).toEqual({
      name: projectNameFor(id),
      organization_slug: 'acme-org',
      db_pass: expect.any(String),
      region_selection: { type: 'specific', code: 'eu-central-1' },
    });
    expect((body.db_pass as string).length).toBeGreaterThanOrEqual(24);
    expect(creates[0]!.status).toBe(201);
    const ref = client.supabase_project_ref!;
    expect(ref).toMatch(/^[a-z]{20}$/);

    // Polled until ACTIVE_HEALTHY, then the service health.
    const polls = seen.filter((r) => r.method === 'GET' && r.path === `/v1/projects/${ref}`);
    expect(polls.length).toBe(3);
    const health = seen.filter((r) => r.path === `/v1/projects/${ref}/health`);
    expect(health).toHaveLength(1);
    expect(health[0]!.query.getAll('services')).toEqual(['db', 'rest']);
    const keys = seen.filter((r) => r.path === `/v1/projects/${ref}/api-keys`);
    expect(keys).toHaveLength(1);
    expect(keys[0]!.method).toBe('GET');

    // Every dedicated migration, in order, as the query of POST /database/query.
    const queries = seen.filter((r) => r.path === `/v1/projects/${ref}/database/query`);
    const files = await migrationFiles('dedicated');
    expect(queries.map((q) => q.method)).toEqual(files.map(() => 'POST'));
    expect(queries.map((q) => (q.body as { query: string }).query)).toEqual(
      await Promise.all(files.map((f) => readFile(f, 'utf8'))),
    );
    expect(files.map((f) => basename(f))).toEqual(['001_base_schema.sql', '002_rpcs.sql']);

    const project = api.projects.get(ref)!;
    const tables = await project.db.sql.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`,
    );
    expect(tables.map((t) => t.table_name)).toEqual([
      'agent_documents',
      'agents',
      'conversation_transcripts',
      'conversations',
      'document_chunks',
      'documents',
      'user_overviews',
    ]);
    const fns = await project.db.sql.query<{ proname: string }>(
      `SELECT proname FROM pg_proc WHERE proname = 'match_documents'`,
    );
    expect(fns).toHaveLength(1);
    expect(client).toMatchObject({
      tier: 'paragon',
      provisioning_status: 'ready',
      supabase_url: `https://${ref}.supabase.co`,
      supabase_anon_key: project.anonKey,
      supabase_service_role_key: project.serviceRoleKey,
    });
  });

  it('a failure after the project exists is finished by a re-run without creating a second project', async () => {
    const id = randomUUID();
    api.requests.length = 0;
    api.failNext('GET', /\/api-keys$/, 503, 3);
    const deps = { platform, pools, provisioner: provisioner(), log, retry };
    const err = await provisionClient(deps, { clientId: id, name: 'Retry Co', tier: 'champion' }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(ManagementApiError);
    expect(err.message).toMatch(/api-keys answered 503/);
    const failed = await platform.getClient(id);
    expect(failed.provisioning_status).toBe('failed');
    expect(failed.supabase_project_ref).toMatch(/^[a-z]{20}$/);

    await provisionClient(deps, { clientId: id, name: 'Retry Co', tier: 'champion' });
    expect(api.requests.filter((r) => r.method === 'POST' && r.path === '/v1/projects')).toHaveLength(1);
    expect((await platform.getClient(id)).provisioning_status).toBe('ready');
  });

  it('a project created just before a crash (ref never stored) is found by name, not created again', async () => {
    const id = randomUUID();
    const p = provisioner();
    const orphan = await p.createProject({ name: projectNameFor(id), clientId: id });
    api.requests.length = 0;
    const { client } = await provisionClient(
      { platform, pools, provisioner: p, log, retry },
      { clientId: id, name: 'Orphan Co', tier: 'champion' },
    );
    expect(client.supabase_project_ref).toBe(orphan.ref);
    expect(api.requests.filter((r) => r.method === 'POST' && r.path === '/v1/projects')).toHaveLength(0);
  });

  it('a wrong access token is refused by the API with its 401, and nothing is created', async () => {
    const id = randomUUID();
    const err = await provisionClient(
      { platform, pools, provisioner: provisioner({ token: 'wrong' }), log, retry },
      { clientId: id, name: 'Nope', tier: 'champion' },
    ).catch((e) => e);
    expect(err).toBeInstanceOf(ManagementApiError);
    expect(err.status).toBe(401);
    expect((await platform.getClient(id)).supabase_project_ref).toBeNull();
  });
});
