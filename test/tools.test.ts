/**
 * Sidekick tools in a session, end to end without LiveKit: a text AgentSession with the real
 * OpenAI plugin talking to the loopback OpenAI stand-in, which issues tool calls in OpenAI's
 * format; the tools call clients' endpoints (loopback HTTP servers that verify the signature as
 * the README says) and an MCP server built with the official SDK, through the outbound guard.
 */

import { Readable } from 'node:stream';
import { initializeLogger, voice } from '@livekit/agents';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runChat } from '../src/agent/chat.js';
import { routeLiveKitLogs } from '../src/agent/livekit-log.js';
import { parseJobMetadata } from '../src/agent/metadata.js';
import { createLLM } from '../src/agent/models.js';
import { createRuntime, type WorkerRuntime } from '../src/agent/runtime.js';
import { type PreparedSession, prepareSession } from '../src/agent/session.js';
import { type Config, loadConfig } from '../src/config.js';
import { OpenAIEmbedder } from '../src/context/embeddings.js';
import { PII_HIDDEN } from '../src/log.js';
import { Allowlist, OutboundClient, SIGNATURE_HEADER } from '../src/outbound/index.js';
import { SecretsKeyring } from '../src/secrets/keyring.js';
import { ClientSecretStore } from '../src/secrets/store.js';
import type { LocalStack } from '../src/stack/stack.js';
import { type ClientEndpoint, makeVerifier, startClientEndpoint } from './support/client-endpoint.js';
import { captureLogs } from './support/logs.js';
import { installLoopbackOnlyTripwire } from './support/loopback-only.js';
import { startMcpServer } from './support/mcp-server.js';
import { messageText, type OpenAIServer, startOpenAIServer } from './support/openai-server.js';
import { platformAdmin, startTestStack } from './support/stack.js';

const SECRETS_KEY = Buffer.alloc(32, 3).toString('base64');
const ACME_KEY = 'sk_live_acme_0123456789';
const GARDEN_KEY = 'sk_live_garden_9876543210';

let stack: LocalStack;
let openai: OpenAIServer;
let endpoint: ClientEndpoint;
let config: Config;
let runtime: WorkerRuntime;
let secrets: ClientSecretStore;
let tripwire: ReturnType<typeof installLoopbackOnlyTripwire>;

beforeAll(async () => {
  initializeLogger({ pretty: false, level: 'silent' });
  tripwire = installLoopbackOnlyTripwire();
  [openai, endpoint] = await Promise.all([startOpenAIServer(), startClientEndpoint()]);
  stack = await startTestStack({
    embedder: new OpenAIEmbedder({ apiKey: 'sk-loopback', baseURL: openai.baseURL }),
  });
  config = loadConfig({
    PLATFORM_SUPABASE_URL: stack.platform.url,
    PLATFORM_SUPABASE_SERVICE_ROLE_KEY: stack.platform.serviceRoleKey,
    OPENAI_API_KEY: 'sk-loopback',
    OPENAI_BASE_URL: openai.baseURL,
    CONTEXT_BUDGET_MS: '2000',
    CLIENT_CACHE_TTL_MS: '1',
    SECRETS_KEY,
    OUTBOUND_ALLOWLIST: '127.0.0.1',
    LOG_LEVEL: 'silent',
  });
  runtime = createRuntime(config, captureLogs().log);
  secrets = new ClientSecretStore(
    platformAdmin(stack),
    SecretsKeyring.from({ key: SECRETS_KEY, oldKeys: [] })!,
  );
  await secrets.set(A().clientId, 'ACME_API_KEY', ACME_KEY);
  await secrets.set(B().clientId, 'GARDEN_API_KEY', GARDEN_KEY);
});
afterAll(async () => {
  await runtime?.outbound.close();
  await Promise.all([stack?.stop(), openai?.close(), endpoint?.close()]);
  expect(tripwire.attempts).toEqual([]);
  tripwire?.uninstall();
});
beforeEach(() => {
  openai.reset();
  openai.setResponder(toolCallingModel);
  endpoint.handle(() => ({ json: { ok: true } }));
});

