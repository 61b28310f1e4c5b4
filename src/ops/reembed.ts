import { createHash, randomUUID } from 'node:crypto';
import { type Embedder, vectorLiteral } from '../context/embeddings.js';
import type { TenantQuery } from '../tenancy/tenant-query.js';
import { switchDocument, VERSION_KEYS } from './document-versions.js';
import { dbError, InjectedFailure, must, OpsError } from './errors.js';
import type { OpsBase } from './requests.js';
import { checkPageSize, countTenantRows, pages, type Row, tenantRows } from './tables.js';
import { connectClient, sidekickArg, type TenantDeps } from './tenant.js';

export interface ReembedDeps extends TenantDeps, OpsBase {
  embedder: Embedder;
}

export interface ReembedOptions {
  clientId: string;
  /** Only this sidekick's documents (slug or id); default every document of the client. */
  agent?: string | undefined;
  /** Chunks read, embedded and written per page (default 100, at most the API's row cap). */
  pageSize?: number;
  /** Also documents already embedded with the configured model. */
  all?: boolean;
  onProgress?: (event: { documentId: string; title: string | null; done: number; total: number }) => void;
  /** A stand-in for a crash: throws InjectedFailure once this many pages were written in this run. */
  failAfterPages?: number;
}

export interface ReembeddedDocument {
  /** The document as it was (deleted now). */
  previousId: string;
  /** Its re-embedded version (same content and chunks, new vectors), which the sidekicks use now. */
  documentId: string;
  title: string | null;
  chunks: number;
  /** Chunks an earlier, interrupted run had re-embedded already. */
  resumedAt: number;
  /** The model the chunks were embedded with before (null: not recorded). */
  from: string | null;
}

export interface ReembedResult {
  clientId: string;
  agent: { id: string; slug: string } | null;
  model: string;
  dimensions: number;
  documents: ReembeddedDocument[];
  /** Documents already embedded with the configured model. */
  unchanged: number;
}

const DEFAULT_PAGE_SIZE = 100;

interface Candidate {
  id: string;
  title: string | null;
  status: string | null;
  metadata: Record<string, unknown>;
}

interface Progress {
  cursor: string | null;
  done: number;
  total: number;
}

/**
 * `sidekick docs reembed`: re-embeds documents whose chunks were embedded with another model (or
 * size) than the configured embedder, or whose model was never recorded. Each document gets a new
 * version beside it (document-versions.ts): its chunks, same text and order, re-embedded a page at a
 * time, with the progress recorded in the new version (`metadata.reembed`) after each page, so a
 * crashed run continues where it stopped; page writes are idempotent (chunk ids derived from the old
 * chunk's), so a page written twice counts once. When complete, the sidekicks are switched to it in
 * one statement: a session sees the old vectors or the new ones, never a mix.
 */
export async function reembedDocuments(deps: ReembedDeps, opts: ReembedOptions): Promise<ReembedResult> {
  const conn = await connectClient(deps, opts.clientId);
  const db = conn.db;
  const pageSize = checkPageSize(opts.pageSize ?? DEFAULT_PAGE_SIZE);
  const agent = opts.agent ? await sidekickArg(db, opts.agent) : null;
  const target = { model: deps.embedder.model, dimensions: deps.embedder.dimensions };
  const log = deps.log.child({ client_id: conn.clientId, op: 'docs_reembed', model: target.model });

  const all = await readyDocuments(db, agent?.id ?? null);
  const result: ReembedResult = {
    clientId: conn.clientId,
    agent: agent ? { id: agent.id, slug: agent.slug } : null,
    model: target.model,
    dimensions: target.dimensions,
    documents: [],
    unchanged: 0,
  };
  const run = { pages: 0 };
  for (const doc of all) {
    const model = typeof doc.metadata.embedding_model === 'string' ? doc.metadata.embedding_model : null;
    const dims = doc.metadata.embedding_dimensions;
    if (!opts.all && model === target.model && (dims === undefined || dims === target.dimensions)) {
      result.unchanged++;
      continue;
    }
    const done = await reembedOne(deps, db, doc, { ...opts, pageSize }, run);
    result.documents.push({ ...done, title: doc.title, from: model });
    log.info(
      { document_id: doc.id, new_id: done.documentId, chunks: done.chunks, from: model },
      'document re-embedded',
    );
  }
  return result;
}

