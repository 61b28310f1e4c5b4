import type { Logger } from 'pino';
import type { TenantQuery } from '../tenancy/tenant-query.js';
import type { Embedder } from './embeddings.js';
import { vectorLiteral } from './embeddings.js';

export interface ContextBudgets {
  /** Time one turn's lookup may take, embedding included; what is late is left out. */
  lookupMs: number;
  /** Size of the context block handed to the LLM. */
  maxChars: number;
}

export interface RetrievalSettings {
  /** Document lookup happens only where the tier (and plan) allows RAG. */
  ragEnabled: boolean;
  matchCount: number;
  matchThreshold: number;
  recallCount: number;
}

export interface TurnQuery {
  query: string;
  agentSlug: string;
  userId?: string | undefined;
  /** The current conversation: recall looks at earlier ones only. */
  conversationId?: string | undefined;
  /** Aborted by the caller when the lookup is no longer wanted (a newer text superseded it). */
  signal?: AbortSignal | undefined;
}

/** cancelled: the caller aborted the lookup (it is not logged: nothing went wrong). */
export type LookupOutcome = 'ok' | 'skipped' | 'timeout' | 'error' | 'cancelled';

export interface DocumentMatch {
  id: string;
  document_id: string;
  content: string;
  relevance: number;
  title: string | null;
  source_url: string | null;
  chunk_index: number;
}

export interface RecallMatch {
  id: string;
  conversation_id: string;
  role: string;
  content: string;
  relevance: number;
  created_at: string;
}

export interface TurnContext {
  /** The text that was looked up. */
  query: string;
  /** The block added to the LLM's context for this turn only ('' when nothing was found). */
  text: string;
  /** Titles of the documents the block draws on. */
  documentTitles: string[];
  documents: DocumentMatch[];
  recall: RecallMatch[];
  outcomes: { documents: LookupOutcome; recall: LookupOutcome };
  /** The query's vector, when it was embedded: the transcript store keeps it with the user's turn. */
  embedding: number[] | undefined;
  elapsedMs: number;
}

export interface ContextManagerOptions {
  /**
   * Where the client's data lives. A function is asked again every turn, so a session outlives a
   * tier move (the directory answers from its cache, no round trip, within its TTL).
   */
  db: TenantQuery | (() => Promise<TenantQuery>);
  embedder: Embedder;
  settings: RetrievalSettings;
  budgets: ContextBudgets;
  log: Logger;
  now?: () => number;
}

class LookupTimeout extends Error {}
class LookupCancelled extends Error {}

/** PostgREST knows no such function (PGRST202), or its schema cache names one Postgres no longer has (42883). */
const isMissingFunction = (code: string | undefined) => code === 'PGRST202' || code === '42883';

/** One lookup RPC, cut off with the turn's budget; an error names the function. */
async function rpc(
  db: TenantQuery,
  signal: AbortSignal,
  fn: string,
  args: Record<string, unknown>,
): Promise<unknown> {
  const { data, error } = await db.rpc(fn, args).abortSignal(signal);
  if (error) {
    if (isMissingFunction(error.code)) throw new MissingRpcError(fn);
    throw new Error(`${fn}: ${error.message}`);
  }
  return data;
}

class MissingRpcError extends Error {
  constructor(readonly fn: string) {
    super(`${fn} does not exist in the client's database`);
  }
}

const SKIPPED: unique symbol = Symbol('skipped');

/**
 * What the sidekick knows for one turn: the sidekick's documents (RAG) and what this user said in
 * earlier conversations. (The user overview is read once per session, into the instructions.) The
 * query is embedded once, then one round trip (`turn_context`, migration 005) brings documents and
 * recall together; a database without that function is asked with the two older RPCs in parallel
 * (and is remembered, so later turns go straight there). Everything shares one time budget and is
 * cancelled at its end, or when the caller's signal aborts. A lookup that fails or is late is left
 * out and logged; the turn goes on. Shared and dedicated clients run the same code: the difference
 * stays in TenantQuery.
 */