const A = () => stack.demo!.adventurers[0]!;
const B = () => stack.demo!.adventurers[1]!;
const C = () => stack.demo!.champion;

/**
 * The stand-in model: "call NAME with {json}" makes it call that tool; a tool result is answered
 * with "Result: <what the tool gave>"; anything else is echoed.
 */
function toolCallingModel(req: { messages: Array<{ role: string; content?: unknown }> }) {
  const last = req.messages.at(-1)!;
  const text = messageText(last as never);
  if (last.role === 'tool') return `Result: ${text}`;
  const call = /call (\w+)(?: with (\{.*\}))?/.exec(text);
  if (call) return { toolCalls: [{ name: call[1]!, arguments: call[2] ? JSON.parse(call[2]) : {} }] };
  return `You said: ${text}`;
}

async function setTools(client: { clientId: string; agentSlug: string }, toolsConfig: unknown) {
  const where = client.clientId === C().clientId ? stack.dedicated : stack.pool;
  await where.sql.query('UPDATE agents SET tools_config = $1 WHERE slug = $2', [
    JSON.stringify(toolsConfig),
    client.agentSlug,
  ]);
}

const httpTool = (name: string, path: string, more: Record<string, unknown> = {}) => ({
  name,
  description: `the ${name} tool`,
  parameters: {
    type: 'object',
    properties: { order_number: { type: 'string', description: 'e.g. A-1001' } },
  },
  endpoint: { url: `${endpoint.url}${path}` },
  timeout_ms: 2000,
  ...more,
});

function metadata(client: { clientId: string; agentSlug: string }) {
  return parseJobMetadata(
    JSON.stringify({ client_id: client.clientId, agent_slug: client.agentSlug, user_id: stack.demo!.userId }),
  );
}

/** A session: every line the user says, what reached the user, the session (closed afterwards). */
async function converse(client: { clientId: string; agentSlug: string }, lines: string[], rt = runtime) {
  const logs = captureLogs('info');
  const prepared = await prepareSession(rt, metadata(client), logs.log);
  const session = new voice.AgentSession({ llm: createLLM(rt.config) });
  prepared.attach(session);
  const said: string[] = [];
  let closed = false;
  session.on(voice.AgentSessionEventTypes.ConversationItemAdded, (ev) => {
    if (ev.item.type === 'message' && ev.item.role === 'assistant' && ev.item.textContent)
      said.push(ev.item.textContent);
  });
  session.on(voice.AgentSessionEventTypes.Close, () => {
    closed = true;
  });
  await session.start({ agent: prepared.agent });
  for (const line of lines) await session.run({ userInput: line }).wait();
  await session.close();
  await prepared.close();
  return {
    prepared,
    said,
    closed,
    logs,
    advertised:
      openai
        .chatRequests()
        .at(-1)
        ?.body.tools?.map((t) => t.function.name) ?? [],
  };
}

async function toolTurns(prepared: PreparedSession, where: LocalStack['pool'] = stack.pool) {
  return where.sql.query<{ content: string; metadata: Record<string, unknown> }>(
    `SELECT content, metadata FROM conversation_transcripts WHERE conversation_id = $1 AND role = 'tool' ORDER BY created_at`,
    [prepared.conversationId],
  );
}

/** What the model was given for its tool calls, in order. */
const toolResults = () =>
  openai
    .chatRequests()
    .map((r) => r.body.messages.at(-1)!)
    .filter((m) => m.role === 'tool')
    .map((m) => messageText(m));

