import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProjectOwnedByAnotherClientError } from '../src/agent/errors.js';
import { parseJobMetadata } from '../src/agent/metadata.js';
import { decideJob } from '../src/agent/request.js';
import { planSession } from '../src/agent/session-plan.js';
import { runCli } from '../src/cli.js';
import { exitCodeFor } from '../src/commands/exit-codes.js';
import { HashingEmbedder } from '../src/context/hashing-embedder.js';
import { NoPoolCapacityError, OpsError, UsageError } from '../src/ops/errors.js';
import { ExistingProjectProvisioner } from '../src/ops/existing-project.js';
import { LocalStackProvisioner } from '../src/ops/local-provisioner.js';
import { ManagementApiError, ManagementApiProvisioner } from '../src/ops/management-api.js';
import { PlatformAdmin, PoolAdmins } from '../src/ops/platform.js';
import { provisionClient } from '../src/ops/provision.js';
import { type DedicatedProvisioner, projectNameFor } from '../src/ops/provisioner.js';
import type { RetryPolicy } from '../src/ops/requests.js';
import { migrationFiles } from '../src/stack/sql.js';
import type { LocalStack } from '../src/stack/stack.js';
import { createSupabase } from '../src/tenancy/supabase.js';
import { asClientId } from '../src/tenancy/types.js';
import { ON_REAL_SERVER, REAL_SERVER_URL } from './support/db.js';
import { captureLogs } from './support/logs.js';
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
    expect(second.message).toMatch(
      /run again with --id ([0-9a-f-]{36}) to finish, or remove the failed record: `sidekick clients delete --client \1`/,
    );
  });
});