export class ContextManager {
  private readonly now: () => number;
  /** The client's database has no turn_context: it predates migration 005. */
  private legacyRpcs = false;

  constructor(private readonly opts: ContextManagerOptions) {
    this.now = opts.now ?? (() => performance.now());
  }

  async retrieve(q: TurnQuery): Promise<TurnContext> {
    const started = this.now();
    const abort = new AbortController();
    const stopped = new Promise<never>((_, reject) => {
      const timer = setTimeout(() => {
        abort.abort();
        reject(new LookupTimeout());
      }, this.opts.budgets.lookupMs);
      const cancel = () => {
        abort.abort();
        reject(new LookupCancelled());
      };
      if (q.signal?.aborted) cancel();
      q.signal?.addEventListener('abort', cancel, { once: true });
      abort.signal.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          q.signal?.removeEventListener('abort', cancel);
        },
        { once: true },
      );
    });
    stopped.catch(() => {});
    const within = <T>(p: Promise<T>) => Promise.race([p, stopped]);

    const { settings } = this.opts;
    const wantDocuments = settings.ragEnabled;
    const wantRecall = q.userId !== undefined;
    let embedding: number[] | undefined;
    let documents: PromiseSettledResult<DocumentMatch[] | typeof SKIPPED> = {
      status: 'fulfilled',
      value: SKIPPED,
    };
    let recall: PromiseSettledResult<RecallMatch[] | typeof SKIPPED> = {
      status: 'fulfilled',
      value: SKIPPED,
    };

    if (wantDocuments || wantRecall) {
      const resolve = this.opts.db;
      const db = typeof resolve === 'function' ? within(resolve()) : Promise.resolve(resolve);
      db.catch(() => {});
      const vector = within(this.opts.embedder.embed([q.query], { signal: abort.signal }).then((v) => v[0]!));
      vector.then(
        (v) => {
          embedding = v;
        },
        () => {},
      );
      const both = within(Promise.all([db, vector]));
      if (!this.legacyRpcs) {
        const one = within(both.then(([d, e]) => this.turnContext(d, q, e, abort.signal)));
        const [settled] = await Promise.allSettled([one]);
        if (settled.status === 'fulfilled') {
          documents = { status: 'fulfilled', value: wantDocuments ? settled.value.documents : SKIPPED };
          recall = { status: 'fulfilled', value: wantRecall ? settled.value.recall : SKIPPED };
        } else if (settled.reason instanceof MissingRpcError) {
          this.legacyRpcs = true;
          this.opts.log.warn(
            { rpc: 'turn_context' },
            "the client's database predates migration 005 (turn_context): two lookup round trips per turn until it is migrated",
          );
        } else {
          if (wantDocuments) documents = settled;
          if (wantRecall) recall = settled;
        }
      }
      if (this.legacyRpcs) {
        [documents, recall] = await Promise.allSettled([
          wantDocuments
            ? within(both.then(([d, e]) => this.matchDocuments(d, q, e, abort.signal)))
            : Promise.resolve(SKIPPED),
          wantRecall
            ? within(both.then(([d, e]) => this.recall(d, q, e, abort.signal)))
            : Promise.resolve(SKIPPED),
        ]);
      }
    }
    abort.abort();

    const outcome = (name: string, r: PromiseSettledResult<unknown>): LookupOutcome => {
      if (r.status === 'fulfilled') return r.value === SKIPPED ? 'skipped' : 'ok';
      if (r.reason instanceof LookupCancelled) return 'cancelled';
      const late = r.reason instanceof LookupTimeout;
      this.opts.log.warn(
        {
          lookup: name,
          reason: late ? 'time budget exceeded' : String((r.reason as Error)?.message ?? r.reason),
        },
        late ? 'context lookup cut at its time budget' : 'context lookup failed; turn goes on without it',
      );
      return late ? 'timeout' : 'error';
    };
    const value = <T>(r: PromiseSettledResult<T | typeof SKIPPED>, empty: T): T =>
      r.status === 'fulfilled' && r.value !== SKIPPED ? (r.value as T) : empty;

    const ctx: TurnContext = {
      query: q.query,
      text: '',
      documentTitles: [],
      documents: value(documents, []),
      recall: value(recall, []),
      outcomes: {
        documents: outcome('documents', documents),
        recall: outcome('recall', recall),
      },
      embedding,
      elapsedMs: 0,
    };
    const block = formatContext(ctx, this.opts.budgets.maxChars);
    ctx.text = block.text;
    ctx.documentTitles = block.titles;
    ctx.elapsedMs = this.now() - started;
    return ctx;
  }

  /** Documents and recall in one round trip. */
  private async turnContext(
    db: TenantQuery,
    q: TurnQuery,
    embedding: number[],
    signal: AbortSignal,
  ): Promise<{ documents: DocumentMatch[]; recall: RecallMatch[] }> {
    const { settings } = this.opts;
    const data = (await rpc(db, signal, 'turn_context', {
      p_query_embedding: vectorLiteral(embedding),
      p_agent_slug: q.agentSlug,
      p_user_id: q.userId ?? null,
      p_match_threshold: settings.matchThreshold,
      p_match_count: settings.ragEnabled ? settings.matchCount : 0,
      p_recall_count: settings.recallCount,
      p_exclude_conversation_id: q.conversationId ?? null,
    })) as { documents?: DocumentMatch[]; recall?: RecallMatch[] } | null;
    return { documents: data?.documents ?? [], recall: data?.recall ?? [] };
  }

  private async matchDocuments(
    db: TenantQuery,
    q: TurnQuery,
    embedding: number[],
    signal: AbortSignal,
  ): Promise<DocumentMatch[]> {
    const data = await rpc(db, signal, 'match_documents', {
      p_query_embedding: vectorLiteral(embedding),
      p_agent_slug: q.agentSlug,
      p_match_threshold: this.opts.settings.matchThreshold,
      p_match_count: this.opts.settings.matchCount,
    });
    return (data ?? []) as DocumentMatch[];
  }

  private async recall(
    db: TenantQuery,
    q: TurnQuery,
    embedding: number[],
    signal: AbortSignal,
  ): Promise<RecallMatch[]> {
    const data = await rpc(db, signal, 'match_conversation_transcripts_secure', {
      p_query_embedding: vectorLiteral(embedding),
      p_agent_slug: q.agentSlug,
      p_user_id: q.userId,
      p_match_threshold: this.opts.settings.matchThreshold,
      p_match_count: this.opts.settings.recallCount,
      p_exclude_conversation_id: q.conversationId ?? null,
    });
    return (data ?? []) as RecallMatch[];
  }
}