describe('an HTTP tool, the whole way round', () => {
  it('the model calls it; the endpoint verifies the signature and answers; the answer reaches the model and the user; the transcript has the call without the secret', async () => {
    const signing = (await secrets.signingSecret(A().clientId)).value;
    const verify = makeVerifier(signing);
    const verdicts: Array<true | string> = [];
    endpoint.handle((req) => {
      const verdict = verify(req.headers[SIGNATURE_HEADER], req.body);
      verdicts.push(verdict);
      if (verdict !== true || req.headers.authorization !== `Bearer ${ACME_KEY}`)
        return { status: 401, json: { error: verdict } };
      const { arguments: args } = JSON.parse(req.body) as { arguments: { order_number: string } };
      return { json: { order: args.order_number, status: 'shipped on Monday', internal_margin: '42%' } };
    });
    await setTools(A(), {
      tools: [
        httpTool('order_status', '/orders/status', {
          secret: { name: 'ACME_API_KEY', header: 'Authorization', prefix: 'Bearer ' },
          endpoint: { url: `${endpoint.url}/orders/status`, headers: { 'X-Shop': 'acme' } },
          response: { field: 'status', max_chars: 200 },
        }),
      ],
    });
    const from = endpoint.requests.length;
    // LiveKit's own lines, as the worker writes them at info.
    const livekit = captureLogs('info');
    const unroute = routeLiveKitLogs(livekit.log);
    const { prepared, said, logs, advertised } = await converse(A(), [
      'call order_status with {"order_number":"A-1001"}',
    ]).finally(unroute);
    // agents-js logs the call's arguments (as lk.pii.arguments): not at info.
    expect(livekit.records().find((r) => r.msg === 'Executing LLM tool call')).toMatchObject({
      function: 'order_status',
      'lk.pii.arguments': PII_HIDDEN,
    });
    expect(livekit.output()).not.toContain('A-1001');

    const calls = endpoint.requests.slice(from);
    expect(calls).toHaveLength(1);
    expect(verdicts.at(-1)).toBe(true);
    expect(calls[0]!.headers['x-shop']).toBe('acme');
    expect(JSON.parse(calls[0]!.body)).toMatchObject({
      tool: 'order_status',
      conversation_id: prepared.conversationId,
      arguments: { order_number: 'A-1001' },
    });
    // The model saw the configured field only; the user heard the answer.
    expect(toolResults()).toEqual([expect.stringContaining('shipped on Monday')]);
    expect(toolResults()[0]).not.toContain('42%');
    expect(said).toContain('Result: "shipped on Monday"');
    expect(advertised.sort()).toEqual(['end_call', 'order_status']);
    const offered = openai.chatRequests()[0]!.body.tools!.find((t) => t.function.name === 'order_status')!;
    expect(offered.function.parameters).toMatchObject({ properties: { order_number: { type: 'string' } } });

    const [turn] = await toolTurns(prepared);
    expect(turn!.content).toMatch(/^order_status ok \(HTTP 200\) in \d+ ms: shipped on Monday$/);
    expect(turn!.metadata).toMatchObject({
      tool: 'order_status',
      status: 'ok',
      http_status: 200,
      arguments: { order_number: 'A-1001' },
      truncated: false,
    });
    expect(typeof turn!.metadata.latency_ms).toBe('number');
    const everything =
      JSON.stringify(await stack.pool.sql.query('SELECT * FROM conversation_transcripts')) + logs.output();
    for (const secret of [ACME_KEY, signing]) expect(everything).not.toContain(secret);
    expect(JSON.stringify(openai.requests)).not.toContain(ACME_KEY);
  });

  it('a slow call: the filler is said before the answer', async () => {
    endpoint.handle(async (): Promise<{ json: unknown }> => {
      await new Promise((r) => setTimeout(r, 700));
      return { json: { status: 'found it' } };
    });
    await setTools(A(), {
      tools: [
        httpTool('slow_lookup', '/slow', {
          filler: { text: 'One moment, I am looking that up.', after_ms: 100 },
        }),
      ],
    });
    const { said } = await converse(A(), ['call slow_lookup']);
    const filler = said.indexOf('One moment, I am looking that up.');
    expect(filler).toBeGreaterThanOrEqual(0);
    expect(said.findIndex((s) => s.startsWith('Result:'))).toBeGreaterThan(filler);
  });
});

