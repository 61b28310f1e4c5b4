/**
 * `sidekick agents tools ...`: a sidekick's tools_config, changed one entry at a time through the
 * client's own connection. Where it is written, bad input is refused naming the field, the tier's
 * limits (max_tools, custom_integrations for MCP) are refused with exit 3, a secret the tool names
 * must exist, and the endpoint must pass the outbound guard. `test` calls a tool exactly as a
 * session would.
 */

import { randomUUID } from 'node:crypto';
import {
  BUILT_IN_TOOLS,
  checkToolEntry,
  type HttpTool,
  type McpServer,
  readToolsConfig,
} from '../agent/tools/config.js';
import { callHttpTool, type ToolCallRecord } from '../agent/tools/http-tool.js';
import { mcpToolset } from '../agent/tools/mcp.js';
import { decideTools, type ToolsDecision } from '../agent/tools/plan.js';
import { createRootLogger } from '../log.js';
import { type OutboundClient, OutboundError } from '../outbound/index.js';
import type { ClientSecretStore } from '../secrets/store.js';
import type { ClientConnection } from '../tenancy/connections.js';
import type { SidekickRow } from '../tenancy/sidekicks.js';
import type { FeatureName } from '../tenancy/tiers.js';
import { dbError, LimitError, UsageError } from './errors.js';
import { connectClient, sidekickArg, type TenantDeps } from './tenant.js';

export interface ToolOpsDeps extends TenantDeps {
  outbound: OutboundClient;
  /** null without SECRETS_KEY. */
  secrets: ClientSecretStore | null;
}

type RawConfig = { tools?: unknown[]; mcp_servers?: unknown[]; [key: string]: unknown };

export interface ToolListing {
  clientId: string;
  sidekick: Pick<SidekickRow, 'id' | 'slug' | 'name'>;
  config: { tools: HttpTool[]; mcp_servers: McpServer[] };
  /** What a session of this sidekick gets now (the session plan's own decision). */
  decision: ToolsDecision;
  maxTools: number | null;
}

function source(conn: ClientConnection) {
  return (feature: FeatureName) =>
    conn.overridden.has(feature) ? "this client's tier_features override" : `the ${conn.tier} tier`;
}

function rawConfig(s: SidekickRow): RawConfig {
  const raw = s.tools_config;
  if (raw && typeof raw === 'object' && !Array.isArray(raw)) return raw as RawConfig;
  return {};
}

const entryName = (e: unknown) => (e && typeof e === 'object' ? (e as { name?: unknown }).name : undefined);

async function load(deps: TenantDeps, clientId: string, agent: string) {
  const conn = await connectClient(deps, clientId);
  const sidekick = await sidekickArg(conn.db, agent);
  return { conn, sidekick };
}

/** What sessions of this sidekick get, as they would decide it (the client's secrets included, when readable). */
async function listing(
  deps: ToolOpsDeps,
  conn: ClientConnection,
  s: SidekickRow,
  known?: ReadonlySet<string>,
): Promise<ToolListing> {
  const names = known ?? (await secretNames(deps, conn.clientId));
  return {
    clientId: conn.clientId,
    sidekick: { id: s.id, slug: s.slug, name: s.name },
    config: readToolsConfig(s.tools_config).config,
    decision: decideTools({
      features: conn.features,
      source: source(conn),
      toolsConfig: s.tools_config,
      ...(names ? { secretsSet: { clientId: conn.clientId, names } } : {}),
    }),
    maxTools: conn.features.max_tools,
  };
}

/** The names of the client's secrets; undefined without SECRETS_KEY (no store to ask). */
async function secretNames(deps: ToolOpsDeps, clientId: string): Promise<ReadonlySet<string> | undefined> {
  return deps.secrets ? new Set((await deps.secrets.list(clientId)).map((secret) => secret.name)) : undefined;
}

/** The client's tools (HTTP and MCP, in every sidekick) that name a secret: what its deletion leaves out of sessions. */
export async function toolsNamingSecret(
  deps: TenantDeps,
  clientId: string,
  secret: string,
): Promise<Array<{ sidekick: string; tool: string }>> {
  const conn = await connectClient(deps, clientId);
  const res = await conn.db.from('agents').select('slug, tools_config').order('slug');
  if (res.error) throw dbError(`reading the sidekicks of client ${conn.clientId}`, res.error);
  return ((res.data ?? []) as Array<{ slug: string; tools_config: unknown }>).flatMap((a) => {
    const { config } = readToolsConfig(a.tools_config);
    return [...config.tools, ...config.mcp_servers]
      .filter((t) => t.secret?.name === secret)
      .map((t) => ({ sidekick: a.slug, tool: t.name }));
  });
}

