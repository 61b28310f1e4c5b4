import { createHash, randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { RecursiveCharacterTextSplitter } from '@langchain/textsplitters';
import { type Embedder, vectorLiteral } from '../context/embeddings.js';
import type { ClientConnection } from '../tenancy/connections.js';
import { describeRef, findSidekick, sidekickRef } from '../tenancy/sidekicks.js';
import type { TenantQuery } from '../tenancy/tenant-query.js';
import { asClientId, type ClientId } from '../tenancy/types.js';
import type { OpsBase } from './requests.js';
import { LimitError, must, OpsError, UsageError } from './errors.js';
import { MAX_PAGE_SIZE, rows } from './tables.js';

export interface IngestDeps extends OpsBase {
  /** ClientConnectionManager (or anything that resolves a client's connection the same way). */
  connections: { forClient(clientId: ClientId): Promise<ClientConnection> };
  embedder: Embedder;
}

export interface IngestOptions {
  clientId: string;
  /** The sidekick: its slug or its id. */
  agent: string;
  files: string[];
  chunkSize?: number;
  chunkOverlap?: number;
  /** Chunk rows per insert request. */
  insertBatch?: number;
  onProgress?: (event: {
    file: string;
    stage: 'read' | 'embedded' | 'written' | 'skipped';
    chunks?: number;
  }) => void;
}

export interface IngestedDocument {
  file: string;
  documentId: string;
  title: string;
  bytes: number;
  chunks: number;
  /** already_loaded: a ready document with the same content exists (it is linked to the sidekick). */
  outcome: 'added' | 'replaced' | 'already_loaded';
}

export interface IngestResult {
  clientId: string;
  agent: { id: string; slug: string };
  documents: IngestedDocument[];
}

export const SUPPORTED_EXTENSIONS = ['.txt', '.md', '.markdown', '.pdf'] as const;
const MB = 1024 * 1024;

interface Prepared {
  file: string;
  title: string;
  bytes: number;
  sha256: string;
  text: string;
  mime: string;
  pages?: number | undefined;
  existing: { id: string; status: string | null } | undefined;
  chunks: string[];
  vectors: number[][];
}

/**
 * `sidekick docs add`: reads .txt/.md/.pdf files, splits them into overlapping chunks, embeds the
 * chunks in batches and writes documents, document_chunks and agent_documents through the client's
 * own connection (TenantQuery: the tenant token and client_id in the pool, the project in a dedicated
 * database). The tier's max_documents and max_document_size_mb are checked, and every file read,
 * chunked and embedded, before anything is written. A file already loaded (same sha256) is not
 * loaded twice; one left half-written by a crash is replaced.
 */
export async function ingestDocuments(deps: IngestDeps, opts: IngestOptions): Promise<IngestResult> {
  if (opts.files.length === 0) throw new UsageError('docs add: name at least one file');
  const clientId = toClientId(opts.clientId);
  const conn = await deps.connections.forClient(clientId);
  const db = conn.db;
  const agent = await findAgent(db, opts.agent);
  const log = deps.log.child({ client_id: clientId, agent: agent.slug, op: 'docs_add' });

  // 1. Check every file before reading any of them.
  const sizeLimit = conn.features.max_document_size_mb;
  const files: Array<{ file: string; bytes: number }> = [];
  for (const file of opts.files) {
    const ext = extname(file).toLowerCase();
    if (!(SUPPORTED_EXTENSIONS as readonly string[]).includes(ext)) {
      throw new UsageError(
        `${file}: unsupported file type "${ext || '(none)'}"; supported: ${SUPPORTED_EXTENSIONS.join(', ')}`,
      );
    }
    const info = await stat(file).catch((err: NodeJS.ErrnoException) => {
      throw new UsageError(`${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
    });
    if (!info.isFile()) throw new UsageError(`${file}: not a regular file`);
    if (sizeLimit !== null && info.size > sizeLimit * MB) {
      throw new LimitError(
        'max_document_size_mb',
        `refused: ${file} is ${(info.size / MB).toFixed(1)} MB, over the limit max_document_size_mb = ${sizeLimit} of client ${clientId} (${conn.tier} tier); nothing was written`,
      );
    }
    files.push({ file, bytes: info.size });
  }

  // 2. Read, extract, and look for earlier copies.
  const prepared: Prepared[] = [];
  for (const { file, bytes } of files) {
    const data = await readFile(file);
    const sha256 = createHash('sha256').update(data).digest('hex');
    const { text, mime, pages } = await extractText(file, data);
    if (!text.trim()) throw new OpsError(`${file}: no text could be extracted`);
    const found = must(
      `looking for an earlier copy of ${file}`,
      await db.from('documents').select('id, status').eq('metadata->>sha256', sha256).limit(1),
    );
    const existing = found?.[0]
      ? { id: String(found[0].id), status: (found[0].status as string | null) ?? null }
      : undefined;
    prepared.push({
      file,
      title: basename(file),
      bytes,
      sha256,
      text,
      mime,
      pages,
      existing,
      chunks: [],
      vectors: [],
    });
    opts.onProgress?.({ file, stage: 'read' });
  }

  // 3. The document limit, counting what this run adds (a half-written earlier copy is replaced, not added).
  const docLimit = conn.features.max_documents;
  if (docLimit !== null) {
    const { count, error } = await db.from('documents').select('id', { head: true, count: 'exact' });
    if (error) throw new OpsError(`counting the client's documents: ${error.message}`);
    const have = count ?? 0;
    const adding = prepared.filter((p) => !p.existing).length;
    if (have + adding > docLimit) {
      throw new LimitError(
        'max_documents',
        `refused: client ${clientId} (${conn.tier} tier) may have at most max_documents = ${docLimit} documents; it has ${have} and this would add ${adding}; nothing was written`,
      );
    }
  }

  // 4. Chunk and embed (still nothing written).
  const splitOpts = { chunkSize: opts.chunkSize ?? 1000, chunkOverlap: opts.chunkOverlap ?? 150 };
  if (splitOpts.chunkOverlap >= splitOpts.chunkSize)
    throw new UsageError('--chunk-overlap must be below --chunk-size');
  for (const p of prepared) {
    if (p.existing?.status === 'ready') continue;
    const splitter =
      p.mime === 'text/markdown'
        ? RecursiveCharacterTextSplitter.fromLanguage('markdown', splitOpts)
        : new RecursiveCharacterTextSplitter(splitOpts);
    p.chunks = (await splitter.splitText(p.text)).filter((c) => c.trim());
    // The embedder batches (and runs batches side by side) itself.
    p.vectors = await deps.embedder.embed(p.chunks);
    if (p.vectors.length !== p.chunks.length) {
      throw new OpsError(
        `${p.file}: the embedder returned ${p.vectors.length} vectors for ${p.chunks.length} chunks`,
      );
    }
    opts.onProgress?.({ file: p.file, stage: 'embedded', chunks: p.chunks.length });
  }

  // 5. Write.
  const results: IngestedDocument[] = [];
  for (const p of prepared) {
    if (p.existing?.status === 'ready') {
      await linkAgent(db, agent.id, p.existing.id);
      results.push({
        file: p.file,
        documentId: p.existing.id,
        title: p.title,
        bytes: p.bytes,
        chunks: 0,
        outcome: 'already_loaded',
      });
      opts.onProgress?.({ file: p.file, stage: 'skipped' });
      continue;
    }
    if (p.existing) {
      // Left half-written by an earlier run: its chunks and links go with it (ON DELETE CASCADE).
      must(
        `removing the unfinished copy of ${p.file}`,
        await db.from('documents').delete().eq('id', p.existing.id),
      );
    }
    const documentId = randomUUID();
    must(
      `writing document ${p.file}`,
      await db.from('documents').insert({
        id: documentId,
        title: p.title,
        content: p.text,
        source_type: 'file',
        status: 'processing',
        metadata: {
          filename: p.title,
          bytes: p.bytes,
          sha256: p.sha256,
          mime: p.mime,
          chunks: p.chunks.length,
          chunk_size: splitOpts.chunkSize,
          chunk_overlap: splitOpts.chunkOverlap,
          embedding_model: deps.embedder.model,
          embedding_dimensions: deps.embedder.dimensions,
          ...(p.pages !== undefined ? { pages: p.pages } : {}),
        },
      }),
    );
    const size = opts.insertBatch ?? 200;
    for (let i = 0; i < p.chunks.length; i += size) {
      const batch = p.chunks.slice(i, i + size).map((content, j) => ({
        document_id: documentId,
        chunk_index: i + j,
        content,
        embeddings: vectorLiteral(p.vectors[i + j]!),
        metadata: { filename: p.title },
      }));
      must(`writing chunks of ${p.file}`, await db.from('document_chunks').insert(batch));
    }
    await linkAgent(db, agent.id, documentId);
    must(
      `marking ${p.file} ready`,
      await db.from('documents').update({ status: 'ready' }).eq('id', documentId),
    );
    log.info({ document_id: documentId, chunks: p.chunks.length, bytes: p.bytes }, 'document added');
    results.push({
      file: p.file,
      documentId,
      title: p.title,
      bytes: p.bytes,
      chunks: p.chunks.length,
      outcome: p.existing ? 'replaced' : 'added',
    });
    opts.onProgress?.({ file: p.file, stage: 'written', chunks: p.chunks.length });
  }
  return { clientId, agent, documents: results };
}

export interface DocumentListing {
  id: string;
  title: string | null;
  status: string | null;
  sourceType: string | null;
  chunks: number | null;
  bytes: number | null;
  createdAt: string | null;
}

/** `sidekick docs list`: the client's documents (or one sidekick's), all of them, in pages. */
export async function listDocuments(
  deps: Pick<IngestDeps, 'connections'>,
  opts: { clientId: string; agent?: string | undefined },
): Promise<{ clientId: string; agent: { id: string; slug: string } | null; documents: DocumentListing[] }> {
  const clientId = toClientId(opts.clientId);
  const db = (await deps.connections.forClient(clientId)).db;
  const agent = opts.agent ? await findAgent(db, opts.agent) : null;
  let allowed: Set<string> | null = null;
  if (agent) {
    allowed = new Set();
    for await (const row of keyset(db, 'agent_documents', 'id, document_id', (b) =>
      b.eq('agent_id', agent.id),
    )) {
      allowed.add(String(row.document_id));
    }
  }
  const documents: DocumentListing[] = [];
  for await (const d of keyset(db, 'documents', 'id, title, status, source_type, metadata, created_at')) {
    if (allowed && !allowed.has(String(d.id))) continue;
    const meta = (d.metadata ?? {}) as Record<string, unknown>;
    documents.push({
      id: String(d.id),
      title: (d.title as string | null) ?? null,
      status: (d.status as string | null) ?? null,
      sourceType: (d.source_type as string | null) ?? null,
      chunks: typeof meta.chunks === 'number' ? meta.chunks : await countChunks(db, String(d.id)),
      bytes: typeof meta.bytes === 'number' ? meta.bytes : null,
      createdAt: (d.created_at as string | null) ?? null,
    });
  }
  return { clientId, agent, documents };
}

type Filter = ReturnType<ReturnType<TenantQuery['from']>['select']>;

/**
 * All rows of a tenant table in id order, a page (the API's row cap) at a time, through the tenant's
 * own connection, with the keyset pager that tier moves use too. One attempt per page, like every
 * other request of ingestion.
 */
function keyset(
  db: TenantQuery,
  table: 'documents' | 'agent_documents',
  columns: string,
  filter: (b: Filter) => Filter = (b) => b,
): AsyncGenerator<Record<string, unknown>> {
  return rows({
    what: `listing ${table}`,
    select: () => filter(db.from(table).select(columns)),
    pageSize: MAX_PAGE_SIZE,
    retry: { retries: 0, minMs: 0, maxMs: 0 },
  });
}

/** For documents loaded by other means (no chunk count in their metadata). */
async function countChunks(db: TenantQuery, documentId: string): Promise<number | null> {
  const { count, error } = await db
    .from('document_chunks')
    .select('id', { head: true, count: 'exact' })
    .eq('document_id', documentId);
  return error ? null : (count ?? 0);
}

async function findAgent(db: TenantQuery, agent: string): Promise<{ id: string; slug: string }> {
  const ref = sidekickRef(agent);
  const row = await findSidekick(db, ref);
  if (!row) throw new UsageError(`--agent: client ${db.clientId} has no sidekick with ${describeRef(ref)}`);
  return { id: row.id, slug: row.slug };
}

async function linkAgent(db: TenantQuery, agentId: string, documentId: string): Promise<void> {
  const linked = must(
    'looking up the sidekick link',
    await db
      .from('agent_documents')
      .select('id')
      .eq('agent_id', agentId)
      .eq('document_id', documentId)
      .limit(1),
  );
  if (linked?.length) return;
  must(
    'linking the document to the sidekick',
    await db.from('agent_documents').insert({ agent_id: agentId, document_id: documentId }),
  );
}

/** The text of a .txt/.md file (UTF-8) or a .pdf (every page, through unpdf). */
export async function extractText(
  file: string,
  data: Buffer,
): Promise<{ text: string; mime: string; pages?: number }> {
  const ext = extname(file).toLowerCase();
  if (ext === '.pdf') {
    const { extractText: pdfText } = await import('unpdf');
    try {
      const { text, totalPages } = await pdfText(new Uint8Array(data), { mergePages: true });
      return { text, mime: 'application/pdf', pages: totalPages };
    } catch (err) {
      throw new OpsError(`${file}: not a readable PDF (${(err as Error).message})`);
    }
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    throw new UsageError(`${file}: not UTF-8 text`);
  }
  return { text: text.replace(/^\uFEFF/, ''), mime: ext === '.txt' ? 'text/plain' : 'text/markdown' };
}

function toClientId(value: string): ClientId {
  try {
    return asClientId(value, '--client');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
