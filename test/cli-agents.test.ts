import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalStack } from '../src/stack/stack.js';
import { json, sidekick, stackEnv } from './support/cli.js';
import { startTestStack } from './support/stack.js';

let stack: LocalStack;
let dir: string;
let env: Record<string, string>;

beforeAll(async () => {
  [stack, dir] = await Promise.all([startTestStack(), mkdtemp(join(tmpdir(), 'sidekick-agents-'))]);
  env = stackEnv(stack);
});
afterAll(async () => {
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function newAdventurer(name: string): Promise<string> {
  const run = await sidekick(['clients', 'create', '--name', name, '--json'], env);
  expect(run.code, run.stderr).toBe(0);
  return json<{ client: { id: string } }>(run).client.id;
}

async function poolCount(table: string, clientId: string): Promise<number> {
  const [r] = await stack.pool.sql.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${table} WHERE client_id = $1`,
    [clientId],
  );
  return r!.n;
}

describe('agents: a new adventurer gets its sidekick from the CLI', () => {
  it('create (slug from the name), the tier limit (exit 3, naming it), show, list, update', async () => {
    const id = await newAdventurer('Agents Cycles');
    const created = await sidekick(
      [
        'agents',
        'create',
        '--client',
        id,
        '--name',
        'Bike Guide',
        '--system-prompt',
        'You fix bikes.',
        '--greeting',
        'Hi!',
        '--video-chat',
        '--voice',
        'verse',
        '--json',
      ],
      env,
    );
    expect(created.code, created.stderr).toBe(0);
    const c = json<{
      sidekick: { id: string; slug: string; video_chat_enabled: boolean; voice_settings: unknown };
      sessions: { video_chat: { enabled: boolean; reason: string }; text_chat: { enabled: boolean } };
      notes: string[];
    }>(created);
    expect(c.sidekick).toMatchObject({
      slug: 'bike-guide',
      video_chat_enabled: true,
      voice_settings: { voice: 'verse' },
    });
    // Stored as asked, but the operator is told what the tier will not give.
    expect(c.sessions.text_chat.enabled).toBe(true);
    expect(c.sessions.video_chat).toMatchObject({ enabled: false });
    expect(c.sessions.video_chat.reason).toMatch(/adventurer tier/);
    expect(c.notes.join('\n')).toMatch(
      /video chat is switched on, but the adventurer tier does not allow it/,
    );
    expect(c.notes.join('\n')).toMatch(/"verse" is stored, but the adventurer tier has no custom voices/);
    const [row] = await stack.pool.sql.query<{ client_id: string; system_prompt: string }>(
      'SELECT client_id, system_prompt FROM agents WHERE id = $1',
      [c.sidekick.id],
    );
    expect(row).toEqual({ client_id: id, system_prompt: 'You fix bikes.' });

    // The pool's sidekick-limit trigger refuses the second one: exit 3, naming the limit.
    const second = await sidekick(['agents', 'create', '--client', id, '--name', 'Second'], env);
    expect(second.code).toBe(3);
    expect(second.stderr).toMatch(/max_sidekicks \(adventurer tier\)/);
    expect(second.stderr).toMatch(/sidekick limit reached: client .* may have at most 1 sidekick/);
    expect(second.stderr).not.toMatch(/23514/);
    expect(await poolCount('agents', id)).toBe(1);

    const shown = await sidekick(['agents', 'show', '--client', id, '--agent', 'bike-guide'], env);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/prompt\s+You fix bikes\./);
    expect(shown.stdout).toMatch(/video chat\s+off\s+video chat is not allowed by the adventurer tier/);

    const listed = await sidekick(['agents', 'list', '--client', id, '--json'], env);
    expect(listed.code).toBe(0);
    expect(json<{ sidekicks: Array<{ slug: string; beyond_limit: boolean }> }>(listed).sidekicks).toEqual([
      expect.objectContaining({ slug: 'bike-guide', beyond_limit: false }),
    ]);

    const updated = await sidekick(
      [
        'agents',
        'update',
        '--client',
        id,
        '--agent',
        'bike-guide',
        '--greeting',
        'Hello again',
        '--no-video-chat',
        '--json',
      ],
      env,
    );
    expect(updated.code, updated.stderr).toBe(0);
    expect(json<{ sidekick: unknown }>(updated).sidekick).toMatchObject({
      greeting: 'Hello again',
      video_chat_enabled: false,
      system_prompt: 'You fix bikes.',
      voice_settings: { voice: 'verse' },
    });
    const nothing = await sidekick(['agents', 'update', '--client', id, '--agent', 'bike-guide'], env);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/nothing to change/);
  });

  it('from a YAML or JSON file (flags win); an unknown key or a bad value is named, exit 2', async () => {
    const id = await newAdventurer('Agents Files');
    const yaml = join(dir, 'guide.yaml');
    await writeFile(
      yaml,
      [
        'name: Garden Helper',
        'slug: garden',
        'system_prompt: |',
        '  You help with plants.',
        '  Keep it short.',
        'greeting: Hello from the garden',
        'voice_settings:',
        '  voice: sage',
        'text_chat_enabled: true',
        'voice_chat_enabled: false',
        '',
      ].join('\n'),
    );
    const created = await sidekick(
      ['agents', 'create', '--client', id, '--file', yaml, '--greeting', 'Flags win', '--json'],
      env,
    );
    expect(created.code, created.stderr).toBe(0);
    expect(json<{ sidekick: unknown }>(created).sidekick).toMatchObject({
      name: 'Garden Helper',
      slug: 'garden',
      system_prompt: 'You help with plants.\nKeep it short.\n',
      greeting: 'Flags win',
      voice_settings: { voice: 'sage' },
      voice_chat_enabled: false,
    });

    // What `agents show --json` prints, edited, goes back in.
    const shown = await sidekick(['agents', 'show', '--client', id, '--agent', 'garden', '--json'], env);
    const edited = json<{ sidekick: Record<string, unknown> }>(shown);
    edited.sidekick.greeting = 'Edited from the show output';
    const back = join(dir, 'edited.json');
    await writeFile(back, JSON.stringify(edited));
    const updated = await sidekick(
      ['agents', 'update', '--client', id, '--agent', 'garden', '--file', back, '--json'],
      env,
    );
    expect(updated.code, updated.stderr).toBe(0);
    expect(json<{ sidekick: unknown }>(updated).sidekick).toMatchObject({
      greeting: 'Edited from the show output',
      system_prompt: 'You help with plants.\nKeep it short.\n',
    });

    const typo = join(dir, 'typo.json');
    await writeFile(typo, JSON.stringify({ name: 'X', sytem_prompt: 'oops' }));
    const refusedTypo = await sidekick(
      ['agents', 'update', '--client', id, '--agent', 'garden', '--file', typo],
      env,
    );
    expect(refusedTypo.code).toBe(2);
    expect(refusedTypo.stderr).toMatch(/unknown field sytem_prompt/);

    const badType = join(dir, 'bad.yaml');
    await writeFile(badType, 'name: X\ntext_chat_enabled: maybe\n');
    const refusedType = await sidekick(
      ['agents', 'update', '--client', id, '--agent', 'garden', '--file', badType],
      env,
    );
    expect(refusedType.code).toBe(2);
    expect(refusedType.stderr).toMatch(/text_chat_enabled: .*boolean/);

    const broken = join(dir, 'broken.yaml');
    await writeFile(broken, 'name: [unclosed\n');
    const refusedYaml = await sidekick(
      ['agents', 'update', '--client', id, '--agent', 'garden', '--file', broken],
      env,
    );
    expect(refusedYaml.code).toBe(2);
    expect(refusedYaml.stderr).toMatch(/not valid YAML/);
  });

  it('delete shows what goes and needs --yes; with it, removes the links, conversations, transcripts; another client is untouched', async () => {
    const acme = stack.demo!.adventurers[0]!;
    const bloom = stack.demo!.adventurers[1]!;
    const bloomBefore = await Promise.all(
      ['agents', 'agent_documents', 'documents', 'conversations', 'conversation_transcripts'].map((t) =>
        poolCount(t, bloom.clientId),
      ),
    );
    const dry = await sidekick(
      ['agents', 'delete', '--client', acme.clientId, '--agent', acme.agentSlug],
      env,
    );
    expect(dry.code).toBe(2);
    expect(dry.stdout).toMatch(/would delete sidekick bike-guide/);
    expect(dry.stdout).toMatch(/2 document links/);
    expect(dry.stdout).toMatch(/1 conversation and their 2 transcript rows/);
    expect(dry.stdout).toMatch(/1 user overview of this sidekick/);
    expect(dry.stdout).toMatch(/2 documents no other sidekick uses are kept/);
    expect(dry.stderr).toMatch(/--yes: nothing was deleted/);
    expect(await poolCount('agents', acme.clientId)).toBe(1);

    const done = await sidekick(
      [
        'agents',
        'delete',
        '--client',
        acme.clientId,
        '--agent',
        acme.agentSlug,
        '--with-documents',
        '--yes',
        '--json',
      ],
      env,
    );
    expect(done.code, done.stderr).toBe(0);
    expect(json(done)).toMatchObject({
      deleted: true,
      removes: { document_links: 2, conversations: 1, transcripts: 2, user_overviews: 1 },
      documents_deleted: 2,
    });
    for (const t of [
      'agents',
      'agent_documents',
      'documents',
      'document_chunks',
      'conversations',
      'conversation_transcripts',
      'user_overviews',
    ]) {
      expect(await poolCount(t, acme.clientId), t).toBe(0);
    }
    const bloomAfter = await Promise.all(
      ['agents', 'agent_documents', 'documents', 'conversations', 'conversation_transcripts'].map((t) =>
        poolCount(t, bloom.clientId),
      ),
    );
    expect(bloomAfter).toEqual(bloomBefore);
    // The limit counts what is there: the adventurer may have a sidekick again.
    const again = await sidekick(
      ['agents', 'create', '--client', acme.clientId, '--name', 'Bike Guide'],
      env,
    );
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/created sidekick bike-guide/);
  });
});

describe('agents: a dedicated client', () => {
  it('many sidekicks in its own project; a taken slug is named; an override of max_sidekicks is a limit (exit 3)', async () => {
    const champion = stack.demo!.champion;
    const a = await sidekick(
      ['agents', 'create', '--client', champion.clientId, '--name', 'Visa Helper', '--json'],
      env,
    );
    expect(a.code, a.stderr).toBe(0);
    const b = await sidekick(
      ['agents', 'create', '--client', champion.clientId, '--name', 'Lounge Finder'],
      env,
    );
    expect(b.code, b.stderr).toBe(0);
    const [n] = await stack.dedicated.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM agents');
    expect(n!.n).toBe(3);

    const taken = await sidekick(
      [
        'agents',
        'update',
        '--client',
        champion.clientId,
        '--agent',
        'lounge-finder',
        '--slug',
        'visa-helper',
      ],
      env,
    );
    expect(taken.code).toBe(2);
    expect(taken.stderr).toMatch(/--slug: client .* already has a sidekick with slug "visa-helper"/);
    expect(taken.stderr).not.toMatch(/23505|duplicate key/);

    await stack.platform.sql.query('UPDATE clients SET max_sidekicks = 3 WHERE id = $1', [champion.clientId]);
    try {
      const over = await sidekick(
        ['agents', 'create', '--client', champion.clientId, '--name', 'Fourth'],
        env,
      );
      expect(over.code).toBe(3);
      expect(over.stderr).toMatch(
        /max_sidekicks \(champion tier\): client .* may have at most 3 sidekick\(s\) and has 3/,
      );
      const listed = await sidekick(['agents', 'list', '--client', champion.clientId], env);
      expect(listed.stdout.trim().split('\n')).toHaveLength(3);
    } finally {
      await stack.platform.sql.query('UPDATE clients SET max_sidekicks = NULL WHERE id = $1', [
        champion.clientId,
      ]);
    }

    const gone = await sidekick(
      ['agents', 'delete', '--client', champion.clientId, '--agent', 'lounge-finder', '--yes'],
      env,
    );
    expect(gone.code, gone.stderr).toBe(0);
    expect(gone.stdout).toMatch(/deleted sidekick lounge-finder/);
  });
});

describe("agents: another client's sidekick", () => {
  it('is no such sidekick to show, update or delete, even by its id; it stays as it is', async () => {
    const bloom = stack.demo!.adventurers[1]!;
    const champion = stack.demo!.champion;
    for (const args of [
      ['agents', 'show', '--client', champion.clientId, '--agent', bloom.agentId],
      ['agents', 'update', '--client', champion.clientId, '--agent', bloom.agentId, '--name', 'Mine now'],
      ['agents', 'delete', '--client', champion.clientId, '--agent', bloom.agentId, '--yes'],
      [
        'agents',
        'delete',
        '--client',
        stack.demo!.adventurers[0]!.clientId,
        '--agent',
        bloom.agentSlug,
        '--yes',
      ],
    ]) {
      const run = await sidekick(args, env);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr).toMatch(/has no sidekick with (id|slug)/);
    }
    const [row] = await stack.pool.sql.query<{ name: string; client_id: string }>(
      'SELECT name, client_id FROM agents WHERE id = $1',
      [bloom.agentId],
    );
    expect(row).toEqual({ name: 'Bloom Garden Centre sidekick', client_id: bloom.clientId });
  });
});

describe('agents: bad input exits 2 and names the field', () => {
  it.each([
    [['agents', 'create', '--client', 'acme', '--name', 'X'], /--client.*expected a uuid/],
    [
      ['agents', 'create', '--client', '0d0d0d0d-0000-4000-8000-0000000000ff', '--name', 'X'],
      /client 0d0d0d0d-.* is not in the platform/,
    ],
    [
      ['agents', 'create', '--client', 'a1a1a1a1-0000-4000-8000-000000000001'],
      /--name: a sidekick needs a name/,
    ],
    [
      [
        'agents',
        'create',
        '--client',
        'b2b2b2b2-0000-4000-8000-000000000002',
        '--name',
        'X',
        '--slug',
        'no spaces',
      ],
      /slug \(--slug\): must be a slug/,
    ],
    [
      ['agents', 'create', '--client', 'b2b2b2b2-0000-4000-8000-000000000002', '--name', '!!!'],
      /--slug: no slug can be made from the name/,
    ],
    [
      [
        'agents',
        'create',
        '--client',
        'c3c3c3c3-0000-4000-8000-000000000003',
        '--name',
        'Mute',
        '--no-voice-chat',
        '--no-text-chat',
      ],
      /--voice-chat \/ --text-chat: every session of this sidekick would be refused/,
    ],
    [
      [
        'agents',
        'create',
        '--client',
        'c3c3c3c3-0000-4000-8000-000000000003',
        '--name',
        'X',
        '--voice-settings',
        '[1]',
      ],
      /--voice-settings.*expected a JSON object/,
    ],
    [
      ['agents', 'show', '--client', 'c3c3c3c3-0000-4000-8000-000000000003', '--agent', 'no-such'],
      /--agent: client .* has no sidekick with slug "no-such"/,
    ],
    [
      ['agents', 'show', '--client', 'c3c3c3c3-0000-4000-8000-000000000003', '--agent', 'bad slug!'],
      /--agent.*expected a sidekick's slug/,
    ],
    [
      [
        'agents',
        'update',
        '--client',
        'c3c3c3c3-0000-4000-8000-000000000003',
        '--agent',
        'trip-planner',
        '--file',
        '/nope.yaml',
      ],
      /--file \/nope\.yaml: no such file/,
    ],
    [['agents', 'delete', '--client', 'c3c3c3c3-0000-4000-8000-000000000003'], /--agent/],
    [['agents', 'list'], /--client/],
  ])('%j', async (args, message) => {
    const run = await sidekick(args as string[], env);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(message as RegExp);
    expect(run.stderr).not.toMatch(/\([0-9A-Z]{5}\)|invalid input syntax/);
  });

  it('--help of every agents command states the exit-code contract', async () => {
    for (const cmd of ['create', 'update', 'show', 'list', 'delete']) {
      const help = await sidekick(['agents', cmd, '--help'], env);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(
        /Exit codes: 0 done; 1 failed, worth retrying .* 2 bad input .* 3 refused by a limit/,
      );
    }
  });
});
