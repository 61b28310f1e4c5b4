/**
 * The platform database in SQL, behind PostgREST's back: the local bootstrap (Supabase's roles and
 * auth.jwt()), migrations that re-apply without change, the tier CHECKs, grants, and pool capacity
 * (also under concurrency). The pool and dedicated schemas: sql-pool.test.ts, sql-dedicated.test.ts.
 *
 * Runs on PGlite, or on the real PostgreSQL server with STACK_POSTGRES_URL; the races run there
 * only (PGlite has one backend, so everything on it is serial).
 */

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '../src/stack/databases.js';
import { applyMigrations, type DatabaseKind } from '../src/stack/sql.js';
import {
  ANON,
  expectReapplies,
  failure,
  migratedDatabase,
  ON_REAL_SERVER,
  REAL_SERVER_URL,
  SERVICE,
  type TestDatabase,
  tenant,
} from './support/db.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase('platform');
});
afterAll(async () => {
  await db?.drop();
});

/** Removes every client and pool, so each capacity test starts from an empty platform. */
const resetPools = () => db.sql.exec('DELETE FROM clients; DELETE FROM shared_pool_config;');

async function addPool(name: string, maxClients: number, active = true): Promise<string> {
  const [row] = await db.sql.query<{ id: string }>(
    `INSERT INTO shared_pool_config (pool_name, supabase_url, supabase_service_role_key, jwt_secret, max_clients, is_active)
     VALUES ($1, 'http://pool.invalid', 'service-key', 'a-jwt-secret-of-at-least-32-characters', $2, $3) RETURNING id`,
    [name, maxClients, active],
  );
  return row!.id;
}

async function addAdventurers(n: number): Promise<string[]> {
  const rows = await db.sql.query<{ id: string }>(
    `INSERT INTO clients (name, tier, hosting_type, max_sidekicks)
     SELECT 'adventurer ' || g, 'adventurer', 'shared', 1 FROM generate_series(1, $1::int) g RETURNING id`,
    [n],
  );
  return rows.map((r) => r.id);
}

const assign = async (clientId: string) =>
  (await db.one<{ pool: string }>(SERVICE, 'SELECT assign_shared_pool($1) AS pool', [clientId]))[0]!.pool;

/** Per pool: the trigger-kept count and the real number of clients in it. */
const poolCounts = () =>
  db.sql.query<{ pool_name: string; kept: number; real: number }>(
    `SELECT p.pool_name, p.current_client_count AS kept,
            (SELECT count(*) FROM clients c WHERE c.shared_pool_id = p.id)::int AS real
       FROM shared_pool_config p ORDER BY p.pool_name`,
  );