/**
 * One block, most useful first (documents, then recall), cut to `maxChars` at item boundaries so
 * the LLM never sees half a sentence of a chunk.
 */
export function formatContext(
  ctx: Pick<TurnContext, 'documents' | 'recall'>,
  maxChars: number,
): { text: string; titles: string[] } {
  const sections: Array<{ heading: string; items: Array<{ line: string; title?: string }> }> = [
    {
      heading: 'Relevant passages from the sidekick documents',
      items: ctx.documents.map((d) => ({
        line: `- [${d.title ?? 'untitled'}] ${d.content.trim()}`,
        title: d.title ?? 'untitled',
      })),
    },
    {
      heading: 'What this user said in earlier conversations',
      items: ctx.recall.map((r) => ({
        line: `- (${r.role}, ${r.created_at.slice(0, 10)}) ${r.content.trim()}`,
      })),
    },
  ];
  const out: string[] = [];
  const titles = new Set<string>();
  let size = 0;
  for (const section of sections) {
    let headed = false;
    for (const item of section.items) {
      const add = (headed ? 0 : section.heading.length + 5) + item.line.length + 1;
      if (size + add > maxChars) continue;
      if (!headed) {
        out.push(`${out.length ? '\n' : ''}## ${section.heading}`);
        headed = true;
      }
      out.push(item.line);
      size += add;
      if (item.title) titles.add(item.title);
    }
  }
  return { text: out.join('\n'), titles: [...titles] };
}
