/**
 * The tools of one session, from its plan: the client's HTTP tools and MCP servers (with this
 * client's secrets only, loaded for the names its tools use) and the built-in end_call. A tool
 * whose secret is missing or does not decrypt is left out and logged; without SECRETS_KEY there
 * are no client tools. Nothing here can fail the session.
 */

import { randomUUID } from 'node:crypto';
import { beta, type llm } from '@livekit/agents';
import type { Logger } from 'pino';
import type { Turn } from '../../context/transcripts.js';
import type { OutboundClient } from '../../outbound/index.js';
import type { ClientSecretStore } from '../../secrets/store.js';
import type { SessionPlan } from '../session-plan.js';
import { httpTool, type ToolCallRecord } from './http-tool.js';
import { type McpToolset, mcpToolset } from './mcp.js';

export interface SessionTools {
  /** For the Sidekick's `tools`. */
  entries: llm.ToolContextEntry[];
  /** Closes MCP connections (agents-js closes them too when the agent ends). */
  close(): Promise<void>;
}

export interface SessionToolsDeps {
  outbound: OutboundClient;
  secrets: ClientSecretStore | null;
  log: Logger;
  conversationId: () => string;
  /** Every call, for the transcript (a `tool` turn). */
  onCall: (call: ToolCallRecord) => void;
}

export async function prepareSessionTools(plan: SessionPlan, deps: SessionToolsDeps): Promise<SessionTools> {
  const { log } = deps;
  const decision = plan.tools;
  for (const left of decision.leftOut) {
    log.warn({ entry: left.entry, tool: left.name, reason: left.problem }, 'tool left out of the session');
  }
  const endCall = beta.createEndCallTool({
    ignoreOnEnter: true,
    onToolCalled: ({ ctx }) =>
      deps.onCall({
        tool: 'end_call',
        kind: 'built_in',
        callId: ctx.functionCall.callId,
        arguments: {},
        status: 'ok',
        latencyMs: 0,
        shown: 'the sidekick ended the conversation',
        truncated: false,
      }),
  });
  const none: SessionTools = { entries: [endCall], close: async () => undefined };
  const wanted = decision.http.length + decision.mcp.length;
  if (!wanted) return none;
  if (!deps.secrets) {
    log.warn(
      { tools: wanted },
      "SECRETS_KEY is not set: the sidekick's tools are left out (calls must be signed)",
    );
    return none;
  }
  const names = [...decision.http, ...decision.mcp].flatMap((t) => (t.secret ? [t.secret.name] : []));
  let loaded: Awaited<ReturnType<ClientSecretStore['load']>>;
  try {
    loaded = await deps.secrets.load(plan.clientId, names);
  } catch (err) {
    log.error(
      { reason: (err as Error).message },
      "the client's secrets could not be read: its tools are left out of this session",
    );
    return none;
  }
  const missing = new Map(loaded.problems.map((p) => [p.name, p.problem]));
  const usable = <T extends { name: string; secret?: { name: string } | undefined }>(t: T) => {
    const problem = t.secret ? missing.get(t.secret.name) : undefined;
    if (problem)
      log.warn(
        { tool: t.name, requires: t.secret!.name, reason: problem },
        'tool left out of the session: its secret is not usable',
      );
    return !problem;
  };
  const shared = {
    outbound: deps.outbound,
    signing: loaded.signing,
    secrets: loaded.values,
    onCall: deps.onCall,
  };
  const http = decision.http
    .filter(usable)
    .map((t) => httpTool(t, { ...shared, conversationId: deps.conversationId }));
  const mcp: McpToolset[] = decision.mcp.filter(usable).map((s) => mcpToolset(s, { ...shared, log }));
  log.info(
    { tools: http.map((t) => t.name), mcp_servers: decision.mcp.map((s) => s.name), reason: decision.reason },
    'session tools',
  );
  return {
    entries: [...http, ...mcp.map((m) => m.toolset), endCall],
    close: async () => {
      await Promise.all(mcp.map((m) => m.close()));
    },
  };
}

/** A tool call as a transcript turn: what the model saw, never the secret or the raw answer. */
export function toolTurn(call: ToolCallRecord): Turn {
  const status = call.httpStatus ? `${call.status} (HTTP ${call.httpStatus})` : call.status;
  return {
    role: 'tool',
    content: `${call.tool} ${status} in ${call.latencyMs} ms: ${call.shown}`,
    turnId: randomUUID(),
    metadata: {
      tool: call.tool,
      tool_kind: call.kind,
      call_id: call.callId,
      arguments: call.arguments,
      status: call.status,
      ...(call.httpStatus ? { http_status: call.httpStatus } : {}),
      latency_ms: call.latencyMs,
      truncated: call.truncated,
    },
  };
}
