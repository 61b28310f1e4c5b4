/**
 * The README's commands, run as the README says (`npm run ...` in the checkout, as child processes),
 * with OpenAI played by the loopback stand-in. Every configuration variable the commands read is
 * set explicitly (blank = unset), so neither the caller's shell nor a `.env` in the checkout can
 * change what is tested: the environment takes precedence over `.env`.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../src/config.js';
import { REAL_SERVER_URL } from './support/db.js';
import { messageText, type OpenAIServer, startOpenAIServer } from './support/openai-server.js';

const ROOT = new URL('..', import.meta.url).pathname;
/** tsx's loader by its path: the bare name would be resolved from the working directory. */
const TSX = pathToFileURL(join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;
/** What the operations tooling reads besides CONFIG_VARIABLES. */
const OPS_VARIABLES = [
  'SUPABASE_ACCESS_TOKEN',
  'SUPABASE_ORGANIZATION_SLUG',
  'DEDICATED_SUPABASE_SERVICE_ROLE_KEY',
  'DEDICATED_SUPABASE_ANON_KEY',
];

let openai: OpenAIServer;
beforeAll(async () => {
  openai = await startOpenAIServer();
});
afterAll(async () => {
  await openai?.close();
});

const children: ChildProcess[] = [];
afterEach(() => {
  // Each command runs in its own process group: stopping the group reaches what npm started.
  for (const c of children.splice(0)) if (c.exitCode === null && c.pid) stopGroup(c.pid, 'SIGTERM');
});

function stopGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** The environment of a command: every variable it reads given here, nothing left to chance. */
function commandEnv(vars: Record<string, string>): NodeJS.ProcessEnv {
  const blank = Object.fromEntries([...CONFIG_VARIABLES, ...OPS_VARIABLES].map((v) => [v, '']));
  return { ...process.env, ...blank, STACK_POSTGRES_URL: REAL_SERVER_URL ?? '', ...vars };
}

function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  opts: { stdin?: string; cwd?: string } = {},
) {
  const child = spawn(command, args, {
    cwd: opts.cwd ?? ROOT,
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    stdout += String(d);
  });
  child.stderr!.on('data', (d) => {
    stderr += String(d);
  });
  if (opts.stdin !== undefined) child.stdin!.end(opts.stdin);
  const ended = once(child, 'exit').then(([code]) => code as number | null);
  /** Resolves with the exit code; a command that hangs fails with what it printed. */
  const exit = (withinMs = 60_000) =>
    Promise.race([
      ended,
      new Promise<never>((_, reject) =>
        setTimeout(
          () => reject(new Error(`${command} ${args.join(' ')} did not exit:\n${stdout}\n${stderr}`)),
          withinMs,
        ).unref(),
      ),
    ]);
  /** Resolves once stdout holds `text`; fails if the command exits first. */
  const printed = (text: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => stdout.includes(text) && resolve();
      child.stdout!.on('data', check);
      check();
      void ended.then((code) => reject(new Error(`exited with ${code} before "${text}":\n${stderr}`)));
    });
  return { child, exit, printed, out: () => stdout, err: () => stderr };
}

/** The chat requests the model was sent, as one text per request. */
const sentToModel = () =>
  openai.chatRequests().map((r) => r.body.messages.map((m) => messageText(m)).join('\n'));

