/**
 * The contract of `agents.tools_config`: the client's HTTP tools and (paragon) MCP servers of one
 * sidekick. The README shows an example. A tool names the secret its endpoint needs (a name of
 * `sidekick secrets`), never the secret itself; its fixed headers may not look like credentials.
 *
 * Two readers: `checkToolEntry` refuses bad input where it is written (the CLI), naming each field;
 * `readToolsConfig` is the session's: each entry on its own, a bad one left out with its reason,
 * so one bad tool never fails a session.
 */

import { z } from 'zod';
import { isSecretFieldName } from '../../log.js';
import { UsageError } from '../../ops/errors.js';
import { SECRET_NAME, SECRET_NAME_RULE } from '../../secrets/store.js';
import { schemaProblem } from './arguments.js';

/** What the model calls a tool by (OpenAI allows [a-zA-Z0-9_-]{1,64}; MCP tools get a prefix). */
export const TOOL_NAME = /^[a-zA-Z][a-zA-Z0-9_]{0,47}$/;
export const MCP_SERVER_NAME = /^[a-z][a-z0-9]{0,14}$/;
/** Names the worker's own tools use. */
export const BUILT_IN_TOOLS: ReadonlySet<string> = new Set(['end_call']);

const HEADER_NAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;
/** Fixed headers are stored in plain text: anything that carries a credential belongs in a secret. */
const CREDENTIAL_HEADERS: ReadonlySet<string> = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'x-api-key',
  'api-key',
  'x-auth',
]);
/** Set by the worker (or by HTTP itself). */
const RESERVED_HEADERS: ReadonlySet<string> = new Set([
  'host',
  'content-length',
  'content-type',
  'transfer-encoding',
  'connection',
  'user-agent',
  'x-sidekick-signature',
]);

const httpUrl = z
  .string()
  .max(2048)
  .refine((v) => {
    try {
      const u = new URL(v);
      return (u.protocol === 'https:' || u.protocol === 'http:') && !u.username && !u.password;
    } catch {
      return false;
    }
  }, 'must be an http(s) URL without a user name or password');

const secretRef = z
  .object({
    /** The name given to `sidekick secrets set`. */
    name: z.string().regex(SECRET_NAME, `must be a secret name (${SECRET_NAME_RULE})`),
    /** The header it is sent in. */
    header: z.string().regex(HEADER_NAME, 'must be a header name').default('authorization'),
    /** Put before the value, e.g. "Bearer ". */
    prefix: z.string().max(32).default(''),
  })
  .strict();

const fixedHeaders = z
  .record(z.string().regex(HEADER_NAME, 'must be a header name'), z.string().max(1024))
  .default({})
  .superRefine((headers, ctx) => {
    for (const name of Object.keys(headers)) {
      const lower = name.toLowerCase();
      if (RESERVED_HEADERS.has(lower))
        ctx.addIssue({ code: 'custom', path: [name], message: 'is set by the worker' });
      else if (CREDENTIAL_HEADERS.has(lower) || isSecretFieldName(lower)) {
        ctx.addIssue({
          code: 'custom',
          path: [name],
          message:
            'looks like a credential: store it with `sidekick secrets set` and name it in "secret" instead',
        });
      }
    }
  });

/** A JSON-Schema object, as the model gets it (agents-js passes JSON Schema through unchanged). */
const parameters = z
  .object({
    type: z.literal('object', { message: 'must be "object"' }),
    properties: z.record(z.string(), z.record(z.string(), z.unknown())).default({}),
    required: z.array(z.string()).optional(),
  })
  .passthrough()
  .refine((p) => JSON.stringify(p).length <= 8192, 'is larger than 8 KB')
  .refine(
    (p) => (p.required ?? []).every((r) => r in p.properties),
    'names a required property that is not in properties',
  )
  .superRefine((p, ctx) => {
    // What cannot check the model's arguments cannot gate what reaches the client's endpoint.
    const problem = schemaProblem(p);
    if (problem) ctx.addIssue({ code: 'custom', message: `is not a valid JSON Schema: ${problem}` });
  });

