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
}

export type LookupOutcome = 'ok' | 'skipped' | 'timeout' | 'error';

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
  /** The block added to the LLM's context for this turn only ('' when nothing was found). */
  text: string;
  /** Titles of the documents the block draws on. */
  documentTitles: string[];
  documents: DocumentMatch[];
  recall: RecallMatch[];
  outcomes: { documents: LookupOutcome; recall: LookupOutcome };
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

/** One lookup RPC, cut off with the turn's budget; an error names the function. */
async function rpc(
  db: TenantQuery,
  signal: AbortSignal,
  fn: string,
  args: Record<string, unknown>,
): Promise<unknown> {
  const { data, error } = await db.rpc(fn, args).abortSignal(signal);
  if (error) throw new Error(`${fn}: ${error.message}`);
  return data;
}

const SKIPPED: unique symbol = Symbol('skipped');
const skip = async (): Promise<typeof SKIPPED> => SKIPPED;

/**
 * What the sidekick knows for one turn: the sidekick's documents (RAG) and what this user said in
 * earlier conversations. (The user overview is read once per session, into the instructions.) The
 * query is embedded once; both vector lookups start as soon as the embedding is back; they share
 * one time budget and are cancelled at its end. A lookup that fails or is late is left out and
 * logged; the turn goes on. Shared and dedicated clients run the same code: the difference stays
 * in TenantQuery.
 */
export class ContextManager {
  private readonly now: () => number;

  constructor(private readonly opts: ContextManagerOptions) {
    this.now = opts.now ?? (() => performance.now());
  }

  async retrieve(q: TurnQuery): Promise<TurnContext> {
    const started = this.now();
    const abort = new AbortController();
    const deadline = new Promise<never>((_, reject) => {
      const timer = setTimeout(() => {
        abort.abort();
        reject(new LookupTimeout());
      }, this.opts.budgets.lookupMs);
      abort.signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
    });
    deadline.catch(() => {});
    const within = <T>(p: Promise<T>) => Promise.race([p, deadline]);

    const { settings } = this.opts;
    const resolve = this.opts.db;
    const db = typeof resolve === 'function' ? within(resolve()) : Promise.resolve(resolve);
    db.catch(() => {});
    const needsEmbedding = settings.ragEnabled || q.userId !== undefined;
    const embedding = needsEmbedding
      ? within(this.opts.embedder.embed([q.query], { signal: abort.signal }).then((v) => v[0]!))
      : undefined;
    embedding?.catch(() => {});

    const [documents, recall] = await Promise.allSettled([
      settings.ragEnabled && embedding
        ? within(Promise.all([db, embedding]).then(([d, e]) => this.matchDocuments(d, q, e, abort.signal)))
        : skip(),
      q.userId && embedding
        ? within(Promise.all([db, embedding]).then(([d, e]) => this.recall(d, q, e, abort.signal)))
        : skip(),
    ]);
    abort.abort();

    const outcome = (name: string, r: PromiseSettledResult<unknown>): LookupOutcome => {
      if (r.status === 'fulfilled') return r.value === SKIPPED ? 'skipped' : 'ok';
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
      text: '',
      documentTitles: [],
      documents: value(documents, []),
      recall: value(recall, []),
      outcomes: {
        documents: outcome('documents', documents),
        recall: outcome('recall', recall),
      },
      elapsedMs: 0,
    };
    const block = formatContext(ctx, this.opts.budgets.maxChars);
    ctx.text = block.text;
    ctx.documentTitles = block.titles;
    ctx.elapsedMs = this.now() - started;
    return ctx;
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
