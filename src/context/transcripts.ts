import { randomUUID } from 'node:crypto';
import pRetry from 'p-retry';
import type { Logger } from 'pino';
import { findSidekick } from '../tenancy/sidekicks.js';
import { isRetryableDbError } from '../tenancy/supabase.js';
import type { TenantQuery } from '../tenancy/tenant-query.js';
import type { Embedder } from './embeddings.js';
import { vectorLiteral } from './embeddings.js';

export type TurnRole = 'user' | 'assistant' | 'system' | 'tool';

export interface Turn {
  role: TurnRole;
  content: string;
  /** Identifies the turn; generated when absent. Retries of one turn never create a second row. */
  turnId?: string;
  metadata?: Record<string, unknown>;
  /** The content's vector when it is already known (the turn's context lookup embedded it): not embedded again. */
  embedding?: number[] | undefined;
}

export interface TranscriptStoreOptions {
  /**
   * Where the client's data lives now. Asked again before every attempt, so that a client whose
   * tier move switched databases mid-session has its held-back turns written to the new place.
   */
  resolveDb: () => Promise<TenantQuery>;
  /** Called when a write was refused or failed, e.g. to drop a cached platform record. */
  onWriteFailure?: (err: Error) => void;
  embedder: Embedder;
  /**
   * `agentId` may be unknown (a session started while the database was down): found by slug.
   * `created`: the conversation row exists already (session start claimed it).
   */
  conversation: {
    id: string;
    created?: boolean;
    agentId?: string | undefined;
    agentSlug?: string;
    userId: string | null;
  };
  log: Logger;
  batchSize: number;
  /** Turns held in memory at most; beyond it the oldest are dropped (and counted). */
  maxBuffered: number;
  /** After close(), how long unwritten turns keep being retried before they are dropped. */
  graceMs: number;
  /**
   * A user turn waits this long for the reply that follows it, so that both rows of the exchange
   * go in one request (and the reply's embedding is the only one asked for). Default 30 s.
   */
  replyWaitMs?: number;
  retry?: { minMs: number; maxMs: number };
  /** The turn as it is to be stored (PII masked: context/redaction.ts); runs first in add(). */
  redact?: (turn: Turn) => Turn;
  /**
   * Takes what close() could not write within the grace period somewhere durable (work/spool.ts),
   * to be written later; true when it did. Without it, or when it fails, those turns are dropped.
   */
  spool?: (rows: readonly SpooledTurn[], conversation: SpooledConversation) => Promise<boolean>;
}

/** A turn close() could not write: the row as it would have been written (no embedding). */
export type SpooledTurn = Omit<PendingRow, 'embedding'>;
export interface SpooledConversation {
  id: string;
  created: boolean;
  agentId: string | undefined;
  agentSlug: string | undefined;
  userId: string | null;
}

export interface TranscriptStats {
  written: number;
  pending: number;
  dropped: number;
  /** Handed to the spool at close(): written later, not lost. */
  spooled: number;
  failedAttempts: number;
}

interface PendingRow {
  id: string;
  role: TurnRole;
  content: string;
  turn_id: string;
  metadata: Record<string, unknown>;
  created_at: string;
  /** Computed once, on the first attempt that could; retries reuse it. */
  embedding?: number[];
}

/** The database refused these rows for good (bad data, a broken reference): retrying cannot help. */
class RejectedWriteError extends Error {}

/** A failed write, retried or final by the one rule (isRetryableDbError). */
function writeError(what: string, res: { error: { message: string; code?: string }; status: number }): Error {
  const code = res.error.code || undefined;
  const message = `${what}: ${res.error.message}${code ? ` (${code})` : ''}`;
  return isRetryableDbError(res.error, res.status) ? new Error(message) : new RejectedWriteError(message);
}

/**
 * Writes each turn to conversation_transcripts (with its embedding) off the hot path: add() only
 * queues; a background loop writes in batches, creating the conversation row first, and retries
 * with backoff while the database is unreachable or refuses writes (a tier move fences them).
 * A user turn is held until the reply that answers it (at most `replyWaitMs`), so one exchange is
 * one request; its vector, when the turn's lookup already made it, is stored as given.
 * Every row carries an id made here and is written with ON CONFLICT DO NOTHING, so a retry after a
 * lost reply never duplicates a turn. close() flushes, retrying for `graceMs`; what is still
 * unwritten then goes to the spool (written later, by id, so exactly once), or without one is
 * dropped, counted and logged (without its text).
 */
export class TranscriptStore {
  private readonly queue: PendingRow[] = [];
  /** The latest user turn, waiting for its reply. */
  private held: { row: PendingRow; timer: NodeJS.Timeout } | undefined;
  private conversationCreated: boolean;
  private conversation: string;
  private agentId: string | undefined;
  /** Turns keep their spoken order even when two arrive within one millisecond. */
  private lastCreatedMs = 0;
  private loop: Promise<void> | undefined;
  private closing = false;
  private readonly abort = new AbortController();
  readonly stats: TranscriptStats = { written: 0, pending: 0, dropped: 0, spooled: 0, failedAttempts: 0 };