export async function listTools(
  deps: ToolOpsDeps,
  opts: { clientId: string; agent: string },
): Promise<ToolListing> {
  const { conn, sidekick } = await load(deps, opts.clientId, opts.agent);
  return listing(deps, conn, sidekick);
}

/** Writes the new config only if nobody changed it since it was read (two adds cannot both pass the limit). */
async function write(conn: ClientConnection, s: SidekickRow, next: RawConfig): Promise<SidekickRow> {
  let q = conn.db.from('agents').update({ tools_config: next }).eq('id', s.id);
  q =
    s.tools_config === null || s.tools_config === undefined
      ? q.is('tools_config', null)
      : q.eq('tools_config', JSON.stringify(s.tools_config));
  const res = await q.select('id, name, slug, tools_config');
  if (res.error)
    throw dbError(`writing the tools of sidekick "${s.slug}" of client ${conn.clientId}`, res.error);
  if (!res.data?.length) {
    throw new Error(`the tools of sidekick "${s.slug}" changed while this command ran: run it again`);
  }
  return { ...s, tools_config: next };
}

export interface AddedTool extends ToolListing {
  added: { kind: 'http' | 'mcp'; name: string };
  notes: string[];
}

export async function addTool(
  deps: ToolOpsDeps,
  opts: { clientId: string; agent: string; kind: 'http' | 'mcp'; entry: unknown; source: string },
): Promise<AddedTool> {
  const { conn, sidekick } = await load(deps, opts.clientId, opts.agent);
  const entry =
    opts.kind === 'http'
      ? checkToolEntry('http', opts.entry, opts.source)
      : checkToolEntry('mcp', opts.entry, opts.source);
  const raw = rawConfig(sidekick);
  const names = [...(raw.tools ?? []), ...(raw.mcp_servers ?? [])].map(entryName);
  if (names.includes(entry.name) || BUILT_IN_TOOLS.has(entry.name)) {
    throw new UsageError(
      `--name: sidekick "${sidekick.slug}" already has a tool named "${entry.name}" (\`sidekick agents tools remove\` it first, or choose another name)`,
    );
  }
  const f = conn.features;
  if (opts.kind === 'mcp' && !f.custom_integrations) {
    throw new LimitError(
      'custom_integrations',
      `refused by the tier: MCP servers need custom_integrations, which is not allowed by ${source(conn)('custom_integrations')}; upgrade the client to paragon or grant custom_integrations in its tier_features`,
    );
  }
  const { config } = readToolsConfig(raw);
  const have = config.tools.length + config.mcp_servers.length;
  if (f.max_tools !== null && have + 1 > f.max_tools) {
    throw new LimitError(
      'max_tools',
      `refused by the limit max_tools (${conn.tier} tier): sidekick "${sidekick.slug}" may have at most ${f.max_tools} tool(s) and has ${have}; remove one (\`sidekick agents tools remove\`) or upgrade the client (\`sidekick clients upgrade\`)`,
    );
  }
  const notes: string[] = [];
  const known = await secretNames(deps, conn.clientId);
  if (entry.secret) {
    if (!known)
      throw new UsageError('SECRETS_KEY is not set: tools with a secret need it (see .env.example)');
    if (!known.has(entry.secret.name)) {
      throw new UsageError(
        `secret.name: client ${conn.clientId} has no secret ${entry.secret.name}: set it first (\`sidekick secrets set --client ${conn.clientId} --name ${entry.secret.name}\`)`,
      );
    }
  }
  const url = 'endpoint' in entry ? entry.endpoint.url : entry.url;
  try {
    await deps.outbound.check(url);
  } catch (err) {
    if (!(err instanceof OutboundError)) throw err;
    const field = 'endpoint' in entry ? 'endpoint.url' : 'url';
    if (err.kind !== 'unresolvable') throw new UsageError(`${field}: ${err.message}`);
    notes.push(`${err.message} here: sessions will call it only once it resolves to a public address`);
  }
  const next: RawConfig =
    opts.kind === 'http'
      ? { ...raw, tools: [...(raw.tools ?? []), entry] }
      : { ...raw, mcp_servers: [...(raw.mcp_servers ?? []), entry] };
  const written = await write(conn, sidekick, next);
  if (!deps.secrets)
    notes.push('SECRETS_KEY is not set for this command: sessions need it to sign tool calls');
  else {
    const { created } = await deps.secrets.signingSecret(conn.clientId);
    if (created) {
      notes.push(
        `a signing secret was made for client ${conn.clientId}: its endpoints verify X-Sidekick-Signature with it (\`sidekick secrets signing-secret --client ${conn.clientId}\`)`,
      );
    }
  }
  return {
    ...(await listing(deps, conn, written, known)),
    added: { kind: opts.kind, name: entry.name },
    notes,
  };
}