export const httpToolSchema = z
  .object({
    name: z.string().regex(TOOL_NAME, 'must be letters, digits and "_", starting with a letter, at most 48'),
    /** For the model: when to use the tool. */
    description: z.string().trim().min(1, 'must not be empty').max(1024),
    parameters: parameters.default({ type: 'object', properties: {} }),
    endpoint: z
      .object({
        url: httpUrl,
        /** The arguments go as a JSON body, which the signature covers. */
        method: z.enum(['POST', 'PUT', 'PATCH']).default('POST'),
        headers: fixedHeaders,
      })
      .strict(),
    secret: secretRef.optional(),
    /** The whole call, redirects included. */
    timeout_ms: z.number().int().min(100).max(30_000).default(5000),
    /** Said when the call takes longer than after_ms. */
    filler: z
      .object({
        text: z.string().trim().min(1).max(300),
        after_ms: z.number().int().min(0).max(30_000).default(1500),
      })
      .strict()
      .optional(),
    /** What of the response the model sees: one field (a dotted path into JSON), at most max_chars. */
    response: z
      .object({
        field: z
          .string()
          .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'must be a dotted path, e.g. data.status')
          .optional(),
        max_chars: z.number().int().min(1).max(20_000).default(2000),
      })
      .strict()
      .default({ max_chars: 2000 }),
  })
  .strict()
  .refine((t) => !BUILT_IN_TOOLS.has(t.name), { path: ['name'], message: 'is the name of a built-in tool' });
export type HttpTool = z.infer<typeof httpToolSchema>;

export const mcpServerSchema = z
  .object({
    /** Its tools are offered to the model as <name>_<tool>. */
    name: z
      .string()
      .regex(MCP_SERVER_NAME, 'must be lower-case letters and digits, starting with a letter, at most 15'),
    /** The streamable HTTP endpoint. */
    url: httpUrl,
    secret: secretRef.optional(),
    headers: fixedHeaders,
    /** Only these of the server's tools (default: all it lists). */
    tools: z.array(z.string().min(1).max(64)).optional(),
    timeout_ms: z.number().int().min(100).max(60_000).default(10_000),
    max_chars: z.number().int().min(1).max(20_000).default(4000),
  })
  .strict();
export type McpServer = z.infer<typeof mcpServerSchema>;

export type ToolEntry = { kind: 'http'; tool: HttpTool } | { kind: 'mcp'; server: McpServer };

export interface ToolsConfig {
  tools: HttpTool[];
  mcp_servers: McpServer[];
}

export interface ConfigProblem {
  /** Where it is: tools[1], mcp_servers[0], or tools_config itself. */
  entry: string;
  name?: string;
  problem: string;
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      if (i.code === 'unrecognized_keys')
        return `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.join(', ')}`;
      return `${i.path.join('.') || 'the entry'}: ${i.message}`;
    })
    .join('; ');
}

const nameOf = (raw: unknown): string | undefined =>
  raw && typeof raw === 'object' && typeof (raw as { name?: unknown }).name === 'string'
    ? (raw as { name: string }).name
    : undefined;

/**
 * The session's reading of a stored tools_config: every valid entry, in order, and a problem for
 * each one left out (invalid, or a name used twice). Never throws.
 */
export function readToolsConfig(raw: unknown): { config: ToolsConfig; problems: ConfigProblem[] } {
  const config: ToolsConfig = { tools: [], mcp_servers: [] };
  const problems: ConfigProblem[] = [];
  if (raw === null || raw === undefined) return { config, problems };
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push({ entry: 'tools_config', problem: 'is not a JSON object with "tools" and "mcp_servers"' });
    return { config, problems };
  }
  const { tools, mcp_servers, ...rest } = raw as Record<string, unknown>;
  for (const key of Object.keys(rest))
    problems.push({ entry: 'tools_config', problem: `unknown field ${key} (ignored)` });
  const seen = new Set<string>();
  const read = <T extends { name: string }>(
    list: unknown,
    field: string,
    schema: z.ZodType<T>,
    into: T[],
  ) => {
    if (list === undefined) return;
    if (!Array.isArray(list)) {
      problems.push({ entry: field, problem: 'is not a list' });
      return;
    }
    list.forEach((item, i) => {
      const entry = `${field}[${i}]`;
      const parsed = schema.safeParse(item);
      const name = nameOf(item);
      if (!parsed.success)
        problems.push({ entry, ...(name ? { name } : {}), problem: describeIssues(parsed.error) });
      else if (seen.has(parsed.data.name))
        problems.push({ entry, name: parsed.data.name, problem: 'the name is used by an earlier entry' });
      else {
        seen.add(parsed.data.name);
        into.push(parsed.data);
      }
    });
  };
  read(tools, 'tools', httpToolSchema, config.tools);
  read(mcp_servers, 'mcp_servers', mcpServerSchema, config.mcp_servers);
  return { config, problems };
}

/** Where it is written (the CLI): the entry, or a UsageError naming each bad field. */
export function checkToolEntry(kind: 'http', raw: unknown, source: string): HttpTool;
export function checkToolEntry(kind: 'mcp', raw: unknown, source: string): McpServer;
export function checkToolEntry(kind: 'http' | 'mcp', raw: unknown, source: string): HttpTool | McpServer {
  const parsed = (kind === 'http' ? httpToolSchema : mcpServerSchema).safeParse(raw);
  if (!parsed.success) throw new UsageError(`${source}: ${describeIssues(parsed.error)}`);
  return parsed.data;
}