  constructor(private readonly opts: TranscriptStoreOptions) {
    this.agentId = opts.conversation.agentId;
    this.conversation = opts.conversation.id;
    this.conversationCreated = opts.conversation.created ?? false;
    if (!this.agentId && !opts.conversation.agentSlug) {
      throw new Error('TranscriptStore needs the conversation agentId or agentSlug');
    }
  }

  add(turn: Turn): void {
    if (this.opts.redact) turn = this.opts.redact(turn);
    if (this.closing) {
      this.opts.log.warn({ role: turn.role }, 'turn added after the transcript store closed; dropped');
      this.stats.dropped++;
      return;
    }
    this.lastCreatedMs = Math.max(Date.now(), this.lastCreatedMs + 1);
    const row: PendingRow = {
      id: randomUUID(),
      role: turn.role,
      content: turn.content,
      turn_id: turn.turnId ?? randomUUID(),
      metadata: turn.metadata ?? {},
      created_at: new Date(this.lastCreatedMs).toISOString(),
      ...(turn.embedding ? { embedding: turn.embedding } : {}),
    };
    // A user turn is followed by its reply; anything else (a greeting, a second user turn) is not
    // waited for: what was held goes first, in spoken order.
    const released = this.release();
    if (turn.role === 'user') {
      const timer = setTimeout(() => {
        this.release();
        this.kick();
      }, this.opts.replyWaitMs ?? 30_000);
      timer.unref();
      this.held = { row, timer };
      this.stats.pending = this.queue.length + 1;
      if (released) this.kick();
      return;
    }
    this.enqueue(row);
    this.kick();
  }

  /** The held user turn joins the queue; false when there was none. */
  private release(): boolean {
    if (!this.held) return false;
    clearTimeout(this.held.timer);
    const { row } = this.held;
    this.held = undefined;
    this.enqueue(row);
    return true;
  }

  private enqueue(row: PendingRow): void {
    this.queue.push(row);
    if (this.queue.length > this.opts.maxBuffered) {
      const overflow = this.queue.splice(0, this.queue.length - this.opts.maxBuffered);
      this.stats.dropped += overflow.length;
      this.opts.log.error({ dropped: overflow.length }, 'transcript buffer full; oldest turns dropped');
    }
    this.stats.pending = this.queue.length;
  }

  /** Resolves when everything added so far has been written (or close() gave up on it). */
  async flush(): Promise<void> {
    this.release();
    this.kick();
    while (this.loop) await this.loop;
  }

  /** Flushes, retrying for the grace period; then spools (or drops) what is left. Returns the final stats. */
  async close(): Promise<TranscriptStats> {
    this.closing = true;
    const timer = setTimeout(() => this.abort.abort(), this.opts.graceMs);
    try {
      await this.flush();
    } finally {
      clearTimeout(timer);
    }
    if (this.queue.length && (await this.toSpool())) {
      this.stats.spooled += this.queue.length;
      this.queue.length = 0;
    }
    if (this.queue.length) {
      this.stats.dropped += this.queue.length;
      this.opts.log.error(
        { dropped: this.queue.length, conversation_id: this.conversation },
        'transcript turns could not be written within the grace period; dropped',
      );
      this.queue.length = 0;
    }
    this.stats.pending = 0;
    return { ...this.stats };
  }

  private async toSpool(): Promise<boolean> {
    const rows = this.queue.map(({ embedding: _, ...row }) => row);
    const conversation = {
      id: this.conversation,
      created: this.conversationCreated,
      agentId: this.agentId,
      agentSlug: this.opts.conversation.agentSlug,
      userId: this.opts.conversation.userId,
    };
    try {
      return (await this.opts.spool?.(rows, conversation)) ?? false;
    } catch (err) {
      this.opts.log.error({ reason: (err as Error).message }, 'transcript spool failed');
      return false;
    }
  }