describe("the README's chat command", () => {
  it('`OPENAI_API_KEY=... npm run sidekick -- chat` (embedded stack): a seeded demo passage reaches the model', async () => {
    openai.reset();
    const chat = run(
      'npm',
      ['run', 'sidekick', '--', 'chat'],
      commandEnv({ OPENAI_API_KEY: 'sk-loopback', OPENAI_BASE_URL: openai.baseURL }),
      { stdin: 'What tyre pressure should my road bike have?\n/quit\n' },
    );
    expect(await chat.exit(), chat.err()).toBe(0);
    expect(chat.out()).toContain('You said: What tyre pressure should my road bike have?');
    expect(sentToModel().some((m) => m.includes('Road bike tyres run at 80 to 100 psi'))).toBe(true);
    // Documents and the question were embedded by the same (configured) model.
    expect(new Set(openai.embeddingRequests().map((r) => r.body.model))).toEqual(
      new Set(['text-embedding-3-small']),
    );
    expect(chat.err()).not.toMatch(/docs reembed/);
  }, 120_000);

  it('`npm run stack -- --seed`, then `npm run sidekick -- chat --client C --agent S` with what it printed: the passage reaches the model', async () => {
    openai.reset();
    const models = { OPENAI_API_KEY: 'sk-loopback', OPENAI_BASE_URL: openai.baseURL };
    // Any free ports (0): the README's 54321.. may be taken by another stack on this machine.
    const stack = run('npm', ['run', 'stack', '--', '--seed', '--port', '0'], commandEnv(models));
    await stack.printed('stack ready\n');
    const printed = Object.fromEntries(
      stack
        .out()
        .split('\n')
        .filter((l) => /^[A-Z_]+=/.test(l))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    const champion = printed.DEMO_CHAMPION_CLIENT_ID!;
    const chat = run(
      'npm',
      ['run', 'sidekick', '--', 'chat', '--client', champion, '--agent', 'trip-planner'],
      commandEnv({
        ...models,
        PLATFORM_SUPABASE_URL: printed.PLATFORM_SUPABASE_URL!,
        PLATFORM_SUPABASE_SERVICE_ROLE_KEY: printed.PLATFORM_SUPABASE_SERVICE_ROLE_KEY!,
      }),
      { stdin: 'Which flights may I book in business class?\n/quit\n' },
    );
    expect(await chat.exit(), chat.err()).toBe(0);
    expect(sentToModel().some((m) => m.includes('business class is allowed for longer flights'))).toBe(true);
    expect(chat.err()).not.toMatch(/docs reembed/);
    expect(stack.err()).toContain('# demo documents embedded with text-embedding-3-small (1024 dimensions)');
    // Ctrl-C in the terminal: the signal reaches the command's whole process group.
    stopGroup(stack.child.pid!, 'SIGINT');
    await stack.exit();
  }, 150_000);
});

describe('.env in the working directory', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sidekick-env-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  // The CLI as `npm run sidekick` runs it (tsx), from a directory holding only a .env.
  const sidekick = (args: string[], env: NodeJS.ProcessEnv) =>
    run(process.execPath, ['--import', TSX, join(ROOT, 'src/cli.ts'), ...args], env, { cwd: dir });

  it('is read by the CLI, under the environment; a malformed one is a clear error (exit 2) that quotes no line', async () => {
    await writeFile(
      join(dir, '.env'),
      '# from .env\nPLATFORM_SUPABASE_URL=not-a-url\nPLATFORM_SUPABASE_SERVICE_ROLE_KEY="sb-secret-in-dotenv"\n',
    );
    const env = commandEnv({});
    delete env.PLATFORM_SUPABASE_URL;
    delete env.PLATFORM_SUPABASE_SERVICE_ROLE_KEY;
    const fromFile = sidekick(['clients', 'show', '--client', '3f0c9a52-8d1e-4c4b-9f5e-2a7b6c1d0e9f'], env);
    expect(await fromFile.exit()).toBe(2);
    expect(fromFile.err()).toContain('PLATFORM_SUPABASE_URL: is not a valid URL');

    // Set in the environment (even blank), a variable is not taken from .env.
    const overridden = sidekick(['clients', 'show', '--client', '3f0c9a52-8d1e-4c4b-9f5e-2a7b6c1d0e9f'], {
      ...env,
      PLATFORM_SUPABASE_URL: '',
      PLATFORM_SUPABASE_SERVICE_ROLE_KEY: '',
    });
    expect(await overridden.exit()).toBe(2);
    expect(overridden.err()).toContain('the sidekick CLI works on a platform project');

    await writeFile(join(dir, '.env'), 'LOG_LEVEL=info\nOPENAI_API_KEY sk-forgot-the-equals\n');
    const malformed = sidekick(['clients', 'show', '--client', '3f0c9a52-8d1e-4c4b-9f5e-2a7b6c1d0e9f'], env);
    expect(await malformed.exit()).toBe(2);
    expect(malformed.err()).toContain(`${join(dir, '.env')} is malformed: line 2 is not NAME=value`);
    expect(malformed.err()).not.toContain('sk-forgot-the-equals');
  }, 60_000);
});
