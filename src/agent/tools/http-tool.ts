/**
 * One HTTP tool of a client as an agents-js `llm.tool`: the model's arguments go as a signed JSON
 * body to the client's endpoint through the outbound guard; what comes back is cut to what the
 * config lets the model see. A failure (timeout, refused address, 5xx) becomes a short ToolError
 * the model can talk about; the session goes on. Every call is reported to `onCall` (for the
 * transcript), without the secret.
 */

import { llm } from '@livekit/agents';
import { type OutboundClient, OutboundError, type OutboundResponse } from '../../outbound/index.js';
import { argumentProblems } from './arguments.js';
import type { HttpTool } from './config.js';

/** invalid_arguments: the model's arguments did not fit the tool's parameters; nothing was sent. */
export type ToolCallStatus = 'ok' | 'error' | 'timeout' | 'refused' | 'failed' | 'invalid_arguments';

/** What the transcript keeps of one call. */
export interface ToolCallRecord {
  tool: string;
  kind: 'http' | 'mcp' | 'built_in';
  callId: string;
  arguments: Record<string, unknown>;
  status: ToolCallStatus;
  /** The endpoint's HTTP status, when it answered. */
  httpStatus?: number;
  latencyMs: number;
  /** What the model was given: the visible part of the answer, or the error. */
  shown: string;
  /** The answer was longer than what was read or shown. */
  truncated: boolean;
}

export interface ToolDeps {
  outbound: OutboundClient;
  /** The client's signing secret. */
  signing: string;
  /** Secret values by name (only those this session's tools name). */
  secrets: ReadonlyMap<string, string>;
  conversationId: () => string;
  onCall: (call: ToolCallRecord) => void;
}

/** Response bytes read from an endpoint at most (the model sees far less: response.max_chars). */
const MAX_RESPONSE_BYTES = 256 * 1024;

/** Takes every secret value out of text the model (and the transcript) will see. */
export function scrub(text: string, secrets: Iterable<string>): string {
  let out = text;
  for (const s of secrets) if (s.length >= 6) out = out.split(s).join('[redacted]');
  return out;
}

function cut(text: string, max: number): { text: string; cut: boolean } {
  return text.length > max ? { text: `${text.slice(0, max)}…`, cut: true } : { text, cut: false };
}

/** The part of a response the config lets the model see. */
export function visibleResponse(
  res: Pick<OutboundResponse, 'body' | 'truncated'>,
  view: HttpTool['response'],
): { text: string; truncated: boolean } {
  const raw = res.body.toString('utf8');
  let text = raw;
  if (view.field && !res.truncated) {
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      value = undefined;
    }
    for (const key of view.field.split('.')) {
      value =
        value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
    }
    text =
      value === undefined
        ? `(the answer has no field ${view.field})`
        : typeof value === 'string'
          ? value
          : JSON.stringify(value);
  }
  const shown = cut(text, view.max_chars);
  return { text: shown.text, truncated: shown.cut || res.truncated };
}

function shortError(
  tool: string,
  err: OutboundError,
  timeoutMs: number,
): { status: ToolCallStatus; message: string } {
  switch (err.kind) {
    case 'timeout':
      return {
        status: 'timeout',
        message: `The ${tool} service did not answer within ${Math.round(timeoutMs / 100) / 10} seconds.`,
      };
    case 'refused':
    case 'invalid_request':
      return {
        status: 'refused',
        message: `The ${tool} service cannot be reached from here (its address is not allowed).`,
      };
    default:
      return { status: 'failed', message: `The ${tool} service could not be reached.` };
  }
}

/** agents-js JSON-encodes what a tool returns: JSON text goes back as its value, not as a quoted string. */
export function asToolOutput(shown: string): unknown {
  try {
    return JSON.parse(shown);
  } catch {
    return shown;
  }
}

/**
 * One call of a tool, as a session makes it and as `sidekick agents tools test` makes it: the
 * record of it (for the transcript) and what the model gets, or the short error it gets instead.
 */
