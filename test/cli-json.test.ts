/**
 * `--json` across every command: keys are snake_case (the database's and the job metadata's style),
 * recursively, except inside the free-form fields (a tool's JSON Schema, headers, voice settings,
 * ...), which come out exactly as they were written. Every command that has `--json` is run here,
 * on the local stack: a new command with `--json` fails the coverage check until it is added.
 */

import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentCommands } from '../src/commands/agents.js';
import { clientCommands } from '../src/commands/clients.js';
import { docsCommands } from '../src/commands/docs.js';
import { retentionCommands } from '../src/commands/retention.js';
import { secretsCommands } from '../src/commands/secrets.js';
import { CommandContext, FREE_FORM_FIELDS, snakeCaseKeys } from '../src/commands/shared.js';
import { usageCommand } from '../src/commands/usage.js';
import { userCommands } from '../src/commands/users.js';
import { webhookCommands } from '../src/commands/webhooks.js';
import { workCommands } from '../src/commands/work.js';
import { type StackControl, startStackControl } from '../src/stack/control.js';
import type { LocalStack } from '../src/stack/stack.js';
import { createSupabase } from '../src/tenancy/supabase.js';
import { WorkQueue } from '../src/work/queue.js';
import { type CliRun, json, sidekick, stackEnv } from './support/cli.js';
import { type ClientEndpoint, startClientEndpoint } from './support/client-endpoint.js';
import { startTestStack } from './support/stack.js';

let stack: LocalStack;
let control: StackControl;
let endpoint: ClientEndpoint;
let env: Record<string, string>;
let dir: string;