async function reembedOne(
  deps: ReembedDeps,
  db: TenantQuery,
  doc: Candidate,
  opts: ReembedOptions & { pageSize: number },
  run: { pages: number },
): Promise<Omit<ReembeddedDocument, 'title' | 'from'>> {
  const { model, dimensions } = deps.embedder;
  const total = await countTenantRows(db, 'document_chunks', (b) => b.eq('document_id', doc.id));
  let copy = await findCopy(db, doc.id, deps.embedder);
  if (!copy) {
    const full = must(
      `reading document ${doc.id}`,
      await db
        .from('documents')
        .select('title, content, source_url, source_type, created_at')
        .eq('id', doc.id)
        .maybeSingle(),
    );
    if (!full) throw new OpsError(`document ${doc.id} disappeared while it was being re-embedded: run again`);
    const { reembed: _previousRun, ...metadata } = doc.metadata;
    copy = {
      id: randomUUID(),
      title: doc.title,
      status: 'processing',
      metadata: {
        ...metadata,
        embedding_model: model,
        embedding_dimensions: dimensions,
        [VERSION_KEYS.reembedOf]: doc.id,
        [VERSION_KEYS.replaces]: doc.id,
        reembed: { cursor: null, done: 0, total } satisfies Progress,
      },
    };
    must(
      `writing the re-embedded version of ${doc.id}`,
      await db.from('documents').insert({
        ...full,
        id: copy.id,
        status: 'processing',
        metadata: copy.metadata,
      }),
    );
  }
  const progress = readProgress(copy.metadata.reembed, total);
  const resumedAt = progress.done;
  if (copy.status !== 'ready') {
    const chunks = {
      what: `reading the chunks of document ${doc.id}`,
      select: () =>
        db.from('document_chunks').select('id, chunk_index, content, metadata').eq('document_id', doc.id),
      pageSize: opts.pageSize,
      retry: { retries: 0, minMs: 0, maxMs: 0 },
    };
    for await (const page of pages(chunks, progress.cursor)) {
      const vectors = await deps.embedder.embed(page.map((c) => String(c.content))).catch((err: Error) => {
        throw new OpsError(
          `re-embedding "${doc.title ?? doc.id}" with ${model}: the embedder failed after ${progress.done} of ${total} chunks (${err.message}); run the same command again: it continues from there`,
          { cause: err },
        );
      });
      if (vectors.length !== page.length) {
        throw new OpsError(`the embedder returned ${vectors.length} vectors for ${page.length} chunks`);
      }
      const rows = page.map((c: Row, i) => ({
        id: derivedId(copy.id, String(c.id)),
        document_id: copy.id,
        chunk_index: c.chunk_index,
        content: c.content,
        metadata: c.metadata ?? {},
        embeddings: vectorLiteral(vectors[i]!),
      }));
      must(
        `writing re-embedded chunks of document ${doc.id}`,
        await db.from('document_chunks').upsert(rows, { onConflict: 'id', ignoreDuplicates: true }),
      );
      progress.cursor = String(page.at(-1)!.id);
      progress.done = Math.min(progress.total, progress.done + page.length);
      copy.metadata = { ...copy.metadata, reembed: { ...progress } };
      must(
        `recording the progress of document ${doc.id}`,
        await db.from('documents').update({ metadata: copy.metadata }).eq('id', copy.id),
      );
      opts.onProgress?.({ documentId: doc.id, title: doc.title, done: progress.done, total: progress.total });
      run.pages++;
      if (opts.failAfterPages !== undefined && run.pages >= opts.failAfterPages) {
        throw new InjectedFailure(`injected failure after ${run.pages} pages`);
      }
    }
    const written = await countTenantRows(db, 'document_chunks', (b) => b.eq('document_id', copy.id));
    const now = await countTenantRows(db, 'document_chunks', (b) => b.eq('document_id', doc.id));
    if (written !== now) {
      throw new OpsError(
        `document ${doc.id} has ${now} chunks, its re-embedded version ${written}: did it change meanwhile? run again`,
      );
    }
    must(
      `marking the re-embedded version of ${doc.id} ready`,
      await db.from('documents').update({ status: 'ready' }).eq('id', copy.id),
    );
  }
  await switchDocument(db, [doc.id], copy.id);
  return { previousId: doc.id, documentId: copy.id, chunks: total, resumedAt };
}

