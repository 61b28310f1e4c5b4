import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type StackControl, startStackControl } from '../src/stack/control.js';
import type { LocalStack } from '../src/stack/stack.js';
import { json, sidekick, stackEnv } from './support/cli.js';
import { startTestStack } from './support/stack.js';

let stack: LocalStack;
let control: StackControl;
let env: Record<string, string>;

beforeAll(async () => {
  stack = await startTestStack();
  control = await startStackControl({
    platformUrl: stack.platform.url,
    addDedicated: (name) => stack.addDedicated(name),
  });
  env = stackEnv(stack);
});
afterAll(async () => {
  await control?.close();
  await stack?.stop();
});

/** The environment of a second terminal: the lines `npm run stack` printed. */
function withControl(more: Record<string, string> = {}) {
  return { ...env, LOCAL_STACK_CONTROL_URL: control.url, LOCAL_STACK_CONTROL_TOKEN: control.token, ...more };
}

async function created(
  args: string[],
  e = env,
): Promise<{ id: string; tier: string; supabase_project_ref: string | null }> {
  const run = await sidekick(['clients', 'create', ...args, '--json'], e);
  expect(run.code, run.stderr).toBe(0);
  return json<{ client: { id: string; tier: string; supabase_project_ref: string | null } }>(run).client;
}

async function poolRows(clientId: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of [
    'agents',
    'documents',
    'document_chunks',
    'agent_documents',
    'conversations',
    'conversation_transcripts',
    'user_overviews',
    'pool_clients',
  ]) {
    const [r] = await stack.pool.sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${t} WHERE client_id = $1`,
      [clientId],
    );
    out[t] = r!.n;
  }
  return out;
}

describe('clients create --tier champion from a second terminal (the stack control endpoint)', () => {
  it("gets a new project from the running stack; the client's sidekick and documents live there", async () => {
    const champion = await created(['--name', 'Zenith Air', '--tier', 'champion'], withControl());
    expect(champion.tier).toBe('champion');
    const ref = champion.supabase_project_ref!;
    expect(ref).toBe(`sidekick-${champion.id}`);
    const agent = await sidekick(['agents', 'create', '--client', champion.id, '--name', 'Gate Agent'], env);
    expect(agent.code, agent.stderr).toBe(0);
    const shown = json<{ rows: Record<string, number>; project: { ref: string } }>(
      await sidekick(['clients', 'show', '--client', champion.id, '--json'], env),
    );
    expect(shown).toMatchObject({ project: { ref }, rows: { agents: 1 } });
    // Not in the demo's dedicated project, nor in the pool.
    const [demo] = await stack.dedicated.sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM agents WHERE slug = 'gate-agent'`,
    );
    expect(demo!.n).toBe(0);

    // Re-running with its id finds the same project again (an idempotent provisioning).
    const again = await sidekick(
      ['clients', 'create', '--name', 'Zenith Air', '--tier', 'champion', '--id', champion.id],
      withControl(),
    );
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/already ready/);
  });

  it('the endpoint: loopback only, token required, Host checked; the CLI refuses a foreign or wrong stack', async () => {
    const u = new URL(control.url);
    expect(u.hostname).toBe('127.0.0.1');
    const ask = (headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          { host: '127.0.0.1', port: Number(u.port), path: '/v1/stack', headers },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
    expect(await ask({})).toBe(401);
    expect(await ask({ authorization: 'Bearer wrong' })).toBe(401);
    expect(await ask({ authorization: `Bearer ${control.token}` })).toBe(200);
    // A page on another origin that rebinds its name to 127.0.0.1 sends its own Host.
    expect(await ask({ authorization: `Bearer ${control.token}`, host: 'evil.example:80' })).toBe(403);

    const wrongToken = await sidekick(
      ['clients', 'create', '--name', 'Wrong Token Co', '--tier', 'champion'],
      withControl({ LOCAL_STACK_CONTROL_TOKEN: 'guess' }),
    );
    expect(wrongToken.code).toBe(2);
    expect(wrongToken.stderr).toMatch(/LOCAL_STACK_CONTROL_TOKEN: the local stack refused it/);
    const remote = await sidekick(
      ['clients', 'create', '--name', 'Remote Co', '--tier', 'champion'],
      withControl({ LOCAL_STACK_CONTROL_URL: 'http://10.1.2.3:54324' }),
    );
    expect(remote.code).toBe(2);
    expect(remote.stderr).toMatch(
      /LOCAL_STACK_CONTROL_URL: http:\/\/10\.1\.2\.3:54324 is not on this machine's loopback/,
    );
    const other = await startStackControl({
      platformUrl: 'http://127.0.0.1:1',
      addDedicated: () => Promise.reject(new Error('no')),
    });
    try {
      const mismatch = await sidekick(
        ['clients', 'create', '--name', 'Mismatch Co', '--tier', 'champion'],
        withControl({ LOCAL_STACK_CONTROL_URL: other.url, LOCAL_STACK_CONTROL_TOKEN: other.token }),
      );
      expect(mismatch.code).toBe(2);
      expect(mismatch.stderr).toMatch(
        /belongs to the stack whose platform is http:\/\/127\.0\.0\.1:1, but PLATFORM_SUPABASE_URL is/,
      );
    } finally {
      await other.close();
    }
  });
});