describe('the local bootstrap (every database)', () => {
  it('gives Supabase roles and auth.jwt()', async () => {
    const roles = await db.sql.query(
      `SELECT rolname, rolcanlogin, rolbypassrls FROM pg_roles
        WHERE rolname IN ('anon', 'authenticated', 'service_role', 'authenticator') ORDER BY rolname`,
    );
    expect(roles).toEqual([
      { rolname: 'anon', rolcanlogin: false, rolbypassrls: false },
      { rolname: 'authenticated', rolcanlogin: false, rolbypassrls: false },
      { rolname: 'authenticator', rolcanlogin: true, rolbypassrls: false },
      { rolname: 'service_role', rolcanlogin: false, rolbypassrls: true },
    ]);
    const id = randomUUID();
    const [r] = await db.one(
      tenant(id),
      'SELECT auth.jwt() AS jwt, auth.role() AS role, current_user::text AS who',
    );
    expect(r).toEqual({
      jwt: { role: 'authenticated', client_id: id },
      role: 'authenticated',
      who: 'authenticated',
    });
    const [m] = await db.sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_auth_members am
         JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles u ON u.oid = am.member
        WHERE u.rolname = 'authenticator' AND g.rolname IN ('anon', 'authenticated', 'service_role')`,
    );
    expect(m!.n).toBe(3);
  });

  it.runIf(ON_REAL_SERVER)(
    'several databases of one server bootstrap and migrate at the same time (roles are cluster-wide)',
    async () => {
      const kinds: DatabaseKind[] = ['platform', 'shared_pool', 'dedicated', 'shared_pool', 'dedicated'];
      const dbs = await Promise.all(
        kinds.map((k) => createDatabase({ serverUrl: REAL_SERVER_URL, label: `conc_${k}` })),
      );
      try {
        await Promise.all(dbs.map((d, i) => applyMigrations(d.sql, kinds[i]!, { bootstrap: true })));
      } finally {
        await Promise.all(dbs.map((d) => d.drop()));
      }
    },
  );
});

describe('platform: clients and shared pools', () => {
  const insertClient = (cols: string, values: string) =>
    db.sql.query<{ id: string }>(`INSERT INTO clients (name, ${cols}) VALUES ('c', ${values}) RETURNING id`);

  it('migrations apply again and change nothing; rows survive, the count trigger fires once, a drifted count is repaired', async () => {
    await resetPools();
    const pool = await addPool('reapply', 10);
    const [client] = await addAdventurers(1);
    await assign(client!);
    await db.sql.exec('UPDATE shared_pool_config SET current_client_count = 0');
    await expectReapplies(db, 'platform');
    expect(await poolCounts()).toEqual([{ pool_name: 'reapply', kept: 1, real: 1 }]);
    const [second] = await addAdventurers(1);
    expect(await assign(second!)).toBe(pool);
    expect(await poolCounts()).toEqual([{ pool_name: 'reapply', kept: 2, real: 2 }]);
  });

  it('defaults to champion / dedicated, unlimited sidekicks, as the plan does', async () => {
    const [row] = await db.sql.query(
      `INSERT INTO clients (name) VALUES ('legacy')
       RETURNING tier::text, hosting_type::text, max_sidekicks, tier_features, provisioning_status, migration_status, migration_state`,
    );
    expect(row).toEqual({
      tier: 'champion',
      hosting_type: 'dedicated',
      max_sidekicks: null,
      tier_features: {},
      provisioning_status: 'pending',
      migration_status: 'none',
      migration_state: {},
    });
  });

  it('the tier CHECKs refuse an adventurer that is dedicated or has 2 or unlimited sidekicks, and a shared champion or paragon', async () => {
    const insert = (tier: string, hosting: string, max: number | null) =>
      db.sql.query('INSERT INTO clients (name, tier, hosting_type, max_sidekicks) VALUES ($1, $2, $3, $4)', [
        'check probe',
        tier,
        hosting,
        max,
      ]);
    for (const [tier, hosting, max, constraint] of [
      ['adventurer', 'dedicated', 1, 'check_adventurer_limits'],
      ['adventurer', 'shared', 2, 'check_adventurer_limits'],
      // The plan's `max_sidekicks = 1` is NULL for NULL, and a CHECK that yields NULL passes.
      ['adventurer', 'shared', null, 'check_adventurer_limits'],
      ['champion', 'shared', null, 'check_champion_dedicated'],
      ['paragon', 'shared', null, 'check_champion_dedicated'],
    ] as const) {
      const e = await failure(insert(tier, hosting, max));
      expect([e.code, e.constraint], `${tier} ${hosting} ${max}`).toEqual(['23514', constraint]);
    }
    // Controls: valid values pass, so only the CHECKs refused the ones above.
    await insert('adventurer', 'shared', 1);
    await insert('champion', 'dedicated', null);
    await insert('paragon', 'dedicated', null);
  });

  it('a shared client may be pending without a pool, but never ready without one', async () => {
    const [id] = await addAdventurers(1);
    const e = await failure(
      db.sql.query(`UPDATE clients SET provisioning_status = 'ready' WHERE id = $1`, [id]),
    );
    expect([e.code, e.constraint]).toEqual(['23514', 'clients_ready_shared_has_pool']);
    for (const [col, bad] of [
      ['provisioning_status', 'done'],
      ['migration_status', 'copying'],
    ] as const) {
      const err = await failure(db.sql.query(`UPDATE clients SET ${col} = $2 WHERE id = $1`, [id, bad]));
      expect(err.code).toBe('23514');
    }
  });

  it('a pool needs the signing secret of its algorithm (HS256 secret, or ES256 private JWK + kid)', async () => {
    const insertPool = (cols: string, values: string) =>
      db.sql.query(
        `INSERT INTO shared_pool_config (pool_name, supabase_url, supabase_service_role_key, ${cols})
         VALUES ('p-${randomUUID()}', 'http://x.invalid', 'k', ${values})`,
      );
    const privateJwk = JSON.stringify({ kty: 'EC', crv: 'P-256', x: 'x', y: 'y', d: 'd' });
    const publicJwk = JSON.stringify({ kty: 'EC', crv: 'P-256', x: 'x', y: 'y' });
    for (const [cols, values] of [
      ['jwt_algorithm', `'HS256'`],
      ['jwt_algorithm, jwt_private_key', `'ES256', '${privateJwk}'`],
      ['jwt_algorithm, jwt_private_key, jwt_key_id', `'ES256', '${publicJwk}', 'kid'`],
    ]) {
      expect((await failure(insertPool(cols!, values!))).constraint, values).toBe('shared_pool_signing_key');
    }
    expect((await failure(insertPool('jwt_algorithm, jwt_secret', `'RS256', 's'`))).code).toBe('23514');
    await insertPool('jwt_algorithm, jwt_private_key, jwt_key_id', `'ES256', '${privateJwk}', 'kid-1'`);
    await insertPool('jwt_secret', `'a-jwt-secret-of-at-least-32-characters'`);
  });

  it('only the service role reads the platform or calls its functions: anon and authenticated get permission denied', async () => {
    await addAdventurers(1);
    // Every table and every callable function of the platform, whatever later migrations add.
    const tables = (
      await db.sql.query<{ name: string }>(
        `SELECT relname AS name FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1`,
      )
    ).map((t) => t.name);
    expect(tables).toEqual(
      expect.arrayContaining([
        'clients',
        'shared_pool_config',
        'work_items',
        'platform_leases',
        'client_secrets',
      ]),
    );
    const functions = await db.sql.query<{ name: string; call: string }>(
      `SELECT p.proname AS name,
              format('SELECT %I(%s)', p.proname, (SELECT string_agg('NULL::' || format_type(t, NULL), ', ')
                                                     FROM unnest(p.proargtypes::oid[]) t)) AS call
         FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.prorettype <> 'trigger'::regtype
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')`,
    );
    expect(functions.map((f) => f.name)).toEqual(
      expect.arrayContaining([
        'assign_shared_pool',
        'claim_work_items',
        'finish_work_item',
        'take_lease',
        'release_lease',
        'acquire_session_lease',
        'renew_session_lease',
        'finish_session_lease',
        'settle_session_leases',
        'usage_report',
        'usage_top',
        'work_queue_depth',
      ]),
    );
    for (const actor of [ANON, tenant(randomUUID())]) {
      for (const table of tables) {
        const e = await failure(db.one(actor, `SELECT * FROM ${table}`));
        expect([e.code, e.message], `${actor.role} on ${table}`).toEqual([
          '42501',
          `permission denied for table ${table}`,
        ]);
      }
      for (const f of functions) {
        const e = await failure(db.one(actor, f.call));
        expect([e.code, e.message], `${actor.role} calling ${f.name}`).toEqual([
          '42501',
          `permission denied for function ${f.name}`,
        ]);
      }
    }
    expect((await db.one(SERVICE, 'SELECT id FROM clients')).length).toBeGreaterThan(0);
    const [rls] = await db.sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND NOT relrowsecurity`,
    );
    expect(rls!.n).toBe(0);
  });

  it('a lease has one holder until it expires or is released; with an interval, it is not taken again too soon', async () => {
    const take = async (holder: string, seconds: number, interval = 0) =>
      (
        await db.one<{ ok: boolean }>(SERVICE, 'SELECT take_lease($1, $2, $3, $4) AS ok', [
          'probe_lease',
          holder,
          seconds,
          interval,
        ])
      )[0]!.ok;
    const release = async (holder: string) =>
      (
        await db.one<{ ok: boolean }>(SERVICE, 'SELECT release_lease($1, $2, $3) AS ok', [
          'probe_lease',
          holder,
          '{"n": 1}',
        ])
      )[0]!.ok;
    expect(await take('w1', 1)).toBe(true);
    expect(await take('w2', 30)).toBe(false);
    expect(await take('w1', 30)).toBe(true); // renewed by its holder
    expect(await release('w2')).toBe(false);
    expect(await release('w1')).toBe(true);
    // Released a moment ago: with a one-hour interval nobody takes it; without one, anybody.
    expect(await take('w2', 30, 3600)).toBe(false);
    expect(await take('w2', 1)).toBe(true);
    await new Promise((r) => setTimeout(r, 1100));
    expect(await take('w3', 30)).toBe(true); // w2 died: its lease expired
    const [row] = await db.sql.query('SELECT holder, last_result FROM platform_leases WHERE name = $1', [
      'probe_lease',
    ]);
    expect(row).toEqual({ holder: 'w3', last_result: { n: 1 } });
    expect((await failure(db.one(SERVICE, "SELECT take_lease('probe_lease', '', 30)"))).code).toBe('22023');
    expect((await failure(db.sql.query("INSERT INTO platform_leases (name) VALUES ('Bad Name')"))).code).toBe(
      '23514',
    );
  });

  it('updated_at follows updates', async () => {
    const [c] = await db.sql.query<{ id: string }>(
      `INSERT INTO clients (name, created_at, updated_at) VALUES ('u', '2000-01-01', '2000-01-01') RETURNING id`,
    );
    const [row] = await db.sql.query<{ fresh: boolean }>(
      `UPDATE clients SET name = 'u2' WHERE id = $1 RETURNING updated_at > '2001-01-01' AS fresh`,
      [c!.id],
    );
    expect(row!.fresh).toBe(true);
  });

  describe('pool capacity', () => {
    it('fills a pool to max_clients, refuses the next clearly, never picks an inactive pool, and holds against direct writes', async () => {
      await resetPools();
      // Inactive pools with room, before and after the active one in name order: never chosen.
      await addPool('a-inactive', 100, false);
      const small = await addPool('b-small', 2);
      await addPool('c-inactive', 100, false);
      const [c1, c2, c3] = await addAdventurers(3);
      expect(await assign(c1!)).toBe(small);
      expect(await assign(c2!)).toBe(small);
      expect(await assign(c1!)).toBe(small); // idempotent: keeps its pool, counted once
      const e = await failure(assign(c3!));
      expect(e.code).toBe('P0001');
      expect(e.message).toBe(`no shared pool has room for client ${c3}`);
      // Going around the function does not overfill either.
      const direct = await failure(
        db.sql.query('UPDATE clients SET shared_pool_id = $2 WHERE id = $1', [c3, small]),
      );
      expect([direct.code, direct.constraint]).toEqual(['23514', 'shared_pool_capacity']);
      expect(await poolCounts()).toEqual([
        { pool_name: 'a-inactive', kept: 0, real: 0 },
        { pool_name: 'b-small', kept: 2, real: 2 },
        { pool_name: 'c-inactive', kept: 0, real: 0 },
      ]);
    });

    it('the count follows deletes, moves between pools and tier moves', async () => {
      await resetPools();
      const churn = await addPool('churn', 2);
      const other = await addPool('other', 5);
      await db.sql.query('UPDATE shared_pool_config SET is_active = false WHERE id = $1', [other]);
      const [c1, c2, c3] = await addAdventurers(3);
      await assign(c1!);
      await assign(c2!);
      await db.sql.query('DELETE FROM clients WHERE id = $1', [c1]);
      expect(await poolCounts()).toEqual([
        { pool_name: 'churn', kept: 1, real: 1 },
        { pool_name: 'other', kept: 0, real: 0 },
      ]);
      expect(await assign(c3!)).toBe(churn);
      await db.sql.query('UPDATE clients SET shared_pool_id = $2 WHERE id = $1', [c3, other]);
      expect(await poolCounts()).toEqual([
        { pool_name: 'churn', kept: 1, real: 1 },
        { pool_name: 'other', kept: 1, real: 1 },
      ]);
      // A tier move takes the client out of the pool: the slot is freed too.
      await db.sql.query(
        `UPDATE clients SET tier = 'champion', hosting_type = 'dedicated', max_sidekicks = NULL, shared_pool_id = NULL
          WHERE id = $1`,
        [c2],
      );
      expect(await poolCounts()).toEqual([
        { pool_name: 'churn', kept: 0, real: 0 },
        { pool_name: 'other', kept: 1, real: 1 },
      ]);
    });

    it('picks the least loaded active pool; a dedicated or unknown client gets none', async () => {
      await resetPools();
      await addPool('even-p', 4);
      await addPool('even-q', 4);
      for (const id of await addAdventurers(4)) await assign(id);
      expect(await poolCounts()).toEqual([
        { pool_name: 'even-p', kept: 2, real: 2 },
        { pool_name: 'even-q', kept: 2, real: 2 },
      ]);
      const [champ] = await insertClient('tier, hosting_type', `'champion', 'dedicated'`);
      expect((await failure(assign(champ!.id))).message).toContain('is not a shared client');
      expect((await failure(assign(randomUUID()))).message).toContain('does not exist');
    });

    it.runIf(ON_REAL_SERVER)(
      '20 concurrent assignments to two pools of 5, each holding its transaction open: exactly 10 succeed, 5 and 5 (real server)',
      async () => {
        await resetPools();
        await addPool('race-a', 5);
        await addPool('race-b', 5);
        const ids = await addAdventurers(20);
        const conns = await Promise.all(ids.map(() => db.connect()));
        try {
          const results = await Promise.allSettled(
            conns.map((c, i) =>
              c.query(
                `BEGIN; SET LOCAL ROLE service_role; SELECT assign_shared_pool('${ids[i]}'); SELECT pg_sleep(0.05); COMMIT;`,
              ),
            ),
          );
          expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
          // The refused ten are refused for want of room, never by a deadlock.
          for (const r of results)
            if (r.status === 'rejected') expect(String(r.reason)).toMatch(/no shared pool has room/);
          expect(await poolCounts()).toEqual([
            { pool_name: 'race-a', kept: 5, real: 5 },
            { pool_name: 'race-b', kept: 5, real: 5 },
          ]);
        } finally {
          await Promise.all(conns.map((c) => c.end()));
        }
      },
    );
  });

  describe('session leases and the usage ledger', () => {
    /** A lease request as the worker sends it (SQL), for `client` with a cap and quota. */
    const acquire = (client: string, job: string, opts: { max?: number | null; start?: boolean } = {}) =>
      `SELECT acquire_session_lease('${job}', '${client}', 'worker-${job}', 'adventurer', 'bike-guide',
              ${opts.max === undefined ? 2 : (opts.max ?? 'NULL')}, NULL, 60, ${opts.start ?? false}) AS grant`;
    const grant = async (client: string, job: string, opts: { max?: number | null; start?: boolean } = {}) =>
      (await db.one<{ grant: Record<string, unknown> }>(SERVICE, acquire(client, job, opts)))[0]!.grant;

    it('a lease is granted up to the cap and refused past it, naming the limit; the same job again keeps its slot; ended ones free theirs', async () => {
      await resetPools();
      const [client] = await addAdventurers(1);
      expect(await grant(client!, 'j1')).toMatchObject({ granted: true, status: 'pending', live: 1 });
      expect(await grant(client!, 'j2', { start: true })).toMatchObject({
        granted: true,
        status: 'live',
        live: 2,
      });
      expect(await grant(client!, 'j3')).toEqual({
        granted: false,
        limit: 'max_concurrent_sessions',
        max: 2,
        live: 2,
      });
      // j1's job starts: the slot it was granted, not a new one.
      expect(await grant(client!, 'j1', { start: true })).toMatchObject({
        granted: true,
        status: 'live',
        live: 2,
      });
      await db.one(SERVICE, `SELECT renew_session_lease('j2', 'worker-j2', 60, '{"user_turns": 3}', true)`);
      expect(await grant(client!, 'j3')).toMatchObject({ granted: true, live: 2 });
      // Finished: into the ledger once, with its usage; a second finish writes nothing.
      const finish = `SELECT finish_session_lease('j2', 'worker-j2', '{"user_turns": 4, "llm_prompt_tokens": 120}') AS wrote`;
      expect((await db.one<{ wrote: boolean }>(SERVICE, finish))[0]!.wrote).toBe(true);
      expect((await db.one<{ wrote: boolean }>(SERVICE, finish))[0]!.wrote).toBe(false);
      const rows = await db.sql.query(
        `SELECT job_id, user_turns, llm_prompt_tokens::int AS llm, end_reason, recorded_by FROM session_usage WHERE client_id = $1`,
        [client],
      );
      expect(rows).toEqual([
        { job_id: 'j2', user_turns: 4, llm: 120, end_reason: 'completed', recorded_by: 'worker-j2' },
      ]);
      // A lease names one client: another client's request for that job id is refused.
      const [other] = await addAdventurers(1);
      expect((await failure(db.one(SERVICE, acquire(other!, 'j1')))).code).toBe('23505');
    });

    it('an expired lease is moved to the ledger by the sweep, from its last renewal; a pending one just goes', async () => {
      await resetPools();
      const [client] = await addAdventurers(1);
      await grant(client!, 'k1', { start: true });
      await grant(client!, 'k2');
      await db.one(SERVICE, `SELECT renew_session_lease('k1', 'worker-k1', 60, '{"tts_characters": 900}')`);
      await db.sql.exec(`UPDATE session_leases SET expires_at = now() - interval '1 second'`);
      const settle = `SELECT settle_session_leases(NULL, NULL, 'sweeper', 100) AS n`;
      expect((await db.one<{ n: number }>(SERVICE, settle))[0]!.n).toBe(1);
      expect((await db.one<{ n: number }>(SERVICE, settle))[0]!.n).toBe(0);
      expect(await db.sql.query('SELECT job_id FROM session_leases WHERE client_id = $1', [client])).toEqual(
        [],
      );
      const [row] = await db.sql.query<Record<string, unknown>>(
        `SELECT job_id, tts_characters::int AS tts, end_reason, recorded_by, ended_at >= started_at AS ordered
           FROM session_usage WHERE client_id = $1`,
        [client],
      );
      expect(row).toEqual({
        job_id: 'k1',
        tts: 900,
        end_reason: 'recovered',
        recorded_by: 'sweeper',
        ordered: true,
      });
    });

    it.runIf(ON_REAL_SERVER)(
      '12 concurrent acquires for one client with a cap of 3, each holding its transaction open: exactly 3 granted (real server)',
      async () => {
        await resetPools();
        const [client] = await addAdventurers(1);
        const conns = await Promise.all(Array.from({ length: 12 }, () => db.connect()));
        try {
          const results = await Promise.all(
            conns.map(async (c, i) => {
              const res = await c.query(
                `BEGIN; SET LOCAL ROLE service_role; ${acquire(client!, `race-${i}`, { max: 3 })}; SELECT pg_sleep(0.05); COMMIT;`,
              );
              const rows = (res as unknown as Array<{ rows: Array<{ grant?: { granted: boolean } }> }>)[2]!
                .rows;
              return rows[0]!.grant!.granted;
            }),
          );
          expect(results.filter(Boolean)).toHaveLength(3);
          expect(
            await db.sql.query('SELECT 1 FROM session_leases WHERE client_id = $1', [client]),
          ).toHaveLength(3);
        } finally {
          await Promise.all(conns.map((c) => c.end()));
        }
      },
    );
  });
});