/**
 * The version an earlier run began for this document and this model. One begun for another model
 * (the embedder changed between runs) is deleted: its vectors would be of the wrong kind.
 */
async function findCopy(
  db: TenantQuery,
  documentId: string,
  embedder: Pick<Embedder, 'model' | 'dimensions'>,
): Promise<Candidate | null> {
  const found = must(
    `looking for an unfinished re-embedding of ${documentId}`,
    await db
      .from('documents')
      .select('id, title, status, metadata')
      .eq(`metadata->>${VERSION_KEYS.reembedOf}`, documentId),
  );
  let copy: Candidate | null = null;
  for (const row of found ?? []) {
    const c = candidate(row);
    if (
      c.metadata.embedding_model === embedder.model &&
      c.metadata.embedding_dimensions === embedder.dimensions &&
      !copy
    ) {
      copy = c;
    } else {
      must('removing a re-embedding for another model', await db.from('documents').delete().eq('id', c.id));
    }
  }
  return copy;
}

/**
 * The ready documents to look at: one sidekick's, or the client's. Re-embedded versions being
 * written (not ready) are not candidates; ones whose document is gone are removed.
 */
async function readyDocuments(db: TenantQuery, agentId: string | null): Promise<Candidate[]> {
  const docs: Candidate[] = [];
  const ids = new Set<string>();
  const orphans: Candidate[] = [];
  for await (const row of tenantRows(db, 'documents', 'id, title, status, metadata')) {
    const c = candidate(row);
    ids.add(c.id);
    if (c.status === 'ready') docs.push(c);
    else if (typeof c.metadata[VERSION_KEYS.reembedOf] === 'string') orphans.push(c);
  }
  for (const o of orphans) {
    if (!ids.has(String(o.metadata[VERSION_KEYS.reembedOf]))) {
      const { error } = await db.from('documents').delete().eq('id', o.id);
      if (error) throw dbError('removing a re-embedding whose document is gone', error);
    }
  }
  if (!agentId) return docs;
  const mine = new Set<string>();
  for await (const l of tenantRows(db, 'agent_documents', 'id, document_id', (b) =>
    b.eq('agent_id', agentId),
  )) {
    mine.add(String(l.document_id));
  }
  return docs.filter((d) => mine.has(d.id));
}

function candidate(row: Record<string, unknown>): Candidate {
  const metadata = row.metadata;
  return {
    id: String(row.id),
    title: (row.title as string | null) ?? null,
    status: (row.status as string | null) ?? null,
    metadata: metadata && typeof metadata === 'object' ? { ...(metadata as Record<string, unknown>) } : {},
  };
}

function readProgress(value: unknown, total: number): Progress {
  const p = (value && typeof value === 'object' ? value : {}) as Partial<Progress>;
  return {
    cursor: typeof p.cursor === 'string' ? p.cursor : null,
    done: typeof p.done === 'number' ? p.done : 0,
    total,
  };
}

/** A stable uuid for a re-embedded chunk: writing the same page again finds the same ids. */
function derivedId(copyId: string, chunkId: string): string {
  const h = createHash('sha256').update(`${copyId}/${chunkId}`).digest('hex');
  // RFC 9562 version 8 (custom), variant 10.
  const variant = ((Number.parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