describe('a failing tool gives the model a short error and the session goes on', () => {
  it('timeout, 5xx, a refused address, a host name resolving to a private address, an oversized answer cut', async () => {
    endpoint.handle(async (req): Promise<{ status?: number; text?: string; json?: unknown }> => {
      if (req.path === '/slow') await new Promise((r) => setTimeout(r, 1500));
      if (req.path === '/broken') return { status: 503, text: 'upstream down: stack trace with db password' };
      if (req.path === '/big') return { text: 'x'.repeat(1_000_000) };
      return { json: { ok: true } };
    });
    const dns = async (host: string) => [
      { address: host === 'orders.acme.test' ? '10.20.30.40' : '127.0.0.1', family: 4 },
    ];
    const rt = createRuntime(config, captureLogs().log, {
      outbound: new OutboundClient({ allowlist: Allowlist.parse('127.0.0.1'), resolve: dns }),
    });
    await setTools(C(), {
      tools: [
        httpTool('slow_tool', '/slow', { timeout_ms: 300 }),
        httpTool('broken_tool', '/broken'),
        httpTool('metadata_tool', '', { endpoint: { url: 'http://169.254.169.254/latest/meta-data/' } }),
        httpTool('private_tool', '', { endpoint: { url: 'http://10.0.0.8/orders' } }),
        httpTool('named_tool', '', { endpoint: { url: 'http://orders.acme.test/orders' } }),
        httpTool('loopback_v6', '', { endpoint: { url: 'http://[::1]:9/orders' } }),
        httpTool('big_tool', '/big', { response: { max_chars: 50 } }),
      ],
    });
    const lines = [
      'slow_tool',
      'broken_tool',
      'metadata_tool',
      'private_tool',
      'named_tool',
      'loopback_v6',
      'big_tool',
    ].map((t) => `call ${t}`);
    const { prepared, said } = await converse(C(), [...lines, 'are you still there?'], rt);
    await rt.outbound.close();
    const results = toolResults();
    expect(results.slice(0, 6)).toEqual([
      'The slow_tool service did not answer within 0.3 seconds.',
      'The broken_tool service failed (HTTP 503).',
      'The metadata_tool service cannot be reached from here (its address is not allowed).',
      'The private_tool service cannot be reached from here (its address is not allowed).',
      'The named_tool service cannot be reached from here (its address is not allowed).',
      'The loopback_v6 service cannot be reached from here (its address is not allowed).',
    ]);
    expect(results[6]).toBe(JSON.stringify(`${'x'.repeat(50)}…`));
    expect(said.at(-1)).toBe('You said: are you still there?');
    const turns = await toolTurns(prepared, stack.dedicated);
    expect(turns.map((t) => [t.metadata.tool, t.metadata.status])).toEqual([
      ['slow_tool', 'timeout'],
      ['broken_tool', 'error'],
      ['metadata_tool', 'refused'],
      ['private_tool', 'refused'],
      ['named_tool', 'refused'],
      ['loopback_v6', 'refused'],
      ['big_tool', 'ok'],
    ]);
    expect(turns[6]!.metadata.truncated).toBe(true);
    expect(JSON.stringify(turns)).not.toContain('db password');
  });

  it("arguments that do not fit the tool's parameters reach no endpoint; the model is told which field, and its retry goes through", async () => {
    await setTools(A(), {
      tools: [
        httpTool('order_status', '/orders', {
          parameters: {
            type: 'object',
            properties: { order_number: { type: 'string', pattern: '^A-\\d+$' }, rush: { type: 'boolean' } },
            required: ['order_number'],
            additionalProperties: false,
          },
        }),
      ],
    });
    const before = endpoint.requests.length;
    const { prepared } = await converse(A(), [
      'call order_status with {"rush":"yes","note":"hi"}',
      'call order_status with {"order_number":"A-12"}',
    ]);
    expect(toolResults()[0]).toBe(
      "The order_status tool's arguments do not fit its parameters (order_number is missing; note is not a parameter of this tool; rush must be boolean); nothing was sent.",
    );
    expect(endpoint.requests.slice(before).map((r) => JSON.parse(r.body).arguments)).toEqual([
      { order_number: 'A-12' },
    ]);
    const turns = await toolTurns(prepared);
    expect(turns.map((t) => t.metadata.status)).toEqual(['invalid_arguments', 'ok']);
  });
});

