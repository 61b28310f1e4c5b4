import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliRun, json } from './support/cli.js';
import { REAL_SERVER_URL } from './support/db.js';
import { messageText, type OpenAIServer, startOpenAIServer } from './support/openai-server.js';

/**
 * The operator's whole path through the real `npm run sidekick` command, each step a process of its
 * own, in a second terminal beside a running `npm run stack` (a process of its own too, whose
 * printed KEY=value lines are the environment): a new champion client (its project asked of that
 * stack), its sidekick, a document, and the sidekick answering from that document in `chat`, with an
 * OpenAI-compatible loopback server as the model.
 */

const root = join(import.meta.dirname, '..');
let stackProcess: ChildProcess;
let stackEnv: Record<string, string>;
let openai: OpenAIServer;
let dir: string;

/** `npm run stack` (tsx src/stack/cli.ts), until it prints `stack ready`; its KEY=value lines. */
async function startStackProcess(): Promise<Record<string, string>> {
  // Any free ports: consecutive fixed ones can be taken by other tests running beside this one.
  stackProcess = spawn(process.execPath, ['--import', 'tsx', 'src/stack/cli.ts', '--port', '0'], {
    cwd: root,
    env: { ...process.env, STACK_POSTGRES_URL: REAL_SERVER_URL ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  stackProcess.stderr!.on('data', (d: Buffer) => (stderr += d));
  await new Promise<void>((resolve, reject) => {
    stackProcess.stdout!.on('data', (d: Buffer) => {
      stdout += d;
      if (stdout.includes('stack ready\n')) resolve();
    });
    stackProcess.once('exit', (code) => reject(new Error(`the stack exited with ${code}: ${stderr}`)));
  });
  return Object.fromEntries(
    stdout
      .split('\n')
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

beforeAll(async () => {
  [stackEnv, openai, dir] = await Promise.all([
    startStackProcess(),
    // The model answers with what the session put in front of it from the documents, if anything.
    startOpenAIServer({
      responder: (req) => {
        const all = req.messages.map(messageText).join('\n');
        const fact = /The Zenith lounge[^.]*\./.exec(all);
        return fact ? `From your documents: ${fact[0]}` : 'I do not know.';
      },
    }),
    mkdtemp(join(tmpdir(), 'sidekick-e2e-')),
  ]);
});
afterAll(async () => {
  if (stackProcess && stackProcess.exitCode === null) {
    // SIGTERM: the stack command stops its PostgREST processes on the way out.
    stackProcess.kill('SIGTERM');
    await once(stackProcess, 'exit');
  }
  await openai?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function run(args: string[], stdin = ''): Promise<CliRun> {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    ...stackEnv,
    OPENAI_API_KEY: 'sk-loopback',
    OPENAI_BASE_URL: openai.baseURL,
  };
  return new Promise((resolve, reject) => {
    // --silent: npm's own banner would go to stdout, ahead of the command's JSON.
    const child = spawn('npm', ['run', '--silent', 'sidekick', '--', ...args], {
      cwd: root,
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

describe('npm run sidekick, step by step in processes of its own', () => {
  it('client, sidekick, document, and an answer from the document in chat', async () => {
    expect(stackEnv.LOCAL_STACK_CONTROL_URL).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(stackEnv.LOCAL_STACK_CONTROL_TOKEN).toMatch(/^[\w-]{43}$/);
    const created = await run([
      'clients',
      'create',
      '--name',
      'Zenith Lounges',
      '--tier',
      'champion',
      '--json',
    ]);
    expect(created.code, created.stderr).toBe(0);
    const client = json<{ client: { id: string; tier: string; provisioning_status: string } }>(
      created,
    ).client;
    expect(client).toMatchObject({ tier: 'champion', provisioning_status: 'ready' });

    const agent = await run([
      'agents',
      'create',
      '--client',
      client.id,
      '--name',
      'Lounge Host',
      '--system-prompt',
      'Answer from the documents.',
      '--json',
    ]);
    expect(agent.code, agent.stderr).toBe(0);
    expect(json<{ sidekick: { slug: string } }>(agent).sidekick.slug).toBe('lounge-host');

    const doc = join(dir, 'lounges.md');
    await writeFile(
      doc,
      '# Lounges\n\nThe Zenith lounge in terminal 3 opens at 5:30 every morning and closes at midnight.\n',
    );
    const added = await run(['docs', 'add', '--client', client.id, '--agent', 'lounge-host', doc, '--json']);
    expect(added.code, added.stderr).toBe(0);
    expect(json<{ documents: Array<{ outcome: string }> }>(added).documents[0]!.outcome).toBe('added');

    const chat = await run(
      ['chat', '--client', client.id, '--agent', 'lounge-host'],
      'When does the lounge in terminal 3 open?\n/quit\n',
    );
    expect(chat.code, chat.stderr).toBe(0);
    expect(chat.stdout).toMatch(
      /Lounge Host: From your documents: The Zenith lounge in terminal 3 opens at 5:30 every morning/,
    );
    expect(chat.stderr).toMatch(/1 turn; transcript rows written \d+, dropped 0/);

    // Bad input in a process of its own: exit 2, the field named, nothing of the database's syntax.
    const bad = await run(['agents', 'list', '--client', 'zenith']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/option '--client <id>' argument 'zenith' is invalid\. expected a uuid/);
  });
});