describe('clients list, show', () => {
  it('list: tier, hosting, pool, status and counts; filters; --json', async () => {
    const all = json<{
      clients: Array<{
        id: string;
        tier: string;
        pool: { name: string } | null;
        counts: Record<string, number>;
      }>;
    }>(await sidekick(['clients', 'list', '--json'], env));
    const acme = all.clients.find((c) => c.id === stack.demo!.adventurers[0]!.clientId)!;
    expect(acme).toMatchObject({
      tier: 'adventurer',
      hosting_type: 'shared',
      status: 'ready',
      pool: { name: 'adventurer_pool' },
      counts: { sidekicks: 1, documents: 2, conversations: 1 },
    });
    const nimbus = all.clients.find((c) => c.id === stack.demo!.champion.clientId)!;
    expect(nimbus).toMatchObject({
      hosting_type: 'dedicated',
      project: { ref: 'local-dedicated' },
      counts: { documents: 2 },
    });

    const champions = json<{ clients: Array<{ tier: string }> }>(
      await sidekick(['clients', 'list', '--tier', 'champion', '--json'], env),
    );
    expect(champions.clients.length).toBeGreaterThan(0);
    expect(new Set(champions.clients.map((c) => c.tier))).toEqual(new Set(['champion']));
    const human = await sidekick(['clients', 'list', '--status', 'ready', '--hosting', 'shared'], env);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(
      /a1a1a1a1-0000-4000-8000-000000000001\s+adventurer\s+shared\s+ready\s+pool adventurer_pool\s+1\s+2\s+1\s+Acme Bikes/,
    );
    expect(human.stdout).not.toMatch(/Nimbus/);
    const bad = await sidekick(['clients', 'list', '--status', 'sleeping'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--status.*pending, provisioning, ready, failed, suspended/);
  });

  it('show: the effective features and limits, which come from overrides, and overrides the gate drops', async () => {
    const c = await created([
      '--name',
      'Override Co',
      '--features',
      '{"video_chat_enabled": true, "max_documents": 10}',
    ]);
    // A key the gate drops can only come from a row written by other means (create refuses it).
    await stack.platform.sql.query(
      `UPDATE clients SET tier_features = tier_features || '{"teleport": true}' WHERE id = $1`,
      [c.id],
    );
    const shown = await sidekick(['clients', 'show', '--client', c.id, '--json'], env);
    const d = json<{
      effective: { features: Record<string, unknown>; overridden: string[]; warnings: string[] };
    }>(shown);
    expect(d.effective.features).toMatchObject({
      video_chat_enabled: true,
      max_documents: 10,
      max_sidekicks: 1,
      max_document_size_mb: 5,
    });
    expect(d.effective.overridden.sort()).toEqual(['max_documents', 'video_chat_enabled']);
    expect(d.effective.warnings.join('\n')).toMatch(/unknown feature \(teleport\)/);
    const human = await sidekick(['clients', 'show', '--client', c.id], env);
    expect(human.stdout).toMatch(/limits\s+max_sidekicks 1, max_documents 10\*, max_document_size_mb 5/);
    expect(human.stdout).toMatch(/features\s+.*video_chat_enabled\*/);
    expect(human.stdout).toMatch(/\* set by this client's overrides/);
  });
});

describe('clients update: the name and the per-client overrides', () => {
  it('sets, merges and removes overrides, shown in force; a re-run of create with other overrides is refused, not ignored', async () => {
    const c = await created(['--name', 'Update Co']);
    const update = (...args: string[]) => sidekick(['clients', 'update', '--client', c.id, ...args], env);
    const effective = async () =>
      json<{ effective: { features: Record<string, unknown>; overridden: string[] } }>(
        await sidekick(['clients', 'show', '--client', c.id, '--json'], env),
      ).effective;

    const set = await update('--features', '{"max_concurrent_sessions": 5, "transcript_retention_days": 7}');
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain(
      'overrides   {"max_concurrent_sessions":5,"transcript_retention_days":7}  (before: {})',
    );
    expect(set.stdout).toMatch(/limits\s+.*transcript_retention_days 7\*, max_concurrent_sessions 5\*/);
    expect(set.stderr).toContain('note: running workers apply it within CLIENT_CACHE_TTL_MS');
    expect((await update('--features', '{"max_documents": 9}', '--name', 'Update Company')).code).toBe(0);
    expect((await effective()).features).toMatchObject({
      max_concurrent_sessions: 5,
      transcript_retention_days: 7,
      max_documents: 9,
    });

    const rerun = await sidekick(
      ['clients', 'create', '--name', 'Update Company', '--id', c.id, '--features', '{"max_documents": 3}'],
      env,
    );
    expect(rerun.code).toBe(2);
    expect(rerun.stderr).toContain(`--features: client ${c.id} already exists with other overrides`);
    expect(rerun.stderr).toContain(`sidekick clients update --client ${c.id} --features`);

    expect((await update('--unset-feature', 'max_concurrent_sessions')).code).toBe(0);
    const after = await effective();
    expect(after.features.max_concurrent_sessions).toBe(2);
    expect(after.overridden.sort()).toEqual(['max_documents', 'transcript_retention_days']);

    const fixed = await update('--features', '{"max_sidekicks": 3}');
    expect(fixed.code).toBe(2);
    expect(fixed.stderr).toMatch(
      /--features: max_sidekicks: .*keys the adventurer tier lets a client override: /,
    );
    expect(fixed.stderr.split('override: ')[1]).not.toContain('max_sidekicks');
    const unknown = await update('--unset-feature', 'max_concurrent_sessions');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain(
      `--unset-feature: client ${c.id} has no override max_concurrent_sessions (its overrides: max_documents, transcript_retention_days)`,
    );
    expect((await update()).stderr).toMatch(/nothing to change: give --name, --features or --unset-feature/);
    expect(
      json<{ effective: { features: Record<string, unknown> } }>(
        await update('--json', '--name', 'Update Co'),
      ).effective.features.max_documents,
    ).toBe(9);
  });
});

describe('clients create: names', () => {
  it('a second client of the same name is refused (exit 2, naming the first), unless --allow-duplicate-name', async () => {
    const first = await created(['--name', 'Twin Bikes']);
    const twin = await sidekick(['clients', 'create', '--name', '  twin bikes '], env);
    expect(twin.code).toBe(2);
    expect(twin.stderr).toMatch(new RegExp(`--name: client ${first.id} is already called "Twin Bikes"`));
    expect(twin.stderr).toMatch(/--allow-duplicate-name/);
    const like = await created(['--name', 'Twin_Bikes']);
    expect(like.id).not.toBe(first.id);
    const allowed = await created(['--name', 'Twin Bikes', '--allow-duplicate-name']);
    expect(allowed.id).not.toBe(first.id);
  });
});

describe('clients delete', () => {
  it("an abandoned provisioning goes without --yes; a client with data needs it, and then only that client's rows go", async () => {
    // A champion whose provisioning failed (the stack's endpoint does not answer): a row nothing could delete before.
    const failed = await sidekick(
      ['clients', 'create', '--name', 'Abandoned Co', '--tier', 'champion'],
      withControl({ LOCAL_STACK_CONTROL_URL: 'http://127.0.0.1:9' }),
    );
    expect(failed.code).toBe(1);
    const id = /--id ([0-9a-f-]{36})/.exec(failed.stderr)![1]!;
    const gone = await sidekick(['clients', 'delete', '--client', id, '--json'], env);
    expect(gone.code, gone.stderr).toBe(0);
    expect(json(gone)).toMatchObject({ deleted: true, status: 'failed' });
    const [row] = await stack.platform.sql.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM clients WHERE id = $1',
      [id],
    );
    expect(row!.n).toBe(0);

    const acme = stack.demo!.adventurers[0]!;
    const bloom = stack.demo!.adventurers[1]!;
    const bloomBefore = await poolRows(bloom.clientId);
    const [pool] = await stack.platform.sql.query<{ n: number }>(
      'SELECT current_client_count AS n FROM shared_pool_config',
    );
    const dry = await sidekick(['clients', 'delete', '--client', acme.clientId], env);
    expect(dry.code).toBe(2);
    expect(dry.stdout).toMatch(/would delete client a1a1a1a1-.* "Acme Bikes" \(adventurer, ready\)/);
    expect(dry.stdout).toMatch(
      /pool adventurer_pool \(current\): .*agents 1.*documents 2.*; and its registration/,
    );
    expect(dry.stderr).toMatch(/--yes: nothing was deleted/);
    expect((await poolRows(acme.clientId)).agents).toBe(1);

    const done = await sidekick(['clients', 'delete', '--client', acme.clientId, '--yes', '--json'], env);
    expect(done.code, done.stderr).toBe(0);
    expect(json(done)).toMatchObject({
      deleted: true,
      deleted_rows: { agents: 1, documents: 2, conversation_transcripts: 2 },
    });
    expect(Object.values(await poolRows(acme.clientId)).every((n) => n === 0)).toBe(true);
    expect(await poolRows(bloom.clientId)).toEqual(bloomBefore);
    const [after] = await stack.platform.sql.query<{ n: number }>(
      'SELECT current_client_count AS n FROM shared_pool_config',
    );
    expect(after!.n).toBe(pool!.n - 1);
    const again = await sidekick(['clients', 'delete', '--client', acme.clientId], env);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/is not in the platform database/);
  });

  it('a dedicated client: the platform record goes, its project is left with what to do about it', async () => {
    const nimbus = stack.demo!.champion;
    const [before] = await stack.dedicated.sql.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM documents',
    );
    const done = await sidekick(['clients', 'delete', '--client', nimbus.clientId, '--yes'], env);
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toMatch(/kept: project local-dedicated with .*documents 2/);
    expect(done.stdout).toMatch(
      /note: project local-dedicated .* is the client's own and is not deleted here/,
    );
    expect(done.stdout).toMatch(/DELETE https:\/\/api\.supabase\.com\/v1\/projects\/local-dedicated/);
    const [after] = await stack.dedicated.sql.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM documents',
    );
    expect(after!.n).toBe(before!.n);
  });
});