describe('a dedicated project belongs to one client, whatever URL names it', () => {
  async function cli(args: string[], env: Record<string, string>) {
    let stdout = '';
    let stderr = '';
    const code = await runCli(args, {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      env: {
        PLATFORM_SUPABASE_URL: stack.platform.url,
        PLATFORM_SUPABASE_SERVICE_ROLE_KEY: stack.platform.serviceRoleKey,
        EMBEDDING_PROVIDER: 'local',
        ...env,
      },
    });
    return { code, stdout, stderr };
  }
  const ownerOf = async (project: { sql: LocalStack['pool']['sql'] }) =>
    (await project.sql.query<{ client_id: string }>('SELECT client_id FROM project_owner')).map(
      (r) => r.client_id,
    );

  it('provisioning records the owner in the project; a second client is refused under any spelling of its URL (exit 2), and its row names no project', async () => {
    const local = new LocalStackProvisioner(stack);
    const { client: owner } = await provisionClient(
      { platform, pools, provisioner: local, log, retry },
      { name: 'Nimbus Owner', tier: 'champion' },
    );
    const project = local.project(owner.supabase_project_ref!);
    expect(await ownerOf(project)).toEqual([owner.id]);
    await project.sql.exec(`INSERT INTO agents (name, slug) VALUES ('Planner', 'planner')`);

    const keys = {
      DEDICATED_SUPABASE_SERVICE_ROLE_KEY: project.serviceRoleKey,
      DEDICATED_SUPABASE_ANON_KEY: project.anonKey,
    };
    const { port } = new URL(project.url);
    // The platform's refs differ for each (derived from the host), so only the project's own record
    // can tell that they are one project.
    const spellings = [
      `${project.url}/`,
      `http://localhost:${port}`,
      `HTTP://LOCALHOST:${port}/`,
      `http://127.0.0.1:${port}`,
    ];
    for (const url of spellings) {
      const r = await cli(
        // Each refused attempt leaves a failed row named Zenith: the next one is a new client of that name.
        [
          'clients',
          'create',
          '--name',
          'Zenith',
          '--allow-duplicate-name',
          '--tier',
          'champion',
          '--existing-project-url',
          url,
        ],
        keys,
      );
      expect(r.code, `${url}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(`belongs to client ${owner.id} (its project_owner record)`);
    }
    const zeniths = await stack.platform.sql.query<{
      status: string;
      url: string | null;
      key: string | null;
    }>(
      `SELECT provisioning_status AS status, supabase_url AS url, supabase_service_role_key AS key
         FROM clients WHERE name = 'Zenith'`,
    );
    expect(zeniths).toHaveLength(spellings.length);
    for (const z of zeniths) expect(z).toEqual({ status: 'failed', url: null, key: null });
    expect(await ownerOf(project)).toEqual([owner.id]);

    // The record cannot be rewritten through the API, nor a second row added.
    const api = createSupabase(project.url, project.serviceRoleKey);
    expect((await api.from('project_owner').insert({ client_id: randomUUID() })).error?.code).toBe('23505');
    expect(
      (await api.from('project_owner').update({ client_id: randomUUID() }).neq('client_id', randomUUID()))
        .error?.code,
    ).toBe('42501');
    await expect(project.sql.exec(`UPDATE project_owner SET client_id = '${randomUUID()}'`)).rejects.toThrow(
      /written once/,
    );
  });

  it("a client pointed at another client's project (a row from before the record) is refused by the worker and by `clients verify`", async () => {
    const local = new LocalStackProvisioner(stack);
    const { client: owner } = await provisionClient(
      { platform, pools, provisioner: local, log, retry },
      { name: 'Real Owner', tier: 'champion' },
    );
    const project = local.project(owner.supabase_project_ref!);
    await project.sql.exec(`INSERT INTO agents (name, slug) VALUES ('Planner', 'planner')`);
    // As `clients create --existing-project-url` could register it before: ready, another ref.
    const intruder = randomUUID();
    await stack.platform.sql.query(
      `INSERT INTO clients (id, name, tier, hosting_type, supabase_url, supabase_anon_key, supabase_service_role_key,
         supabase_project_ref, provisioning_status)
       VALUES ($1, 'Intruder', 'champion', 'dedicated', $2, $3, $4, 'localhost-elsewhere', 'ready')`,
      [intruder, `${project.url}/`, project.anonKey, project.serviceRoleKey],
    );
    const runtime = { connections: connections(), embedder: new HashingEmbedder({ dimensions: 1024 }) };
    const conversation = randomUUID();
    const metadata = JSON.stringify({
      client_id: intruder,
      agent_slug: 'planner',
      conversation_id: conversation,
    });
    expect(await decideJob(metadata, runtime, log)).toEqual({
      accept: false,
      code: 'project_owned_by_another_client',
      reason: expect.stringContaining(`belongs to client ${owner.id}`),
    });
    // The job's own planning (which would create the conversation) is refused before any write.
    await expect(
      planSession(parseJobMetadata(metadata), runtime.connections, log, {
        claimConversation: true,
        embedder: runtime.embedder,
      }),
    ).rejects.toBeInstanceOf(ProjectOwnedByAnotherClientError);
    expect(await project.sql.query('SELECT 1 FROM conversations WHERE id = $1', [conversation])).toEqual([]);
    // The owner itself is served.
    const own = JSON.stringify({ client_id: owner.id, agent_slug: 'planner' });
    expect(await decideJob(own, runtime, log)).toEqual({ accept: true });

    // Nor do the operator's commands read or write it for the intruder.
    for (const args of [
      ['docs', 'list', '--client', intruder],
      ['agents', 'list', '--client', intruder],
    ]) {
      const r = await cli(args, {});
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(`belongs to client ${owner.id} (its project_owner record)`);
      expect(r.stdout).not.toContain('planner');
    }
    expect((await cli(['agents', 'list', '--client', owner.id], {})).stdout).toContain('planner');

    const verified = await cli(['clients', 'verify', '--client', intruder], {});
    expect(verified.code).toBe(2);
    expect(verified.stderr).toContain(`belongs to client ${owner.id}`);
    expect(await ownerOf(project)).toEqual([owner.id]);
  });

  it('a project from before the record is served with a warning; `clients verify` records its owner once; a new client is not handed it', async () => {
    const local = new LocalStackProvisioner(stack);
    const { client } = await provisionClient(
      { platform, pools, provisioner: local, log, retry },
      { name: 'Old Champion', tier: 'champion' },
    );
    const project = local.project(client.supabase_project_ref!);
    await project.sql.exec(`INSERT INTO agents (name, slug) VALUES ('Planner', 'planner')`);
    await project.sql.exec('DELETE FROM project_owner'); // as a project from before the record

    const { log: captured, records } = captureLogs('warn');
    const runtime = { connections: connections(), embedder: new HashingEmbedder({ dimensions: 1024 }) };
    const metadata = JSON.stringify({ client_id: client.id, agent_slug: 'planner' });
    expect(await decideJob(metadata, runtime, captured)).toEqual({ accept: true });
    const warned = records().find((r) => String(r.msg).includes('records no owner'));
    expect(warned?.level).toBe(40);
    expect(String(warned?.msg)).toContain(`sidekick clients verify --client ${client.id}`);

    // Another client given this project (holding data, no owner) is refused, not handed it.
    const keys = {
      DEDICATED_SUPABASE_SERVICE_ROLE_KEY: project.serviceRoleKey,
      DEDICATED_SUPABASE_ANON_KEY: project.anonKey,
    };
    const other = await cli(
      [
        'clients',
        'create',
        '--name',
        'Zenith',
        '--allow-duplicate-name',
        '--tier',
        'champion',
        '--existing-project-url',
        `${project.url}/`,
      ],
      keys,
    );
    expect(other.code).toBe(2);
    expect(other.stderr).toMatch(/records no owner but already holds data \(1 sidekick\(s\)\)/);
    expect(await ownerOf(project)).toEqual([]);

    const first = await cli(['clients', 'verify', '--client', client.id], {});
    expect(first).toMatchObject({ code: 0 });
    expect(first.stdout).toContain(
      `client ${client.id} is now recorded as the owner of project ${client.supabase_project_ref} (it had no owner record; 1 sidekick)`,
    );
    const again = await cli(['clients', 'verify', '--client', client.id, '--json'], {});
    expect(JSON.parse(again.stdout)).toMatchObject({ hosting: 'dedicated', owner: 'already' });
    expect(await ownerOf(project)).toEqual([client.id]);
  });

  it("an existing project with the client's own data is claimed only with --adopt-existing-data", async () => {
    const project = await stack.addDedicated('own-existing-data');
    await project.sql.exec(`INSERT INTO agents (name, slug) VALUES ('Legacy', 'legacy')`);
    const keys = {
      DEDICATED_SUPABASE_SERVICE_ROLE_KEY: project.serviceRoleKey,
      DEDICATED_SUPABASE_ANON_KEY: project.anonKey,
    };
    const id = randomUUID();
    const args = ['clients', 'create', '--id', id, '--name', 'Legacy Co', '--tier', 'champion'];
    const refused = await cli([...args, '--existing-project-url', project.url], keys);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--adopt-existing-data');
    const adopted = await cli(
      [...args, '--existing-project-url', project.url, '--adopt-existing-data'],
      keys,
    );
    expect(adopted.code, adopted.stderr).toBe(0);
    expect(await ownerOf(project)).toEqual([id]);
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

    // Every dedicated migration, in order, as the query of POST /database/query, then the claim
    // of the project for this client (its project_owner record).
    const queries = seen.filter((r) => r.path === `/v1/projects/${ref}/database/query`);
    const files = await migrationFiles('dedicated');
    expect(queries.map((q) => q.method)).toEqual([...files.map(() => 'POST'), 'POST']);
    expect(queries.map((q) => (q.body as { query: string }).query)).toEqual([
      ...(await Promise.all(files.map((f) => readFile(f, 'utf8')))),
      `SELECT claim_project_owner('${id}'::uuid, false) AS answer`,
    ]);
    // In file order, the base schema first (the assertion above compares every file's text).
    expect(files.map((f) => basename(f))[0]).toBe('001_base_schema.sql');
    expect(files.map((f) => basename(f))).toEqual([...files.map((f) => basename(f))].sort());

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
      'project_owner',
      'user_overviews',
    ]);
    expect(await project.db.sql.query('SELECT client_id FROM project_owner')).toEqual([{ client_id: id }]);
    const fns = await project.db.sql.query<{ proname: string }>(
      `SELECT proname FROM pg_proc WHERE proname IN ('match_documents', 'begin_session') ORDER BY 1`,
    );
    expect(fns.map((f) => f.proname)).toEqual(['begin_session', 'match_documents']);
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