export async function removeTool(
  deps: ToolOpsDeps,
  opts: { clientId: string; agent: string; name: string },
): Promise<ToolListing & { removed: string }> {
  const { conn, sidekick } = await load(deps, opts.clientId, opts.agent);
  const raw = rawConfig(sidekick);
  const keep = (list: unknown[] | undefined) => (list ?? []).filter((e) => entryName(e) !== opts.name);
  const tools = keep(raw.tools);
  const mcp = keep(raw.mcp_servers);
  if (tools.length === (raw.tools ?? []).length && mcp.length === (raw.mcp_servers ?? []).length) {
    throw new UsageError(
      `--name: sidekick "${sidekick.slug}" has no tool named "${opts.name}" (\`sidekick agents tools list\` shows them)`,
    );
  }
  const written = await write(conn, sidekick, { ...raw, tools, mcp_servers: mcp });
  return { ...(await listing(deps, conn, written)), removed: opts.name };
}

export interface ToolTest {
  clientId: string;
  sidekick: string;
  kind: 'http' | 'mcp';
  record: ToolCallRecord;
  /** What the model would get (the error, when it failed). */
  modelSees: string;
  /** MCP: the tools the session would offer. */
  offered?: string[];
  /** Whether sessions get this tool now (the tier, the limit). */
  inSessions: { enabled: boolean; reason: string };
}

/** Calls one tool with sample arguments through the same guard, signature and secrets as a session. */
export async function testTool(
  deps: ToolOpsDeps,
  opts: { clientId: string; agent: string; name: string; args: Record<string, unknown> },
): Promise<ToolTest> {
  const { conn, sidekick } = await load(deps, opts.clientId, opts.agent);
  const { config } = readToolsConfig(sidekick.tools_config);
  const http = config.tools.find((t) => t.name === opts.name);
  const mcp = config.mcp_servers.find((t) => t.name === opts.name);
  if (!http && !mcp) {
    const stored = [...(rawConfig(sidekick).tools ?? []), ...(rawConfig(sidekick).mcp_servers ?? [])].some(
      (e) => entryName(e) === opts.name,
    );
    throw new UsageError(
      stored
        ? `--name: the stored tool "${opts.name}" is not valid (\`sidekick agents tools list\` says why); remove it and add it again`
        : `--name: sidekick "${sidekick.slug}" has no tool named "${opts.name}" (\`sidekick agents tools list\` shows them)`,
    );
  }
  const decision = (await listing(deps, conn, sidekick)).decision;
  const left = decision.leftOut.find((l) => l.name === opts.name);
  const inSessions = left
    ? { enabled: false, reason: left.problem }
    : { enabled: true, reason: decision.reason };
  if (!deps.secrets)
    throw new UsageError(
      "SECRETS_KEY is not set: tool calls are signed with the client's signing secret, stored with it",
    );
  const spec = (http ?? mcp)!;
  const loaded = await deps.secrets.load(conn.clientId, spec.secret ? [spec.secret.name] : []);
  const problem = loaded.problems[0];
  if (problem) throw new UsageError(`secret.name: ${problem.problem}`);
  const callId = `test_${randomUUID()}`;
  if (http) {
    const { record, error } = await callHttpTool(
      http,
      opts.args,
      {
        outbound: deps.outbound,
        signing: loaded.signing,
        secrets: loaded.values,
        conversationId: () => callId,
      },
      { callId },
    );
    return {
      clientId: conn.clientId,
      sidekick: sidekick.slug,
      kind: 'http',
      record,
      modelSees: error ?? record.shown,
      inSessions,
    };
  }
  const started = performance.now();
  const quiet = createRootLogger({ level: 'silent' });
  const calls: ToolCallRecord[] = [];
  const set = mcpToolset(mcp!, {
    outbound: deps.outbound,
    signing: loaded.signing,
    secrets: loaded.values,
    onCall: (c) => calls.push(c),
    log: quiet,
  });
  try {
    const offered = await set.ready;
    const ok = offered.length > 0;
    const shown = ok
      ? `${offered.length} tool(s): ${offered.join(', ')}`
      : 'the server could not be reached, or lists no tools';
    return {
      clientId: conn.clientId,
      sidekick: sidekick.slug,
      kind: 'mcp',
      record: {
        tool: mcp!.name,
        kind: 'mcp',
        callId,
        arguments: {},
        status: ok ? 'ok' : 'failed',
        latencyMs: Math.round(performance.now() - started),
        shown,
        truncated: false,
      },
      modelSees: shown,
      offered,
      inSessions,
    };
  } finally {
    await set.close();
  }
}