describe('the tier gate and bad config at session start', () => {
  it("an adventurer's session gets its first 2 tools; a bad entry is left out and logged; the session starts", async () => {
    await setTools(A(), {
      tools: [
        httpTool('first_tool', '/1'),
        { name: 'broken', description: 'x', endpoint: { url: 'ftp://x' } },
        httpTool('second_tool', '/2'),
        httpTool('third_tool', '/3'),
      ],
    });
    const { prepared, advertised, logs } = await converse(A(), ['hello']);
    expect(advertised.sort()).toEqual(['end_call', 'first_tool', 'second_tool']);
    expect(prepared.plan.tools.reason).toBe('2 of 4 configured tools (max_tools 2 from the adventurer tier)');
    const leftOut = logs.records().filter((r) => r.msg === 'tool left out of the session');
    expect(leftOut.map((r) => [r.entry, r.tool])).toEqual([
      ['tools[1]', 'broken'],
      ['tools', 'third_tool'],
    ]);
    expect(String(leftOut[0]!.reason)).toContain('endpoint.url: must be an http(s) URL');
    expect(String(leftOut[1]!.reason)).toBe(
      'beyond max_tools (2, from the adventurer tier): only the first 2 are used',
    );
  });

  it('a tools_config that is not an object gives a session with end_call only', async () => {
    await setTools(A(), ['not', 'an', 'object']);
    const { advertised, said } = await converse(A(), ['hello']);
    expect(advertised).toEqual(['end_call']);
    expect(said.at(-1)).toBe('You said: hello');
  });
});

describe("isolation: one client's session never reads or uses another's secrets or tools", () => {
  it("A's tool naming B's secret is left out; A's model calling B's tool reaches nothing; A's calls carry A's signature", async () => {
    await setTools(B(), {
      tools: [
        httpTool('garden_lookup', '/garden', { secret: { name: 'GARDEN_API_KEY', prefix: 'Bearer ' } }),
      ],
    });
    await setTools(A(), {
      tools: [
        httpTool('steal_garden', '/steal', { secret: { name: 'GARDEN_API_KEY', prefix: 'Bearer ' } }),
        httpTool('own_tool', '/own'),
      ],
    });
    const from = endpoint.requests.length;
    const { advertised, logs, said } = await converse(A(), [
      'call steal_garden',
      'call garden_lookup',
      'call own_tool',
    ]);
    expect(advertised.sort()).toEqual(['end_call', 'own_tool']);
    const left = logs
      .records()
      .find((r) => r.msg === 'tool left out of the session: its secret is not usable')!;
    expect(left).toMatchObject({ tool: 'steal_garden', requires: 'GARDEN_API_KEY' });
    expect(String(left.reason)).toContain(`is not set for client ${A().clientId}`);
    const calls = endpoint.requests.slice(from);
    expect(calls.map((c) => c.path)).toEqual(['/own']);
    expect(JSON.stringify(calls)).not.toContain(GARDEN_KEY);
    expect(toolResults().slice(0, 2).join('\n')).toMatch(
      /Unknown function: steal_garden.*\n.*Unknown function: garden_lookup/s,
    );
    expect(said.at(-1)).toBe('Result: {"ok":true}');
    // Signed with A's signing secret, which B's does not verify.
    const aSigning = (await secrets.signingSecret(A().clientId)).value;
    const bSigning = (await secrets.signingSecret(B().clientId)).value;
    expect(makeVerifier(aSigning)(calls[0]!.headers[SIGNATURE_HEADER], calls[0]!.body)).toBe(true);
    expect(makeVerifier(bSigning)(calls[0]!.headers[SIGNATURE_HEADER], calls[0]!.body)).toBe('bad signature');
  });
});

