import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { parse as parseYaml } from 'yaml';
import { UsageError } from '../ops/errors.js';
import {
  addTool,
  listTools,
  removeTool,
  type ToolListing,
  type ToolOpsDeps,
  testTool,
} from '../ops/tools.js';
import { type CommandContext, parseCount, parseJsonObject, parseSidekick, parseUuid } from './shared.js';

interface AddFlags {
  client: string;
  agent: string;
  file?: string;
  mcp?: boolean;
  name?: string;
  description?: string;
  url?: string;
  method?: string;
  parameters?: Record<string, unknown>;
  header?: Record<string, string>;
  secret?: string;
  secretHeader?: string;
  secretPrefix?: string;
  timeoutMs?: number;
  filler?: string;
  fillerAfterMs?: number;
  responseField?: string;
  responseMaxChars?: number;
  only?: string;
  json?: boolean;
}

/** `sidekick agents tools ...`: a sidekick's HTTP tools and MCP servers (tools_config). */
export function toolsCommands(agents: Command, ctx: CommandContext): void {
  const tools = agents
    .command('tools')
    .description(
      "a sidekick's tools: the client's HTTP endpoints (and MCP servers for paragons), within max_tools",
    );

  tools
    .command('add')
    .description(
      'add an HTTP tool (or with --mcp an MCP server) from flags or a JSON/YAML --file of one entry (README: tools_config); flags win',
    )
    .requiredOption('--client <id>', 'client id', parseUuid)
    .requiredOption('--agent <slug>', 'the sidekick (slug or id)', parseSidekick)
    .option('--file <path>', 'the entry as JSON or YAML')
    .option('--mcp', 'the entry is an MCP server (streamable HTTP), not an HTTP tool')
    .option('--name <name>', 'what the model calls it (MCP: the prefix of its tools)')
    .option('--description <text>', 'for the model: when to use it')
    .option('--url <url>', 'the endpoint')
    .option('--method <method>', 'POST (default), PUT or PATCH')
    .option('--parameters <json>', 'JSON Schema of the arguments (an object schema)', parseJsonObject)
    .option('--header <name: value>', 'a fixed, non-secret header (repeatable)', collectHeader, {})
    .option('--secret <NAME>', 'the client secret sent in a header (sidekick secrets set)')
    .option('--secret-header <name>', 'the header the secret goes in (default authorization)')
    .option('--secret-prefix <text>', 'put before the secret, e.g. "Bearer "')
    .option('--timeout-ms <n>', 'the whole call at most (default 5000; MCP 10000)', parseCount)
    .option('--filler <text>', 'said when the call takes longer than --filler-after-ms')
    .option('--filler-after-ms <n>', 'when the filler is said (default 1500)', parseCount)
    .option('--response-field <path>', 'the model sees only this field of a JSON answer (e.g. data.status)')
    .option(
      '--response-max-chars <n>',
      'the model sees at most this much of the answer (default 2000)',
      parseCount,
    )
    .option('--only <names>', 'MCP: only these of its tools, comma-separated')
    .option('--json', 'print the result as JSON')
    .action(async (o: AddFlags) => {
      const kind = o.mcp ? 'mcp' : 'http';
      const fromFile = o.file ? await readEntryFile(o.file) : {};
      const entry = kind === 'http' ? httpFromFlags(fromFile, o) : mcpFromFlags(fromFile, o);
      const result = await addTool(deps(ctx), {
        clientId: o.client,
        agent: o.agent,
        kind,
        entry,
        source: o.file ? `--file ${o.file} (with flags)` : 'flags',
      });
      if (o.json) return ctx.json({ ...listingJson(result), added: result.added, notes: result.notes });
      ctx.out(
        `added ${kind === 'mcp' ? 'MCP server' : 'tool'} ${result.added.name} to sidekick ${result.sidekick.slug}`,
      );
      for (const line of formatTools(result)) ctx.out(line);
      for (const n of result.notes) ctx.out(`note: ${n}`);
    });

  tools
    .command('list')
    .description('the tools and MCP servers of a sidekick, and which of them its sessions get (and why)')
    .requiredOption('--client <id>', 'client id', parseUuid)
    .requiredOption('--agent <slug>', 'the sidekick (slug or id)', parseSidekick)
    .option('--json', 'print as JSON')
    .action(async (o: { client: string; agent: string; json?: boolean }) => {
      const result = await listTools(deps(ctx), { clientId: o.client, agent: o.agent });
      if (o.json) return ctx.json(listingJson(result));
      for (const line of formatTools(result)) ctx.out(line);
    });

  tools
    .command('remove')
    .description('remove a tool or MCP server by name')
    .requiredOption('--client <id>', 'client id', parseUuid)
    .requiredOption('--agent <slug>', 'the sidekick (slug or id)', parseSidekick)
    .requiredOption('--name <name>', 'the tool')
    .option('--json', 'print the result as JSON')
    .action(async (o: { client: string; agent: string; name: string; json?: boolean }) => {
      const result = await removeTool(deps(ctx), { clientId: o.client, agent: o.agent, name: o.name });
      if (o.json) return ctx.json({ ...listingJson(result), removed: result.removed });
      ctx.out(`removed ${result.removed} from sidekick ${result.sidekick.slug}`);
      for (const line of formatTools(result)) ctx.out(line);
    });

  tools
    .command('test')
    .description(
      'call a tool with sample arguments through the same guard, signature and secret as a session; shows the status, latency and what the model would see (MCP: connects and lists its tools)',
    )
    .requiredOption('--client <id>', 'client id', parseUuid)
    .requiredOption('--agent <slug>', 'the sidekick (slug or id)', parseSidekick)
    .requiredOption('--name <name>', 'the tool')
    .option('--args <json>', 'the arguments, as the model would give them', parseJsonObject, {})
    .option('--json', 'print the result as JSON')
    .action(
      async (o: {
        client: string;
        agent: string;
        name: string;
        args: Record<string, unknown>;
        json?: boolean;
      }) => {
        const t = await testTool(deps(ctx), {
          clientId: o.client,
          agent: o.agent,
          name: o.name,
          args: o.args,
        });
        const r = t.record;
        if (o.json) {
          ctx.json({
            client_id: t.clientId,
            sidekick: t.sidekick,
            tool: r.tool,
            kind: t.kind,
            status: r.status,
            http_status: r.httpStatus ?? null,
            latency_ms: r.latencyMs,
            truncated: r.truncated,
            model_sees: t.modelSees,
            ...(t.offered ? { offered: t.offered } : {}),
            in_sessions: t.inSessions,
          });
        } else {
          ctx.out(
            `${r.tool}: ${r.status}${r.httpStatus ? ` (HTTP ${r.httpStatus})` : ''} in ${r.latencyMs} ms`,
          );
          ctx.out(`the model would see: ${t.modelSees}${r.truncated ? '  (cut)' : ''}`);
          ctx.out(`in sessions: ${t.inSessions.enabled ? 'yes' : 'no'}, ${t.inSessions.reason}`);
        }
        // Refused: the URL or --args must change (2); anything else failed and may work on a retry (1).
        if (r.status === 'invalid_arguments') throw new UsageError(`--args: ${t.modelSees}`);
        if (r.status === 'refused')
          throw new UsageError(`${r.tool}: the endpoint's address is refused by the outbound guard`);
        if (r.status !== 'ok') throw new Error(`${r.tool}: the call did not succeed (${r.status})`);
      },
    );
}