beforeAll(async () => {
  [stack, endpoint] = await Promise.all([startTestStack(), startClientEndpoint()]);
  control = await startStackControl({
    platformUrl: stack.platform.url,
    addDedicated: (name) => stack.addDedicated(name),
  });
  env = stackEnv(stack, {
    SECRETS_KEY: Buffer.alloc(32, 7).toString('base64'),
    OUTBOUND_ALLOWLIST: '127.0.0.1',
  });
  dir = await mkdtemp(join(tmpdir(), 'cli-json-'));
});
afterAll(async () => {
  await control?.close();
  await Promise.all([stack?.stop(), endpoint?.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Every command path that takes `--json`, e.g. 'agents tools add'. */
function jsonCommands(): string[] {
  const program = new Command('sidekick');
  const ctx = new CommandContext({ stdout: process.stdout, stderr: process.stderr, env: {} });
  for (const add of [
    clientCommands,
    agentCommands,
    docsCommands,
    secretsCommands,
    userCommands,
    webhookCommands,
    retentionCommands,
    workCommands,
    usageCommand,
  ])
    add(program, ctx);
  const out: string[] = [];
  const walk = (cmd: Command, path: string[]) => {
    for (const sub of cmd.commands) {
      const here = [...path, sub.name()];
      if (sub.options.some((o) => o.long === '--json')) out.push(here.join(' '));
      walk(sub, here);
    }
  };
  walk(program, []);
  return out.sort();
}

/** The keys with a capital letter, by their path, outside the free-form fields. */
function camelCaseKeys(value: unknown, path = '$'): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => camelCaseKeys(v, `${path}[${i}]`));
  if (!value || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => [
    ...(/[A-Z]/.test(k) ? [`${path}.${k}`] : []),
    ...(FREE_FORM_FIELDS.has(k) ? [] : camelCaseKeys(v, `${path}.${k}`)),
  ]);
}

describe('--json keys', () => {
  it('the converter renames our keys, recursively, and leaves free-form fields and non-identifiers alone', () => {
    expect(
      snakeCaseKeys({
        clientId: 'c',
        rowsPerSecond: 1,
        p50_ms: 2,
        document_chunks: 3,
        'X-Api-Key': 'k',
        pool: { writeFence: null },
        documents: [{ documentId: 'd', chunkPreview: [{ index: 0 }] }],
        tierFeatures: { someOverride: true },
        sidekick: { voice_settings: { speakingRate: 1.1 }, tools_config: { tools: [{ timeoutMs: 1 }] } },
        added: { parameters: { minLength: 1 }, headers: { 'X-Trace': 'a' } },
        when: new Date(0),
      }),
    ).toEqual({
      client_id: 'c',
      rows_per_second: 1,
      p50_ms: 2,
      document_chunks: 3,
      'X-Api-Key': 'k',
      pool: { write_fence: null },
      documents: [{ document_id: 'd', chunk_preview: [{ index: 0 }] }],
      tier_features: { someOverride: true },
      sidekick: { voice_settings: { speakingRate: 1.1 }, tools_config: { tools: [{ timeoutMs: 1 }] } },
      added: { parameters: { minLength: 1 }, headers: { 'X-Trace': 'a' } },
      when: new Date(0),
    });
  });

  it('every command with --json prints snake_case keys; free-form fields keep theirs', async () => {
    const commands = jsonCommands();
    const seen = new Map<string, string[]>();
    /** Runs one command, expects its exit code, and records the camelCase keys of its JSON. */
    const run = async (args: string[], opts: { code?: number; stdin?: string; env?: typeof env } = {}) => {
      const r: CliRun = await sidekick([...args, '--json'], opts.env ?? env, opts.stdin);
      expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(opts.code ?? 0);
      const out = json<Record<string, unknown>>(r);
      const [command] = commands
        .filter((c) => args.slice(0, c.split(' ').length).join(' ') === c)
        .sort((a, b) => b.length - a.length);
      const found = camelCaseKeys(out).map((k) => `${args.join(' ')}: ${k}`);
      seen.set(command ?? args[0]!, [...(seen.get(command ?? args[0]!) ?? []), ...found]);
      return out;
    };

    // Clients.
    const created = await run([
      'clients',
      'create',
      '--name',
      'Json Keys Co',
      '--features',
      '{"max_documents": 5}',
    ]);
    const id = (created.client as { id: string }).id;
    await run(['clients', 'list']);
    const shown = await run(['clients', 'show', '--client', id]);
    expect.soft(shown).toMatchObject({ hosting_type: 'shared', tier_features: { max_documents: 5 } });
    await run(['clients', 'update', '--client', id, '--features', '{"max_documents": 6}']);
    await run(['clients', 'verify', '--client', id]);
    await run(['clients', 'settings', 'show', '--client', id]);
    await run(['clients', 'settings', 'set', '--client', id, '--memory', 'on']);

    // Sidekicks, with voice settings in the provider's own (camelCase) keys.
    await run([
      'agents',
      'create',
      '--client',
      id,
      '--name',
      'Json Guide',
      '--voice-settings',
      '{"voice":"verse","speakingRate":1.1}',
    ]);
    await run(['agents', 'update', '--client', id, '--agent', 'json-guide', '--greeting', 'Hello']);
    const agent = await run(['agents', 'show', '--client', id, '--agent', 'json-guide']);
    expect.soft(agent.sidekick).toMatchObject({ voice_settings: { voice: 'verse', speakingRate: 1.1 } });
    await run(['agents', 'list', '--client', id]);

    // Secrets and tools: a JSON Schema and a header keep their keys.
    await run(['secrets', 'set', '--client', id, '--name', 'JSON_API_KEY'], { stdin: 'sk_json_1\n' });
    await run(['secrets', 'list', '--client', id]);
    await run(['secrets', 'signing-secret', '--client', id]);
    await run(['secrets', 'rekey']);
    const schema = {
      type: 'object',
      properties: { order_number: { type: 'string', minLength: 3 } },
      additionalProperties: false,
    };
    await run([
      'agents',
      'tools',
      'add',
      '--client',
      id,
      '--agent',
      'json-guide',
      '--name',
      'order_status',
      '--description',
      'an order',
      '--url',
      `${endpoint.url}/orders`,
      '--parameters',
      JSON.stringify(schema),
      '--header',
      'X-Trace-Id: json',
      '--secret',
      'JSON_API_KEY',
      '--timeout-ms',
      '3000',
    ]);
    const tools = await run(['agents', 'tools', 'list', '--client', id, '--agent', 'json-guide']);
    const entry = (tools.tools_config as { tools: Array<Record<string, unknown>> }).tools[0]!;
    expect.soft(entry.parameters).toEqual(schema);
    expect.soft(entry.endpoint).toMatchObject({ headers: { 'X-Trace-Id': 'json' } });
    expect.soft(entry.timeout_ms).toBe(3000);
    endpoint.handle(() => ({ json: { status: 'shipped' } }));
    await run(['agents', 'tools', 'test', '--client', id, '--agent', 'json-guide', '--name', 'order_status']);
    await run([
      'agents',
      'tools',
      'remove',
      '--client',
      id,
      '--agent',
      'json-guide',
      '--name',
      'order_status',
    ]);
    await run(['secrets', 'delete', '--client', id, '--name', 'JSON_API_KEY']);

    // Documents.
    const doc = join(dir, 'hours.md');
    await writeFile(doc, '# Hours\n\nThe shop opens at nine.');
    const added = await run(['docs', 'add', '--client', id, '--agent', 'json-guide', doc]);
    expect.soft((added.documents as Array<Record<string, unknown>>)[0]).toHaveProperty('document_id');
    await run(['docs', 'list', '--client', id]);
    await run(['docs', 'show', '--client', id, 'hours.md', '--chunks', '1']);
    await run(['docs', 'reembed', '--client', id, '--all']);
    await run(['docs', 'remove', '--client', id, 'hours.md']);

    // End users, their work, retention, usage.
    const user = randomUUID();
    const queue = new WorkQueue(createSupabase(stack.platform.url, stack.platform.serviceRoleKey), 'test');
    const hook = await queue.enqueue({
      kind: 'webhook',
      clientId: id,
      payload: { client_id: id, user_id: user, conversation_id: randomUUID() },
    });
    // What a handler stored is the handler's: its keys stay as they are.
    await stack.platform.sql.query(
      `UPDATE work_items SET status = 'done', result = '{"status": 200, "durationMs": 12}' WHERE id = $1`,
      [hook.id],
    );
    const hooks = await run(['webhooks', 'list', '--client', id]);
    expect.soft((hooks.deliveries as Array<Record<string, unknown>>)[0]).toMatchObject({
      max_attempts: expect.any(Number),
      result: { status: 200, durationMs: 12 },
    });
    await run(['webhooks', 'redeliver', '--client', id, '--id', hook.id]);
    await run(['work', 'list', '--client', id]);
    await run(['users', 'show', '--client', id, '--user', user]);
    // Without --yes: what would go (the user's work items), exit 2; then with it.
    await run(['users', 'forget', '--client', id, '--user', user], { code: 2 });
    await run(['users', 'forget', '--client', id, '--user', user, '--yes']);
    await run(['retention', 'run', '--client', id, '--dry-run']);
    await run(['usage', '--client', id]);
    await run(['usage', '--top']);

    // Deleting: a sidekick, a moved client's old rows, clients.
    await run(['agents', 'delete', '--client', id, '--agent', 'json-guide'], { code: 2 });
    await run(['agents', 'delete', '--client', id, '--agent', 'json-guide', '--yes']);
    const moving = ((await run(['clients', 'create', '--name', 'Json Move Co'])).client as { id: string }).id;
    await run(['agents', 'create', '--client', moving, '--name', 'Mover']);
    await run(['clients', 'upgrade', '--client', moving, '--keep-source', '--fence-settle-ms', '0'], {
      env: { ...env, LOCAL_STACK_CONTROL_URL: control.url, LOCAL_STACK_CONTROL_TOKEN: control.token },
    });
    await run(['clients', 'cleanup', '--client', moving]);
    await run(['clients', 'delete', '--client', id], { code: 2 });
    await run(['clients', 'delete', '--client', id, '--yes']);

    expect.soft([...seen.keys()].sort()).toEqual(commands);
    expect([...seen.values()].flat()).toEqual([]);
  }, 240_000);
});
