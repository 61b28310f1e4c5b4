import { initializeLogger, voice } from '@livekit/agents';
import type { Logger } from 'pino';
import { parseJobMetadata } from '../../src/agent/metadata.js';
import { createLLM } from '../../src/agent/models.js';
import { createRuntime, type WorkerRuntime } from '../../src/agent/runtime.js';
import { type PreparedSession, prepareSession } from '../../src/agent/session.js';
import { type Config, loadConfig } from '../../src/config.js';
import { OpenAIEmbedder } from '../../src/context/embeddings.js';
import { DIGEST_SYSTEM_PROMPT } from '../../src/context/summarize.js';
import type { DemoClient } from '../../src/stack/seed.js';
import type { LocalStack } from '../../src/stack/stack.js';
import type { ClientSettings } from '../../src/tenancy/client-settings.js';
import { type AfterSessionDeps, afterSessionDeps, afterSessionHandlers } from '../../src/work/background.js';
import { WorkRunner } from '../../src/work/runner.js';
import { captureLogs } from './logs.js';
import {
  type ChatRequestBody,
  echoResponder,
  messageText,
  type OpenAIServer,
  type Responder,
  startOpenAIServer,
} from './openai-server.js';
import { startTestStack } from './stack.js';

/**
 * The after-session bed: the local stack seeded with the stand-in's embedder, the OpenAI stand-in
 * as the session's model, and runtimes wired as the worker wires them (a job process's, and the
 * main process's runner over the same platform queue).
 */
export interface AfterSessionBed {
  stack: LocalStack;
  openai: OpenAIServer;
  config: Config;
  env: Record<string, string>;
  runtime(extra?: Record<string, string>): WorkerRuntime;
  stop(): Promise<void>;
}

export async function startAfterSessionBed(extraEnv: Record<string, string> = {}): Promise<AfterSessionBed> {
  initializeLogger({ pretty: false, level: 'silent' });
  const openai = await startOpenAIServer();
  const stack = await startTestStack({
    embedder: new OpenAIEmbedder({ apiKey: 'sk-loopback', baseURL: openai.baseURL }),
  });
  const env = {
    PLATFORM_SUPABASE_URL: stack.platform.url,
    PLATFORM_SUPABASE_SERVICE_ROLE_KEY: stack.platform.serviceRoleKey,
    OPENAI_API_KEY: 'sk-loopback',
    OPENAI_BASE_URL: openai.baseURL,
    CONTEXT_BUDGET_MS: '2000',
    TRANSCRIPT_GRACE_MS: '10000',
    // Each runtime caches client records: a settings change must reach the next session quickly.
    CLIENT_CACHE_TTL_MS: '1',
    // Clients' signing secrets are stored encrypted with it; the client endpoints are on loopback.
    SECRETS_KEY: 'c2lkZWtpY2stdGVzdC1zZWNyZXRzLWtleS0zMmJ5dGU=',
    OUTBOUND_ALLOWLIST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    ...extraEnv,
  };
  const config = loadConfig(env);
  return {
    stack,
    openai,
    config,
    env,
    runtime: (extra = {}) => createRuntime(loadConfig({ ...env, ...extra }), captureLogs().log),
    async stop() {
      await Promise.all([stack.stop(), openai.close()]);
    },
  };
}

/** Stores a client's settings as `sidekick clients settings set` does (the whole object). */
export async function setSettings(stack: LocalStack, clientId: string, settings: Partial<ClientSettings>) {
  await stack.platform.sql.query('UPDATE clients SET settings = $2 WHERE id = $1', [
    clientId,
    JSON.stringify(settings),
  ]);
}

export function metadataFor(
  client: Pick<DemoClient, 'clientId' | 'agentSlug'>,
  extra: Record<string, unknown> = {},
) {
  return parseJobMetadata(
    JSON.stringify({ client_id: client.clientId, agent_slug: client.agentSlug, ...extra }),
  );
}

/** A text session as `sidekick chat` runs one: each line a user turn; closed at the end (turns flushed, post-session queued). */
export async function converse(
  runtime: WorkerRuntime,
  client: Pick<DemoClient, 'clientId' | 'agentSlug'>,
  lines: readonly string[],
  opts: { userId?: string | null; log?: Logger; sessionId?: string; lease?: boolean } = {},
): Promise<{ prepared: PreparedSession; closed: Awaited<ReturnType<PreparedSession['close']>> }> {
  const prepared = await prepareSession(
    runtime,
    metadataFor(client, opts.userId ? { user_id: opts.userId } : {}),
    opts.log ?? runtime.log,
    { ...(opts.sessionId ? { sessionId: opts.sessionId } : {}), ...(opts.lease ? { lease: true } : {}) },
  );
  const session = new voice.AgentSession({ llm: createLLM(runtime.config) });
  prepared.attach(session);
  await session.start({ agent: prepared.agent });
  for (const line of lines) await session.run({ userInput: line }).wait();
  await session.close();
  const closed = await prepared.close();
  return { prepared, closed };
}

/** The main process's runner over the runtime's queue, with every after-session handler wired as the worker wires them. */
export function runnerFor(
  runtime: WorkerRuntime,
  opts: { leaseSeconds?: number; deps?: AfterSessionDeps } = {},
) {
  const { deps, ...rest } = opts;
  return new WorkRunner({
    queue: runtime.work,
    handlers: afterSessionHandlers(runtime, deps ?? afterSessionDeps(runtime)),
    log: runtime.log,
    backoffSeconds: () => 1,
    ...rest,
  });
}

/** Whether a chat request is the post-session digest (its system prompt is the digest's). */
export function isDigestRequest(body: ChatRequestBody): boolean {
  return messageText(body.messages[0] ?? { role: 'system' }).startsWith(DIGEST_SYSTEM_PROMPT.slice(0, 60));
}

/**
 * The stand-in model: digest requests get what `digest` returns (as JSON), given the transcript the
 * worker sent; every other request (the conversation itself) is echoed.
 */
export function digestResponder(digest: (transcript: string, body: ChatRequestBody) => unknown): Responder {
  return (body) => {
    if (!isDigestRequest(body)) return echoResponder(body);
    const user = messageText(body.messages[1] ?? { role: 'user' });
    return JSON.stringify(digest(user.slice(user.indexOf('Transcript:\n') + 12), body));
  };
}
