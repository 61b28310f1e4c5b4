import type { Logger } from 'pino';
import type { ClientConnectionManager } from '../tenancy/connections.js';
import type { TenantQuery } from '../tenancy/tenant-query.js';
import { asClientId } from '../tenancy/types.js';
import type { WorkItem, WorkQueue } from './queue.js';
import { dbFailure, GiveUp, type WorkHandler } from './runner.js';
import { type PostSessionPayload, postSessionDedupeKey, postSessionSchema } from './session-payload.js';
import { type SigningSecrets, type WebhookTransport, WebhookUnreachableError } from './webhook-outbound.js';

/**
 * The end-of-session report POSTed to the client's `webhook_url` (clients.settings), signed with
 * the client's signing secret as tool calls are (X-Sidekick-Signature, src/outbound), one delivery
 * per session: queued after the post-session work (so it carries the summary), retried with
 * backoff on no answer, a timeout, 408, 429 or 5xx, given up after WEBHOOK_ATTEMPTS or at once
 * when the address is refused (private, loopback, metadata) or the endpoint answers another 4xx,
 * with the reason kept on the work item (`sidekick webhooks list`). The body is built at delivery
 * time from the client's database, so the platform never keeps a copy of the transcript; every
 * attempt of one delivery carries the same event id (X-Sidekick-Event-Id) for the endpoint to
 * drop a repeat.
 */

export const WEBHOOK = 'webhook';
export const WEBHOOK_ATTEMPTS = 8;
export const WEBHOOK_EVENT = 'session.ended';
export const EVENT_ID_HEADER = 'x-sidekick-event-id';

/** What the endpoint receives (the README documents it). */
export interface SessionReport {
  type: typeof WEBHOOK_EVENT;
  /** The delivery's id: the same on every attempt of it; a redelivery has its own. */
  event_id: string;
  client_id: string;
  conversation_id: string;
  sidekick: { id: string | null; slug: string };
  user_id: string | null;
  started_at: string;
  ended_at: string;
  duration_seconds: number;
  /** null when no summary was made (no user turn, no model, the conversation is gone). */
  title: string | null;
  summary: string | null;
  /** The session's stored turns (redacted when the client redacts), only with webhook_transcript on. */
  transcript?: Array<{ role: string; content: string; at: string }>;
  /** Session usage (minutes, tokens, characters); optional: receivers must not rely on it. */
  usage?: Record<string, number>;
}

export function enqueueWebhook(queue: WorkQueue, p: PostSessionPayload): Promise<WorkItem> {
  return queue.enqueue({
    kind: WEBHOOK,
    clientId: p.client_id,
    dedupeKey: postSessionDedupeKey(p),
    payload: p,
    maxAttempts: WEBHOOK_ATTEMPTS,
  });
}

/** A new delivery of a report (`sidekick webhooks redeliver`), with its own event id. */
export function redeliverWebhook(queue: WorkQueue, item: WorkItem): Promise<WorkItem> {
  return queue.enqueue({
    kind: WEBHOOK,
    clientId: item.client_id,
    dedupeKey: `redeliver:${item.id}:${Date.now()}`,
    payload: { ...item.payload, redelivery_of: item.id },
    maxAttempts: WEBHOOK_ATTEMPTS,
  });
}

export interface WebhookDeps {
  connections: ClientConnectionManager;
  transport: WebhookTransport;
  secrets: SigningSecrets;
  log: Logger;
  /** Per attempt (connect, redirects, reading the answer). */
  timeoutMs?: number;
}

const MAX_REPORT_TURNS = 1000;

export function webhookHandler(deps: WebhookDeps): WorkHandler {
  return {
    kind: WEBHOOK,
    async run(item, signal) {
      const parsed = postSessionSchema.safeParse(item.payload);
      if (!parsed.success) throw new GiveUp(`unreadable webhook payload: ${parsed.error.issues[0]?.message}`);
      const p = parsed.data;
      const clientId = asClientId(p.client_id);
      const { db, settings } = await deps.connections.forClient(clientId);
      if (!settings.webhook_url) throw new GiveUp('the client has no webhook_url any more');
      const secret = await deps.secrets.signingSecret(clientId);
      if (!secret) throw new GiveUp('the client has no signing secret to sign the report with');
      const report = await buildReport(db, p, item.id, settings.webhook_transcript);
      const body = JSON.stringify(report);
      let res: { status: number };
      try {
        res = await deps.transport.post(settings.webhook_url, body, {
          signingSecret: secret,
          headers: {
            [EVENT_ID_HEADER]: item.id,
            'x-sidekick-event': WEBHOOK_EVENT,
            'x-sidekick-delivery-attempt': String(item.attempts),
          },
          timeoutMs: deps.timeoutMs ?? 10_000,
          signal,
        });
      } catch (err) {
        // Refused addresses and bad URLs never get better by waiting; no answer may.
        if (err instanceof WebhookUnreachableError && !err.retryable) throw new GiveUp(err.message);
        throw err;
      }
      const host = new URL(settings.webhook_url).host;
      if (res.status >= 200 && res.status < 300) return { status: res.status, host, attempt: item.attempts };
      const reason = `${host} answered HTTP ${res.status}`;
      if (res.status === 408 || res.status === 429 || res.status >= 500) throw new Error(reason);
      throw new GiveUp(`${reason}: the endpoint refused the report`);
    },
  };
}

/** The report of one session, as its client's database has it now. */
export async function buildReport(
  db: TenantQuery,
  p: PostSessionPayload,
  eventId: string,
  withTranscript: boolean,
): Promise<SessionReport> {
  const conv = await db.from('conversations').select('*').eq('id', p.conversation_id).maybeSingle();
  if (conv.error) throw dbFailure('reading the conversation', conv.error, conv.status);
  const row = (conv.data ?? null) as {
    title?: string | null;
    summary?: string | null;
    metadata?: unknown;
  } | null;
  const summary =
    row?.summary ?? ((row?.metadata as { summary?: unknown } | null)?.summary as string | undefined) ?? null;
  const started = Date.parse(p.started_at);
  const ended = Date.parse(p.ended_at);
  const report: SessionReport = {
    type: WEBHOOK_EVENT,
    event_id: eventId,
    client_id: p.client_id,
    conversation_id: p.conversation_id,
    sidekick: { id: p.sidekick_id, slug: p.sidekick_slug },
    user_id: p.user_id,
    started_at: p.started_at,
    ended_at: p.ended_at,
    duration_seconds: Math.max(0, Math.round((ended - started) / 1000)),
    title: row?.title ?? null,
    summary: typeof summary === 'string' ? summary : null,
  };
  if (withTranscript) {
    const turns = await db
      .from('conversation_transcripts')
      .select('role, content, created_at')
      .eq('conversation_id', p.conversation_id)
      .gte('created_at', p.started_at)
      .order('created_at')
      .order('id')
      .limit(MAX_REPORT_TURNS);
    if (turns.error) throw dbFailure('reading the transcript', turns.error, turns.status);
    report.transcript = (
      (turns.data ?? []) as unknown as Array<{ role: string; content: string | null; created_at: string }>
    )
      .filter((t) => t.content)
      .map((t) => ({ role: t.role, content: t.content!, at: t.created_at }));
  }
  return report;
}