describe('clients upgrade and cleanup', () => {
  it('an upgrade from a second terminal, then cleanup; cleanup again says "nothing left" and exits 0', async () => {
    const c = await created(['--name', 'Grow Co']);
    expect((await sidekick(['agents', 'create', '--client', c.id, '--name', 'Grower'], env)).code).toBe(0);
    const up = await sidekick(
      ['clients', 'upgrade', '--client', c.id, '--keep-source', '--fence-settle-ms', '0', '--json'],
      withControl(),
    );
    expect(up.code, up.stderr).toBe(0);
    expect(json(up)).toMatchObject({ outcome: 'cleanup_pending', tier: 'champion' });
    const first = await sidekick(['clients', 'cleanup', '--client', c.id, '--json'], env);
    expect(first.code, first.stderr).toBe(0);
    expect(json(first)).toMatchObject({ deleted: { agents: 1 }, nothing_left: false });
    const second = await sidekick(['clients', 'cleanup', '--client', c.id], env);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(
      /^nothing left: client .* has no rows in its old pool \(cleaned up at .*\)/,
    );
    // An adventurer has nothing to clean up: its data lives in the pool.
    const adventurer = await sidekick(
      ['clients', 'cleanup', '--client', stack.demo!.adventurers[1]!.clientId],
      env,
    );
    expect(adventurer.code).toBe(2);
  });
});