  private kick(): void {
    if (this.loop || this.queue.length === 0) return;
    this.loop = this.drain().finally(() => {
      this.loop = undefined;
      // Turns added while the last batch was in flight.
      if (this.queue.length && !this.abort.signal.aborted) this.kick();
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length && !this.abort.signal.aborted) {
      const batch = this.queue.slice(0, this.opts.batchSize);
      const outcome = await this.writeWithRetry(batch);
      if (outcome === 'rejected' && batch.length > 1) {
        // One bad row must not sink the others: write them one by one, drop only the bad ones.
        for (const row of batch) {
          if ((await this.writeWithRetry([row])) === 'aborted') return;
          this.remove([row]);
        }
      } else if (outcome === 'aborted') {
        return; // close() counts what is left
      } else {
        this.remove(batch);
      }
    }
  }

  /**
   * Takes rows out by identity, not position: while a batch was in flight, an overflow may have dropped
   * the oldest queued turns, and those can be the batch's own.
   */
  private remove(rows: PendingRow[]): void {
    const done = new Set(rows);
    const kept = this.queue.filter((r) => !done.has(r));
    this.queue.splice(0, this.queue.length, ...kept);
    this.stats.pending = this.queue.length;
  }

  private async writeWithRetry(rows: PendingRow[]): Promise<'written' | 'rejected' | 'aborted'> {
    try {
      const written = await pRetry(() => this.write(rows), {
        retries: Number.POSITIVE_INFINITY,
        minTimeout: this.opts.retry?.minMs ?? 200,
        maxTimeout: this.opts.retry?.maxMs ?? 5000,
        randomize: true,
        signal: this.abort.signal,
        shouldRetry: ({ error }) => !(error instanceof RejectedWriteError),
        onFailedAttempt: ({ error, attemptNumber }) => {
          if (error instanceof RejectedWriteError) return;
          this.stats.failedAttempts++;
          this.opts.onWriteFailure?.(error);
          this.opts.log.warn(
            { attempt: attemptNumber, reason: error.message, pending: this.queue.length },
            'transcript write failed; will retry',
          );
        },
      });
      this.stats.written += written;
      return 'written';
    } catch (err) {
      if (!(err instanceof RejectedWriteError)) return 'aborted';
      if (rows.length === 1) {
        this.stats.dropped++;
        this.opts.log.error(
          { reason: err.message, turn_id: rows[0]!.turn_id },
          'transcript turn rejected by the database; dropped',
        );
      }
      return 'rejected';
    }
  }

  /** Returns how many rows it wrote: a row the overflow dropped during an earlier attempt is skipped. */
  private async write(attempted: PendingRow[]): Promise<number> {
    const batch = attempted.filter((r) => this.queue.includes(r));
    if (!batch.length) return 0;
    const db = await this.opts.resolveDb();
    const { conversation } = this.opts;
    const agentId = this.agentId ?? (await this.findAgent(db));
    if (!this.conversationCreated) await this.createConversation(db, agentId);
    await this.embed(batch);
    const rows = batch.map(({ embedding, ...row }) => ({
      ...row,
      conversation_id: this.conversation,
      agent_id: agentId,
      user_id: conversation.userId,
      embeddings: embedding ? vectorLiteral(embedding) : null,
    }));
    const res = await db
      .from('conversation_transcripts')
      .upsert(rows, { onConflict: 'id', ignoreDuplicates: true });
    if (res.error) throw writeError(`writing ${rows.length} transcript turns`, res);
    return rows.length;
  }

  /**
   * Creates the conversation row, or finds it is this sidekick's and user's already. Session start
   * checks that, except when the database was down then: an id that turns out to be another
   * client's, sidekick's or user's gets a new conversation instead, so no turn is lost to it.
   */
  private async createConversation(db: TenantQuery, agentId: string): Promise<void> {
    const { userId } = this.opts.conversation;
    const res = await db
      .from('conversations')
      .upsert(
        { id: this.conversation, agent_id: agentId, user_id: userId },
        { onConflict: 'id', ignoreDuplicates: true },
      )
      .select('id');
    if (res.error) throw writeError('creating the conversation', res);
    if (!res.data?.length) {
      const found = await db
        .from('conversations')
        .select('agent_id, user_id')
        .eq('id', this.conversation)
        .maybeSingle();
      if (found.error) throw writeError('reading the conversation', found);
      if (!found.data || found.data.agent_id !== agentId || (found.data.user_id ?? null) !== userId) {
        const fresh = randomUUID();
        this.opts.log.warn(
          { conversation_id: this.conversation, new_conversation_id: fresh },
          "the conversation to continue is not this sidekick's and user's; its turns go to a new conversation",
        );
        this.conversation = fresh;
        return this.createConversation(db, agentId);
      }
    }
    this.conversationCreated = true;
  }

  /** Where the turns go: the session's conversation (or the new one that replaced a foreign id). */
  get conversationId(): string {
    return this.conversation;
  }

  private async findAgent(db: TenantQuery): Promise<string> {
    const slug = this.opts.conversation.agentSlug!;
    // A lookup that got no answer is retried like a write; a missing sidekick is final.
    const found = await findSidekick(db, { slug });
    if (!found) throw new RejectedWriteError(`sidekick ${slug} does not exist in the client's database`);
    this.agentId = found.id;
    return this.agentId;
  }

  /**
   * Embeds the rows that have no embedding yet. Embeddings make turns findable later; a turn
   * without one is still worth keeping, so a failure here stores it without.
   */
  private async embed(batch: PendingRow[]): Promise<void> {
    const missing = batch.filter((r) => !r.embedding);
    if (!missing.length) return;
    try {
      const vectors = await this.opts.embedder.embed(missing.map((r) => r.content));
      missing.forEach((row, i) => {
        row.embedding = vectors[i];
      });
    } catch (err) {
      this.opts.log.warn(
        { reason: (err as Error).message },
        'embedding transcript turns failed; stored without',
      );
    }
  }
}
