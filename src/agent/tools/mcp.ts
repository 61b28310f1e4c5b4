/**
 * A client's MCP server (paragon, `custom_integrations`) as an agents-js Toolset: the official
 * `@modelcontextprotocol/sdk` client over streamable HTTP, whose every request goes through the
 * outbound guard (its `fetch` is the guarded one: checked addresses, the secret header for the
 * server's origin only, signed bodies, capped responses). The connection starts when the toolset
 * is made, so it overlaps the rest of session start; the toolset's setup (awaited by agents-js
 * when the agent starts) hands the server's tools to the model as `<server>_<tool>`. A server that
 * cannot be reached leaves its tools out; the session goes on.
 */

import { llm } from '@livekit/agents';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Logger } from 'pino';
import type { OutboundClient } from '../../outbound/index.js';
import type { McpServer } from './config.js';
import { asToolOutput, scrub, type ToolCallRecord } from './http-tool.js';

export interface McpDeps {
  outbound: OutboundClient;
  signing: string;
  secrets: ReadonlyMap<string, string>;
  onCall: (call: ToolCallRecord) => void;
  log: Logger;
}

const MODEL_TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
const MAX_LISTED = 128;

export interface McpToolset {
  toolset: llm.Toolset;
  /** The model-side names of the server's tools, once listed (empty when it could not be reached). */
  ready: Promise<string[]>;
  close(): Promise<void>;
}

export function mcpToolset(server: McpServer, deps: McpDeps): McpToolset {
  const secretValue = server.secret ? deps.secrets.get(server.secret.name) : undefined;
  const fetch = deps.outbound.fetcher({
    origin: new URL(server.url).origin,
    ...(server.secret && secretValue
      ? { secretHeaders: { [server.secret.header]: `${server.secret.prefix}${secretValue}` } }
      : {}),
    signWith: deps.signing,
  });
  const client = new Client({ name: 'sidekick-worker', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(server.url), {
    fetch,
    requestInit: { headers: server.headers },
    // Same origin only; a redirect elsewhere fails (and would be judged by the guard again).
    redirectPolicy: 'same-origin',
    reconnectionOptions: {
      maxRetries: 0,
      initialReconnectionDelay: 1000,
      maxReconnectionDelay: 1000,
      reconnectionDelayGrowFactor: 1,
    },
  });
  const known = secretValue ? [secretValue] : [];
  let tools: llm.FunctionTool[] = [];
  let closed = false;

  const ready = (async () => {
    try {
      await client.connect(transport, { timeout: server.timeout_ms });
      const listed: Array<{ name: string; description?: string; inputSchema: Record<string, unknown> }> = [];
      let cursor: string | undefined;
      do {
        const page = await client.listTools(cursor ? { cursor } : undefined, { timeout: server.timeout_ms });
        listed.push(...(page.tools as typeof listed));
        cursor = page.nextCursor;
      } while (cursor && listed.length < MAX_LISTED);
      const wanted = server.tools ? new Set(server.tools) : undefined;
      tools = listed
        .filter((t) => !wanted || wanted.has(t.name))
        .filter((t) => {
          const ok = MODEL_TOOL_NAME.test(`${server.name}_${t.name}`);
          if (!ok)
            deps.log.warn(
              { mcp_server: server.name, tool: t.name },
              'MCP tool left out: its name cannot be offered to the model',
            );
          return ok;
        })
        .map((t) => wrap(t));
      return tools.map((t) => t.name);
    } catch (err) {
      deps.log.warn(
        { mcp_server: server.name, reason: (err as Error).message },
        'MCP server could not be reached: its tools are left out',
      );
      return [];
    }
  })();

  function wrap(t: {
    name: string;
    description?: string;
    inputSchema: Record<string, unknown>;
  }): llm.FunctionTool {
    const name = `${server.name}_${t.name}`;
    return llm.tool({
      name,
      description: t.description?.slice(0, 1024) || `${t.name} (from ${server.name})`,
      parameters: { ...t.inputSchema, type: 'object' } as object,
      execute: async (args: Record<string, unknown>, { toolCallId, abortSignal }) => {
        const started = performance.now();
        const record = (status: ToolCallRecord['status'], shown: string, truncated = false) =>
          deps.onCall({
            tool: name,
            kind: 'mcp',
            callId: toolCallId,
            arguments: args ?? {},
            status,
            latencyMs: Math.round(performance.now() - started),
            shown,
            truncated,
          });
        let result: Awaited<ReturnType<Client['callTool']>>;
        try {
          result = await client.callTool({ name: t.name, arguments: args ?? {} }, undefined, {
            timeout: server.timeout_ms,
            signal: abortSignal,
          });
        } catch (err) {
          const timedOut = /timed out|timeout/i.test((err as Error).message);
          const message = timedOut
            ? `The ${name} tool did not answer within ${server.timeout_ms / 1000} seconds.`
            : `The ${name} tool could not be reached.`;
          record(timedOut ? 'timeout' : 'failed', message);
          throw new llm.ToolError(message);
        }
        const content = Array.isArray(result.content)
          ? (result.content as Array<{ type: string; text?: string }>)
          : [];
        const text = content
          .filter((c) => c.type === 'text' && typeof c.text === 'string')
          .map((c) => c.text)
          .join('\n');
        const raw = text || (result.structuredContent ? JSON.stringify(result.structuredContent) : '');
        const cutAt = result.isError ? 300 : server.max_chars;
        const shown = scrub(raw.length > cutAt ? `${raw.slice(0, cutAt)}…` : raw, known);
        if (result.isError) {
          const message = `The ${name} tool failed: ${shown}`;
          record('error', message);
          throw new llm.ToolError(message);
        }
        record('ok', shown, raw.length > cutAt);
        return asToolOutput(shown);
      },
    });
  }

  const close = async () => {
    if (closed) return;
    closed = true;
    await client.close().catch(() => undefined);
  };

  const toolset = llm.Toolset.create({
    id: `mcp_${server.name}`,
    tools: [],
    setup: async ({ updateTools }) => {
      await ready;
      updateTools(tools);
    },
    aclose: close,
  });
  return { toolset, ready, close };
}