function deps(ctx: CommandContext): ToolOpsDeps {
  const worker = ctx.operations().worker();
  return { connections: worker.connections, outbound: worker.outbound, secrets: worker.secrets };
}

function collectHeader(value: string, previous: Record<string, string>): Record<string, string> {
  const i = value.indexOf(':');
  if (i <= 0) throw new InvalidArgumentError('expected "Name: value"');
  return { ...previous, [value.slice(0, i).trim()]: value.slice(i + 1).trim() };
}

async function readEntryFile(file: string): Promise<Record<string, unknown>> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(`--file ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  });
  let doc: unknown;
  try {
    doc = extname(file).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new UsageError(`--file ${file}: not valid JSON or YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new UsageError(`--file ${file}: expected one object: a tool (or with --mcp an MCP server)`);
  }
  return doc as Record<string, unknown>;
}

const defined = (o: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

function secretFrom(base: unknown, o: AddFlags): unknown {
  if (o.secret === undefined && o.secretHeader === undefined && o.secretPrefix === undefined) return base;
  return defined({
    ...(base && typeof base === 'object' ? base : {}),
    name: o.secret,
    header: o.secretHeader,
    prefix: o.secretPrefix,
  });
}

function httpFromFlags(file: Record<string, unknown>, o: AddFlags): Record<string, unknown> {
  const endpoint = (file.endpoint && typeof file.endpoint === 'object' ? file.endpoint : {}) as Record<
    string,
    unknown
  >;
  const headers = { ...((endpoint.headers as Record<string, string> | undefined) ?? {}), ...o.header };
  const filler = (file.filler && typeof file.filler === 'object' ? file.filler : undefined) as
    | Record<string, unknown>
    | undefined;
  const response = (file.response && typeof file.response === 'object' ? file.response : undefined) as
    | Record<string, unknown>
    | undefined;
  return defined({
    ...file,
    name: o.name ?? file.name,
    description: o.description ?? file.description,
    parameters: o.parameters ?? file.parameters,
    endpoint: defined({
      ...endpoint,
      url: o.url ?? endpoint.url,
      method: o.method?.toUpperCase() ?? endpoint.method,
      headers: Object.keys(headers).length ? headers : undefined,
    }),
    secret: secretFrom(file.secret, o),
    timeout_ms: o.timeoutMs ?? file.timeout_ms,
    filler:
      o.filler !== undefined || o.fillerAfterMs !== undefined
        ? defined({
            ...filler,
            text: o.filler ?? filler?.text,
            after_ms: o.fillerAfterMs ?? filler?.after_ms,
          })
        : filler,
    response:
      o.responseField !== undefined || o.responseMaxChars !== undefined
        ? defined({
            ...response,
            field: o.responseField ?? response?.field,
            max_chars: o.responseMaxChars ?? response?.max_chars,
          })
        : response,
  });
}

function mcpFromFlags(file: Record<string, unknown>, o: AddFlags): Record<string, unknown> {
  const headers = { ...((file.headers as Record<string, string> | undefined) ?? {}), ...o.header };
  return defined({
    ...file,
    name: o.name ?? file.name,
    url: o.url ?? file.url,
    headers: Object.keys(headers).length ? headers : undefined,
    secret: secretFrom(file.secret, o),
    timeout_ms: o.timeoutMs ?? file.timeout_ms,
    tools: o.only
      ? o.only
          .split(',')
          .map((t) => t.trim())
          .filter(Boolean)
      : file.tools,
  });
}

function listingJson(l: ToolListing) {
  return {
    client_id: l.clientId,
    sidekick: l.sidekick,
    max_tools: l.maxTools,
    tools_config: l.config,
    sessions: {
      tools: l.decision.http.map((t) => t.name),
      mcp_servers: l.decision.mcp.map((m) => m.name),
      left_out: l.decision.leftOut,
      reason: l.decision.reason,
    },
  };
}

export function formatTools(l: ToolListing): string[] {
  const inSession = new Set([...l.decision.http.map((t) => t.name), ...l.decision.mcp.map((m) => m.name)]);
  const lines = [`tools of sidekick ${l.sidekick.slug} (client ${l.clientId}): ${l.decision.reason}`];
  for (const t of l.config.tools) {
    const host = new URL(t.endpoint.url).host;
    lines.push(
      `  ${inSession.has(t.name) ? 'on ' : 'off'}  ${t.name.padEnd(24)} ${t.endpoint.method} ${host}${t.secret ? `  secret ${t.secret.name}` : ''}`,
    );
  }
  for (const m of l.config.mcp_servers) {
    lines.push(
      `  ${inSession.has(m.name) ? 'on ' : 'off'}  ${`${m.name} (MCP)`.padEnd(24)} ${new URL(m.url).host}${m.secret ? `  secret ${m.secret.name}` : ''}`,
    );
  }
  lines.push('  on   end_call                 built in: ends the conversation politely');
  for (const left of l.decision.leftOut)
    lines.push(`  left out: ${left.name ?? left.entry}: ${left.problem}`);
  return lines;
}