describe('clients: bad input exits 2 and names the field', () => {
  it.each([
    [['clients', 'show', '--client', 'acme'], /--client.*expected a uuid/],
    [['clients', 'delete', '--client', '12'], /--client.*expected a uuid/],
    [['clients', 'cleanup', '--client', 'x'], /--client.*expected a uuid/],
    [['clients', 'upgrade', '--client', 'x'], /--client.*expected a uuid/],
    [['clients', 'create', '--name', 'X', '--id', 'not-a-uuid'], /--id.*expected a uuid/],
    [['clients', 'create', '--name', 'X', '--tier', 'gold'], /--tier.*adventurer, champion, paragon/],
    [['clients', 'create', '--name', '  '], /--name: the client needs a name/],
    [['clients', 'create', '--name', 'X', '--features', '{nope'], /--features.*expected a JSON object/],
    [
      ['clients', 'create', '--name', 'X', '--features', '{"max_tools": "lots"}'],
      /--features: max_tools: expected a non-negative integer or null/,
    ],
    [
      ['clients', 'create', '--name', 'X', '--features', '{"max_toolz": 5}'],
      /--features: max_toolz: tier_features override dropped: unknown feature/,
    ],
    [
      ['clients', 'create', '--name', 'X', '--features', '{"max_sidekicks": 5}'],
      /--features: max_sidekicks: .*fixed for the tier/,
    ],
    [['clients', 'list', '--pool', 'p1'], /--pool.*expected a uuid/],
  ])('%j', async (args, message) => {
    const run = await sidekick(args as string[], env);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(message as RegExp);
    expect(run.stderr).not.toMatch(/\([0-9A-Z]{5}\)|invalid input syntax/);
  });
});
