import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { type Embedder, vectorLiteral } from '../context/embeddings.js';
import type { SpooledConversation, SpooledTurn } from '../context/transcripts.js';
import type { ClientConnectionManager } from '../tenancy/connections.js';
import { findSidekick } from '../tenancy/sidekicks.js';
import type { TenantQuery } from '../tenancy/tenant-query.js';
import { asClientId } from '../tenancy/types.js';
import type { WorkQueue } from './queue.js';
import { dbFailure, GiveUp, type WorkHandler } from './runner.js';

/**
 * Turns a session could not write before it ended (its client's database fenced by a tier move,
 * or down) are kept here rather than dropped: in the platform's work queue (kind
 * `transcript_spool`), or, when the platform does not answer either, in a local file that the
 * worker's main process moves into the queue once it does. A worker then writes them to the
 * client's database when it takes writes again. Rows keep the ids the session gave them and are
 * written with ON CONFLICT (id) DO NOTHING, so a replay that runs twice writes each turn once.
 * Spooled turns hold transcript text: the platform keeps them only until they are replayed, and
 * nothing here logs them.
 */

export const TRANSCRIPT_SPOOL = 'transcript_spool';

const turnSchema = z.object({
  id: z.string(),
  role: z.enum(['user', 'assistant', 'system', 'tool']),
  content: z.string(),
  turn_id: z.string(),
  metadata: z.record(z.string(), z.unknown()),
  created_at: z.string(),
});

const payloadSchema = z.object({
  client_id: z.string(),
  /** Top level, as in every work item about one user: erasure finds the item by it. */
  user_id: z.string().nullable().default(null),
  conversation: z.object({
    id: z.string(),
    created: z.boolean(),
    agentId: z.string().optional(),
    agentSlug: z.string().optional(),
    userId: z.string().nullable(),
  }),
  rows: z.array(turnSchema).min(1),
  /** Work to queue once the turns are in (the session's post-session job waits for them). */
  follow_up: z
    .object({
      kind: z.string(),
      dedupe_key: z.string(),
      payload: z.record(z.string(), z.unknown()),
      max_attempts: z.number().int().positive().optional(),
    })
    .optional(),
});
export type SpoolPayload = z.infer<typeof payloadSchema>;

export interface FollowUp {
  kind: string;
  dedupeKey: string;
  payload: Record<string, unknown>;
  maxAttempts?: number;
}

export class TranscriptSpool {
  constructor(
    private readonly opts: {
      queue: WorkQueue;
      /** Where spools go when the platform does not answer (created 0700; files 0600). */
      dir: string;
      log: Logger;
    },
  ) {}

  /** Keeps the rows durably; true unless both the queue and the local disk refused. */
  async spill(
    clientId: string,
    rows: readonly SpooledTurn[],
    conversation: SpooledConversation,
    followUp?: FollowUp,
  ): Promise<boolean> {
    if (!rows.length) return true;
    const payload: SpoolPayload = {
      client_id: clientId,
      user_id: conversation.userId,
      conversation: {
        id: conversation.id,
        created: conversation.created,
        ...(conversation.agentId ? { agentId: conversation.agentId } : {}),
        ...(conversation.agentSlug ? { agentSlug: conversation.agentSlug } : {}),
        userId: conversation.userId,
      },
      rows: [...rows],
      ...(followUp
        ? {
            follow_up: {
              kind: followUp.kind,
              dedupe_key: followUp.dedupeKey,
              payload: followUp.payload,
              ...(followUp.maxAttempts ? { max_attempts: followUp.maxAttempts } : {}),
            },
          }
        : {}),
    };
    // The first row's id names this spool everywhere: a second spill of the same rows is one item.
    const key = rows[0]!.id;
    try {
      const item = await this.opts.queue.enqueue({
        kind: TRANSCRIPT_SPOOL,
        clientId,
        dedupeKey: key,
        payload,
      });
      this.opts.log.warn(
        { spooled: rows.length, work_item: item.id, conversation_id: conversation.id },
        'transcript turns not yet written: kept in the platform work queue, written when the database takes them',
      );
      return true;
    } catch (err) {
      try {
        const file = await this.writeLocal(key, payload);
        this.opts.log.error(
          { spooled: rows.length, file, reason: (err as Error).message, conversation_id: conversation.id },
          'platform unreachable too: transcript turns kept in a local spool file until it answers',
        );
        return true;
      } catch (diskErr) {
        this.opts.log.error({ reason: (diskErr as Error).message }, 'local transcript spool failed');
        return false;
      }
    }
  }

