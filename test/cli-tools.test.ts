/**
 * `sidekick agents tools add|list|remove|test` against the local stack and a client endpoint on
 * loopback: what is refused where it is written (the fields, the tier's limits, the guard) and
 * what `test` shows.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SIGNATURE_HEADER } from '../src/outbound/index.js';
import type { LocalStack } from '../src/stack/stack.js';
import { json, sidekick, stackEnv } from './support/cli.js';
import { type ClientEndpoint, makeVerifier, startClientEndpoint } from './support/client-endpoint.js';
import { startMcpServer } from './support/mcp-server.js';
import { startTestStack } from './support/stack.js';

let stack: LocalStack;
let endpoint: ClientEndpoint;
let env: Record<string, string>;
const SECRETS_KEY = Buffer.alloc(32, 5).toString('base64');

beforeAll(async () => {
  [stack, endpoint] = await Promise.all([startTestStack(), startClientEndpoint()]);
  env = stackEnv(stack, { SECRETS_KEY, OUTBOUND_ALLOWLIST: '127.0.0.1' });
});
afterAll(async () => {
  await Promise.all([stack?.stop(), endpoint?.close()]);
});

const A = () => stack.demo!.adventurers[0]!;
const C = () => stack.demo!.champion;
const add = (client: { clientId: string; agentSlug: string }, args: string[], e = env) =>
  sidekick(['agents', 'tools', 'add', '--client', client.clientId, '--agent', client.agentSlug, ...args], e);
const tool = (name: string, path = `/${name}`) => [
  '--name',
  name,
  '--description',
  `the ${name} tool`,
  '--url',
  `${endpoint.url}${path}`,
];

describe('agents tools add: refused where it is written', () => {
  it("an adventurer's third tool is refused with exit 3, naming the limit; the two before are kept", async () => {
    const secret = await sidekick(
      ['secrets', 'set', '--client', A().clientId, '--name', 'ACME_API_KEY'],
      env,
      'sk_live_acme_cli_1\n',
    );
    expect(secret.code, secret.stderr).toBe(0);
    const first = await add(A(), [
      ...tool('order_status'),
      '--parameters',
      '{"type":"object","properties":{"order_number":{"type":"string"}},"required":["order_number"]}',
      '--secret',
      'ACME_API_KEY',
      '--secret-prefix',
      'Bearer ',
      '--header',
      'X-Shop: acme',
      '--response-field',
      'status',
    ]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('added tool order_status to sidekick bike-guide');
    expect(first.stdout).toContain('note: a signing secret was made for client');
    expect((await add(A(), tool('opening_hours'))).code).toBe(0);
    const third = await add(A(), tool('book_service'));
    expect(third.code).toBe(3);
    expect(third.stderr).toContain(
      'refused by the limit max_tools (adventurer tier): sidekick "bike-guide" may have at most 2 tool(s) and has 2',
    );
    const listed = await sidekick(
      ['agents', 'tools', 'list', '--client', A().clientId, '--agent', 'bike-guide', '--json'],
      env,
    );
    const l = json<{
      sessions: { tools: string[]; reason: string };
      tools_config: { tools: Array<{ name: string }> };
    }>(listed);
    expect(l.tools_config.tools.map((t) => t.name)).toEqual(['order_status', 'opening_hours']);
    expect(l.sessions.tools).toEqual(['order_status', 'opening_hours']);
    const [row] = await stack.pool.sql.query<{ tools_config: { tools: Array<Record<string, unknown>> } }>(
      'SELECT tools_config FROM agents WHERE client_id = $1',
      [A().clientId],
    );
    expect(row!.tools_config.tools[0]).toMatchObject({
      name: 'order_status',
      secret: { name: 'ACME_API_KEY', header: 'authorization', prefix: 'Bearer ' },
      endpoint: { method: 'POST', headers: { 'X-Shop': 'acme' } },
      response: { field: 'status', max_chars: 2000 },
    });
    expect(JSON.stringify(row)).not.toContain('sk_live');
  });

  it.each([
    [
      'a URL that is not http(s)',
      ['--name', 'x1', '--description', 'd', '--url', 'ftp://files.example.com/'],
      'endpoint.url: must be an http(s) URL',
    ],
    [
      'a credential in a fixed header',
      [
        ...['--name', 'x2', '--description', 'd', '--url', 'https://api.example.com/'],
        '--header',
        'Authorization: Bearer abc',
      ],
      'endpoint.headers.Authorization: looks like a credential',
    ],
    [
      'a secret that is not set',
      [
        ...['--name', 'x3', '--description', 'd', '--url', 'https://api.example.com/'],
        '--secret',
        'MISSING_KEY',
      ],
      'has no secret MISSING_KEY: set it first (`sidekick secrets set',
    ],
    [
      'a loopback address without the allowlist',
      ['--name', 'x4', '--description', 'd', '--url', 'http://127.0.0.1:9/'],
      'endpoint.url: 127.0.0.1 is a loopback address: refused',
    ],
    [
      'the metadata service',
      ['--name', 'x5', '--description', 'd', '--url', 'http://169.254.169.254/latest/'],
      'is a metadata address: refused',
    ],
    [
      'a bad name',
      ['--name', 'has space', '--description', 'd', '--url', 'https://api.example.com/'],
      'name: must be letters, digits and "_"',
    ],
    [
      'parameters that are not a JSON Schema',
      [
        ...['--name', 'x6', '--description', 'd', '--url', 'https://api.example.com/'],
        '--parameters',
        '{"type":"object","properties":{"n":{"type":"strnig"}}}',
      ],
      'parameters: is not a valid JSON Schema: schema is invalid: data/properties/n/type',
    ],
    [
      'the built-in name',
      ['--name', 'end_call', '--description', 'd', '--url', 'https://api.example.com/'],
      'name: is the name of a built-in tool',
    ],
  ])('%s: exit 2, naming the field', async (_what, args, message) => {
    const run = await add(C(), args, { ...env, OUTBOUND_ALLOWLIST: '' });
    expect(run.code, run.stdout).toBe(2);
    expect(run.stderr).toContain(message);
  });

  it('an MCP server for a champion is refused by the tier (exit 3, naming custom_integrations)', async () => {
    const mcp = await startMcpServer();
    try {
      const run = await add(C(), ['--mcp', '--name', 'crm', '--url', mcp.url]);
      expect(run.code).toBe(3);
      expect(run.stderr).toContain(
        'MCP servers need custom_integrations, which is not allowed by the champion tier',
      );
      expect(mcp.requests).toEqual([]);
    } finally {
      await mcp.close();
    }
  });
});

describe('agents tools test, list, remove', () => {
  it('test calls the endpoint as a session would: signed, with the secret; it shows status, latency and what the model sees', async () => {
    const signing = (
      await sidekick(['secrets', 'signing-secret', '--client', A().clientId], env)
    ).stdout.trim();
    const verify = makeVerifier(signing);
    endpoint.handle((req) =>
      verify(req.headers[SIGNATURE_HEADER], req.body) === true &&
      req.headers.authorization === 'Bearer sk_live_acme_cli_1'
        ? { json: { status: 'ready for pick-up', internal: 'not for the model' } }
        : { status: 401, json: { error: 'bad signature' } },
    );
    const run = await sidekick(
      [
        'agents',
        'tools',
        'test',
        '--client',
        A().clientId,
        '--agent',
        'bike-guide',
        '--name',
        'order_status',
        '--args',
        '{"order_number":"A-7"}',
      ],
      env,
    );
    expect(run.code, run.stderr + run.stdout).toBe(0);
    expect(run.stdout).toMatch(/^order_status: ok \(HTTP 200\) in \d+ ms$/m);
    expect(run.stdout).toContain('the model would see: ready for pick-up\n');
    expect(run.stdout).toContain('in sessions: yes');
    expect(run.stdout + run.stderr).not.toContain('sk_live');
    expect(JSON.parse(endpoint.requests.at(-1)!.body)).toMatchObject({
      tool: 'order_status',
      arguments: { order_number: 'A-7' },
    });

    endpoint.handle(() => ({ status: 503, text: 'down' }));
    const failed = await sidekick(
      [
        'agents',
        'tools',
        'test',
        '--client',
        A().clientId,
        '--agent',
        'bike-guide',
        '--name',
        'order_status',
        '--args',
        '{"order_number":"A-8"}',
        '--json',
      ],
      env,
    );
    expect(failed.code).toBe(1);
    expect(json<{ status: string; model_sees: string }>(failed)).toMatchObject({
      status: 'error',
      model_sees: 'The order_status service failed (HTTP 503).',
    });

    // Arguments that do not fit the tool's parameters never reach the endpoint.
    const sent = endpoint.requests.length;
    const bad = await sidekick(
      [
        'agents',
        'tools',
        'test',
        '--client',
        A().clientId,
        '--agent',
        'bike-guide',
        '--name',
        'order_status',
      ],
      env,
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(
      "--args: The order_status tool's arguments do not fit its parameters (order_number is missing); nothing was sent.",
    );
    expect(endpoint.requests.length).toBe(sent);
  });

  it('deleting a secret names the tools it leaves out; list shows them off with why; setting it again brings them back', async () => {
    const B = stack.demo!.adventurers[1]!;
    const set = () =>
      sidekick(['secrets', 'set', '--client', B.clientId, '--name', 'GARDEN_KEY'], env, 'sk_live_garden_1\n');
    expect((await set()).code).toBe(0);
    expect((await add(B, [...tool('plant_lookup'), '--secret', 'GARDEN_KEY'])).code).toBe(0);
    const list = () =>
      sidekick(['agents', 'tools', 'list', '--client', B.clientId, '--agent', B.agentSlug], env);
    expect((await list()).stdout).toMatch(/^ {2}on {3}plant_lookup /m);

    const deleted = await sidekick(
      ['secrets', 'delete', '--client', B.clientId, '--name', 'GARDEN_KEY'],
      env,
    );
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stderr).toContain(
      `note: tools naming it are left out of sessions until it is set again (\`sidekick secrets set --client ${B.clientId} --name GARDEN_KEY\`): ${B.agentSlug}/plant_lookup`,
    );
    const off = (await list()).stdout;
    expect(off).toMatch(/^ {2}off {2}plant_lookup /m);
    expect(off).toContain(
      `left out: plant_lookup: its secret GARDEN_KEY is not set: \`sidekick secrets set --client ${B.clientId} --name GARDEN_KEY\``,
    );
    expect(off).toContain('0 of 1 configured tools');

    expect((await set()).code).toBe(0);
    expect((await list()).stdout).toMatch(/^ {2}on {3}plant_lookup /m);
  });

  it('remove takes a tool out; an unknown name is exit 2', async () => {
    const removed = await sidekick(
      [
        'agents',
        'tools',
        'remove',
        '--client',
        A().clientId,
        '--agent',
        'bike-guide',
        '--name',
        'opening_hours',
      ],
      env,
    );
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stdout).toContain('removed opening_hours from sidekick bike-guide');
    expect(removed.stdout).toMatch(/on {3}order_status +POST 127\.0\.0\.1:\d+ {2}secret ACME_API_KEY/);
    const again = await sidekick(
      [
        'agents',
        'tools',
        'remove',
        '--client',
        A().clientId,
        '--agent',
        'bike-guide',
        '--name',
        'opening_hours',
      ],
      env,
    );
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('has no tool named "opening_hours"');
  });

  it('`agents show --json` with tools edits back into `agents update --file`; a changed tools_config there is refused', async () => {
    const shown = await sidekick(
      ['agents', 'show', '--client', A().clientId, '--agent', 'bike-guide', '--json'],
      env,
    );
    const doc = json<{ sidekick: Record<string, unknown> }>(shown);
    expect((doc.sidekick.tools_config as { tools: unknown[] }).tools).toHaveLength(1);
    const dir = await mkdtemp(join(tmpdir(), 'sidekick-tools-'));
    try {
      const file = join(dir, 'bike.json');
      await writeFile(
        file,
        JSON.stringify({ ...doc, sidekick: { ...doc.sidekick, greeting: 'Hello from the file' } }),
      );
      const updated = await sidekick(
        ['agents', 'update', '--client', A().clientId, '--agent', 'bike-guide', '--file', file],
        env,
      );
      expect(updated.code, updated.stderr).toBe(0);
      await writeFile(file, JSON.stringify({ sidekick: { ...doc.sidekick, tools_config: { tools: [] } } }));
      const changed = await sidekick(
        ['agents', 'update', '--client', A().clientId, '--agent', 'bike-guide', '--file', file],
        env,
      );
      expect(changed.code).toBe(2);
      expect(changed.stderr).toContain('tools_config: a file may carry it only unchanged');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a paragon adds an MCP server; test connects through the guard and lists its tools', async () => {
    const mcp = await startMcpServer();
    await stack.platform.sql.query(`UPDATE clients SET tier = 'paragon' WHERE id = $1`, [C().clientId]);
    try {
      const added = await add(C(), ['--mcp', '--name', 'crm', '--url', mcp.url]);
      expect(added.code, added.stderr).toBe(0);
      const run = await sidekick(
        ['agents', 'tools', 'test', '--client', C().clientId, '--agent', C().agentSlug, '--name', 'crm'],
        env,
      );
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toContain('the model would see: 1 tool(s): crm_find_customer');
    } finally {
      await stack.platform.sql.query(`UPDATE clients SET tier = 'champion' WHERE id = $1`, [C().clientId]);
      await mcp.close();
    }
  });
});