export async function callHttpTool(
  spec: HttpTool,
  args: Record<string, unknown>,
  deps: Omit<ToolDeps, 'onCall'>,
  call: { callId: string; signal?: AbortSignal; onSlow?: () => void },
): Promise<{ record: ToolCallRecord; output?: unknown; error?: string }> {
  const secretValue = spec.secret ? deps.secrets.get(spec.secret.name) : undefined;
  const secretHeaders =
    spec.secret && secretValue ? { [spec.secret.header]: `${spec.secret.prefix}${secretValue}` } : undefined;
  const started = performance.now();
  const body = JSON.stringify({
    tool: spec.name,
    call_id: call.callId,
    conversation_id: deps.conversationId(),
    arguments: args,
  });
  const done = (
    r: Omit<ToolCallRecord, 'tool' | 'kind' | 'callId' | 'arguments' | 'latencyMs'>,
  ): ToolCallRecord => ({
    tool: spec.name,
    kind: 'http',
    callId: call.callId,
    arguments: args,
    latencyMs: Math.round(performance.now() - started),
    ...r,
  });
  const problems = argumentProblems(spec.parameters, args);
  if (problems.length > 0) {
    const message = `The ${spec.name} tool's arguments do not fit its parameters (${problems.join('; ')}); nothing was sent.`;
    return {
      record: done({ status: 'invalid_arguments', shown: message, truncated: false }),
      error: message,
    };
  }
  // The filler covers a slow call: said once, only if the answer is not back by then.
  const slow = spec.filler && call.onSlow ? setTimeout(call.onSlow, spec.filler.after_ms) : undefined;
  let res: OutboundResponse;
  try {
    res = await deps.outbound.request(spec.endpoint.url, {
      method: spec.endpoint.method,
      headers: spec.endpoint.headers,
      ...(secretHeaders ? { secretHeaders } : {}),
      body,
      timeoutMs: spec.timeout_ms,
      maxBytes: MAX_RESPONSE_BYTES,
      signWith: deps.signing,
      ...(call.signal ? { signal: call.signal } : {}),
    });
  } catch (err) {
    if (!(err instanceof OutboundError)) throw err;
    const { status, message } = shortError(spec.name, err, spec.timeout_ms);
    return { record: done({ status, shown: message, truncated: false }), error: message };
  } finally {
    clearTimeout(slow);
  }
  const seen = visibleResponse(res, spec.response);
  const shown = scrub(seen.text, secretValue ? [secretValue] : []);
  if (res.status >= 500) {
    const message = `The ${spec.name} service failed (HTTP ${res.status}).`;
    return {
      record: done({ status: 'error', httpStatus: res.status, shown: message, truncated: false }),
      error: message,
    };
  }
  if (res.status >= 400) {
    // A client error usually says what is wrong ("no such order"): the model may repeat it.
    const message = `The ${spec.name} service refused the request (HTTP ${res.status}): ${shown}`;
    return {
      record: done({ status: 'error', httpStatus: res.status, shown: message, truncated: seen.truncated }),
      error: message,
    };
  }
  return {
    record: done({ status: 'ok', httpStatus: res.status, shown, truncated: seen.truncated }),
    output: asToolOutput(shown),
  };
}

export function httpTool(spec: HttpTool, deps: ToolDeps): llm.FunctionTool {
  return llm.tool({
    name: spec.name,
    description: spec.description,
    // JSON Schema goes to the model unchanged; agents-js validates only zod schemas.
    parameters: spec.parameters as object,
    execute: async (args: Record<string, unknown>, { ctx, toolCallId, abortSignal }) => {
      const { record, output, error } = await callHttpTool(spec, args ?? {}, deps, {
        callId: toolCallId,
        signal: abortSignal,
        onSlow: () => {
          try {
            ctx.session.say(spec.filler!.text);
          } catch {
            // A session that is closing says nothing more.
          }
        },
      });
      deps.onCall(record);
      if (error !== undefined) throw new llm.ToolError(error);
      return output;
    },
  });
}