  /** Moves local spool files into the work queue; returns how many. Stops at the first refusal. */
  async flushLocal(): Promise<number> {
    let names: string[];
    try {
      names = (await readdir(this.opts.dir)).filter((n) => n.endsWith('.json'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
    let moved = 0;
    for (const name of names.sort()) {
      const path = join(this.opts.dir, name);
      const parsed = payloadSchema.safeParse(JSON.parse(await readFile(path, 'utf8')));
      if (!parsed.success) {
        this.opts.log.error(
          { file: path, problem: parsed.error.issues[0]?.message },
          'unreadable spool file left in place',
        );
        continue;
      }
      await this.opts.queue.enqueue({
        kind: TRANSCRIPT_SPOOL,
        clientId: parsed.data.client_id,
        dedupeKey: parsed.data.rows[0]!.id,
        payload: parsed.data,
      });
      await unlink(path);
      moved++;
    }
    if (moved)
      this.opts.log.info({ files: moved }, 'local transcript spool moved to the platform work queue');
    return moved;
  }

  private async writeLocal(key: string, payload: SpoolPayload): Promise<string> {
    await mkdir(this.opts.dir, { recursive: true, mode: 0o700 });
    const path = join(this.opts.dir, `${payload.client_id}.${key}.json`);
    const tmp = `${path}.${randomUUID()}.tmp`;
    await writeFile(tmp, JSON.stringify(payload), { mode: 0o600 });
    await rename(tmp, path);
    return path;
  }
}

/** A refusal that retrying cannot fix, or one that passes (fence, outage): the runner retries those. */

/** Writes spooled turns into their client's database; then queues what waited for them. */
export function transcriptSpoolHandler(deps: {
  connections: ClientConnectionManager;
  embedder: Embedder;
  queue: WorkQueue;
  log: Logger;
  batchSize?: number;
}): WorkHandler {
  return {
    kind: TRANSCRIPT_SPOOL,
    async run(item) {
      const parsed = payloadSchema.safeParse(item.payload);
      if (!parsed.success) throw new GiveUp(`unreadable spool payload: ${parsed.error.issues[0]?.message}`);
      const p = parsed.data;
      const clientId = asClientId(p.client_id);
      // Looked up afresh on every attempt: the tier move that fenced the pool may have switched it.
      deps.connections.directory.invalidate(clientId);
      const { db } = await deps.connections.forClient(clientId);
      const agentId = p.conversation.agentId ?? (await agentOf(db, p.conversation.agentSlug));
      const conversationId = await claimConversation(db, p, agentId);
      const rows = p.rows;
      const vectors = await deps.embedder.embed(rows.map((r) => r.content)).catch((err: Error) => {
        deps.log.warn({ reason: err.message }, 'embedding spooled turns failed; stored without');
        return undefined;
      });
      const size = deps.batchSize ?? 100;
      for (let i = 0; i < rows.length; i += size) {
        const batch = rows.slice(i, i + size).map((row, j) => ({
          ...row,
          conversation_id: conversationId,
          agent_id: agentId,
          user_id: p.conversation.userId,
          embeddings: vectors?.[i + j] ? vectorLiteral(vectors[i + j]!) : null,
        }));
        const res = await db
          .from('conversation_transcripts')
          .upsert(batch, { onConflict: 'id', ignoreDuplicates: true });
        if (res.error) throw dbFailure(`writing ${batch.length} spooled turns`, res.error, res.status);
      }
      if (p.follow_up) {
        const payload = { ...p.follow_up.payload, conversation_id: conversationId };
        await deps.queue.enqueue({
          kind: p.follow_up.kind,
          clientId,
          dedupeKey: p.follow_up.dedupe_key,
          payload,
          ...(p.follow_up.max_attempts ? { maxAttempts: p.follow_up.max_attempts } : {}),
        });
      }
      return { written: rows.length, conversation_id: conversationId };
    },
  };
}

async function agentOf(db: TenantQuery, slug: string | undefined): Promise<string> {
  if (!slug) throw new GiveUp('spooled turns name no sidekick');
  const found = await findSidekick(db, { slug }).catch((err: Error) => {
    throw new Error(err.message);
  });
  if (!found) throw new GiveUp(`sidekick ${slug} does not exist in the client's database`);
  return found.id;
}

/**
 * The conversation the turns belong to: created when the session could not, kept when it is this
 * sidekick's and user's. An id that turns out to be someone else's gets a new conversation, whose
 * id is the first turn's (fixed, so a second replay writes to the same one).
 */
async function claimConversation(db: TenantQuery, p: SpoolPayload, agentId: string): Promise<string> {
  if (p.conversation.created) return p.conversation.id;
  for (const id of [p.conversation.id, p.rows[0]!.id]) {
    const userId = p.conversation.userId;
    const res = await db
      .from('conversations')
      .upsert({ id, agent_id: agentId, user_id: userId }, { onConflict: 'id', ignoreDuplicates: true })
      .select('id');
    if (res.error) throw dbFailure('creating the conversation', res.error, res.status);
    if (res.data?.length) return id;
    const found = await db.from('conversations').select('agent_id, user_id').eq('id', id).maybeSingle();
    if (found.error) throw dbFailure('reading the conversation', found.error, found.status);
    if (found.data && found.data.agent_id === agentId && (found.data.user_id ?? null) === userId) return id;
  }
  throw new GiveUp('neither the conversation nor its replacement could be claimed');
}