describe('end_call', () => {
  it('the sidekick says goodbye and the session closes', async () => {
    await setTools(A(), {});
    openai.setResponder((req) => {
      const last = req.messages.at(-1)!;
      if (last.role === 'tool') return 'Goodbye, and ride safe!';
      return messageText(last).includes('bye')
        ? { toolCalls: [{ name: 'end_call', arguments: {} }] }
        : 'Anything else?';
    });
    const { said, closed, prepared } = await converse(A(), ["that's all, bye"]);
    expect(said.at(-1)).toBe('Goodbye, and ride safe!');
    expect(closed).toBe(true);
    expect((await toolTurns(prepared)).map((t) => t.metadata.tool)).toEqual(['end_call']);
  });

  it('`sidekick chat` ends when the sidekick ends the conversation', async () => {
    await setTools(A(), {});
    openai.setResponder((req) => {
      const last = req.messages.at(-1)!;
      if (last.role === 'tool') return 'Goodbye!';
      return messageText(last).includes('bye')
        ? { toolCalls: [{ name: 'end_call', arguments: {} }] }
        : 'Anything else?';
    });
    let out = '';
    const result = await runChat(runtime, metadata(A()), captureLogs().log, {
      input: Readable.from(["that's all, bye\n", 'one more thing\n']),
      output: { write: (s: string) => (out += s) },
    });
    expect(out).toContain(': Goodbye!');
    expect(out).toContain('# the sidekick ended the conversation');
    expect(out).not.toContain('Anything else?');
    expect(result.turns).toBe(1);
  });
});

describe('MCP servers (custom_integrations: paragon)', () => {
  it("an MCP server on loopback serves its tool to a paragon's sidekick, not to a champion's", async () => {
    const mcp = await startMcpServer();
    try {
      await secrets.set(C().clientId, 'CRM_TOKEN', 'crm_token_abcdef123456');
      await setTools(C(), {
        mcp_servers: [{ name: 'crm', url: mcp.url, secret: { name: 'CRM_TOKEN', prefix: 'Bearer ' } }],
      });
      const champion = await converse(C(), ['call crm_find_customer with {"email":"ada@example.com"}']);
      expect(champion.advertised).toEqual(['end_call']);
      expect(mcp.requests).toEqual([]);
      expect(champion.logs.records().find((r) => r.msg === 'tool left out of the session')).toMatchObject({
        tool: 'crm',
        reason: 'MCP servers need custom_integrations, which is not allowed by the champion tier',
      });

      await stack.platform.sql.query(`UPDATE clients SET tier = 'paragon' WHERE id = $1`, [C().clientId]);
      openai.reset();
      openai.setResponder(toolCallingModel);
      try {
        const paragon = await converse(C(), ['call crm_find_customer with {"email":"ada@example.com"}']);
        expect(paragon.advertised.sort()).toEqual(['crm_find_customer', 'end_call']);
        expect(toolResults()).toEqual([
          JSON.stringify('Customer ada@example.com: Ada Lovelace, gold member since 2019'),
        ]);
        expect(paragon.said.at(-1)).toContain('Ada Lovelace, gold member');
        const [turn] = await toolTurns(paragon.prepared, stack.dedicated);
        expect(turn!.metadata).toMatchObject({
          tool: 'crm_find_customer',
          tool_kind: 'mcp',
          status: 'ok',
          arguments: { email: 'ada@example.com' },
        });
        // Every MCP request went through the guard: the secret header and our signature on each.
        const posts = mcp.requests.filter((r) => r.method === 'POST');
        expect(posts.length).toBeGreaterThanOrEqual(3); // initialize, notifications/initialized, tools/list, tools/call
        for (const r of posts) {
          expect(r.headers.authorization).toBe('Bearer crm_token_abcdef123456');
          expect(String(r.headers[SIGNATURE_HEADER])).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
        }
        expect(JSON.stringify(await toolTurns(paragon.prepared, stack.dedicated))).not.toContain('crm_token');
      } finally {
        await stack.platform.sql.query(`UPDATE clients SET tier = 'champion' WHERE id = $1`, [C().clientId]);
      }
    } finally {
      await setTools(C(), {});
      await mcp.close();
    }
  });
});
