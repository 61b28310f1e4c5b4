import { createHash, randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { RecursiveCharacterTextSplitter } from '@langchain/textsplitters';
import { embeddingMismatch } from '../agent/session-plan.js';
import { type Embedder, vectorLiteral } from '../context/embeddings.js';
import type { ClientConnection } from '../tenancy/connections.js';
import type { TenantQuery } from '../tenancy/tenant-query.js';
import type { ClientId } from '../tenancy/types.js';
import { checkExtension, extractText, SUPPORTED_EXTENSIONS, type TextEncoding } from './document-files.js';
import { dropReplaced, switchDocument, VERSION_KEYS } from './document-versions.js';
import { LimitError, must, OpsError, UsageError } from './errors.js';
import { type ReembedOptions, type ReembedResult, reembedDocuments } from './reembed.js';
import type { OpsBase } from './requests.js';
import { tenantRows } from './tables.js';
import { clientIdArg, connectClient, sidekickArg } from './tenant.js';

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
  /** How text files are decoded (default UTF-8). */
  encoding?: TextEncoding | undefined;
  /**
   * The sidekick's documents embedded with another model than `embedder` are re-embedded first.
   * Without it such documents refuse the run (EmbeddingModelMismatchError): nothing is written.
   */
  reembed?: boolean;
  onProgress?: (event: {
    file: string;
    stage: 'read' | 'embedded' | 'written' | 'replaced' | 'skipped';
    chunks?: number;
  }) => void;
  /** Progress of the re-embedding that `reembed` runs. */
  onReembedProgress?: ReembedOptions['onProgress'];
  /** Between writing a new version's chunks and switching to it (tests look at retrieval there). */
  beforeSwitch?: (documentId: string) => Promise<void>;
}

export interface IngestedDocument {
  file: string;
  documentId: string;
  title: string;
  bytes: number;
  chunks: number;
  /**
   * added: a new document; replaced: a new version of the sidekick's document with this file name
   * (`replacedId`), switched to at once; already_loaded: a ready document with the same content
   * exists (it is linked to the sidekick).
   */
  outcome: 'added' | 'replaced' | 'already_loaded';
  replacedId?: string;
}

export interface IngestResult {
  clientId: string;
  agent: { id: string; slug: string };
  documents: IngestedDocument[];
  /** What `reembed` re-embedded first. */
  reembedded?: ReembedResult;
}

export { SUPPORTED_EXTENSIONS };

const MB = 1024 * 1024;

/** A document as ingestion compares it with a file. */
interface KnownDocument {
  id: string;
  title: string | null;
  status: string | null;
  metadata: Record<string, unknown>;
}

interface Prepared {
  file: string;
  title: string;
  bytes: number;
  sha256: string;
  text: string;
  mime: string;
  pages?: number | undefined;
  /** A ready document with this content. */
  ready: KnownDocument | undefined;
  /** Documents with this content that an earlier run left half-written. */
  unfinished: KnownDocument[];
  /** The sidekick's documents with this file name and other content: what this file replaces. */
  previous: KnownDocument[];
  chunks: string[];
  vectors: number[][];
}

/** The sidekick has documents embedded with another model than the one configured now. */
export class EmbeddingModelMismatchError extends UsageError {
  constructor(
    readonly stored: string[],
    readonly configured: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * `sidekick docs add`: reads .txt/.md/.pdf files (or sniffed ones without an extension), splits them
 * into overlapping chunks, embeds the chunks in batches and writes documents, document_chunks and
 * agent_documents through the client's own connection (TenantQuery: the tenant token and client_id
 * in the pool, the project in a dedicated database). Everything that can refuse the run is checked
 * before anything is written: the tier's max_document_size_mb and max_documents, the file types and
 * encodings, and that the sidekick's other documents were embedded with the configured model.
 *
 * A file is known by its content (sha256) and its name (the document's title): the same content is
 * not loaded twice; a file named like one of the sidekick's documents but with other content is a
 * new version of it and replaces it atomically (document-versions.ts). One left half-written by a
 * crash is written again.
 */
export async function ingestDocuments(deps: IngestDeps, opts: IngestOptions): Promise<IngestResult> {
  if (opts.files.length === 0) throw new UsageError('docs add: name at least one file');
  const splitOpts = { chunkSize: opts.chunkSize ?? 1000, chunkOverlap: opts.chunkOverlap ?? 150 };
  if (splitOpts.chunkOverlap >= splitOpts.chunkSize)
    throw new UsageError(
      `--chunk-overlap (${splitOpts.chunkOverlap}${opts.chunkOverlap === undefined ? ', the default' : ''}) must be below --chunk-size (${splitOpts.chunkSize}): give a smaller --chunk-overlap or a larger --chunk-size`,
    );
  const clientId = clientIdArg(opts.clientId);
  const conn = await connectClient(deps, clientId);
  const db = conn.db;
  const agent = await findAgent(db, opts.agent);
  const log = deps.log.child({ client_id: clientId, agent: agent.slug, op: 'docs_add' });

  // 1. Check every file before reading any of them.
  const sizeLimit = conn.features.max_document_size_mb;
  const files: Array<{ file: string; bytes: number }> = [];
  const names = new Map<string, string>();
  for (const file of opts.files) {
    checkExtension(file);
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
    const title = basename(file);
    const twin = names.get(title);
    if (twin) {
      throw new UsageError(
        `${file} and ${twin} have the same name, and a document is known by its file name (a later file of that name replaces it): load them in separate runs under different names`,
      );
    }
    names.set(title, file);
    files.push({ file, bytes: info.size });
  }

  // 2. Read and extract; find earlier copies (same content) and earlier versions (same name).
  const linked = await sidekickDocuments(db, agent.id);
  const prepared: Prepared[] = [];
  for (const { file, bytes } of files) {
    const data = await readFile(file);
    const sha256 = createHash('sha256').update(data).digest('hex');
    const { text, mime, pages } = await extractText(file, data, { encoding: opts.encoding });
    // Bad input, not a failure: running it again cannot find text that is not there.
    if (!text.trim())
      throw new UsageError(
        `${file}: no text could be extracted (${data.length === 0 ? 'the file is empty' : mime === 'application/pdf' ? 'a PDF without a text layer (scanned pages need OCR first)' : 'only white space'}); nothing was written`,
      );
    const same = must(
      `looking for an earlier copy of ${file}`,
      await db
        .from('documents')
        .select('id, title, status, metadata')
        .eq('metadata->>sha256', sha256)
        .limit(20),
    );
    // A copy that `docs reembed` is writing is its business, not an earlier load of this file.
    const copies = (same ?? []).map(known).filter((d) => !(VERSION_KEYS.reembedOf in d.metadata));
    const ready = copies.find((d) => d.status === 'ready');
    const title = basename(file);
    prepared.push({
      file,
      title,
      bytes,
      sha256,
      text,
      mime,
      pages,
      ready,
      unfinished: copies.filter((d) => d.status !== 'ready'),
      previous: linked.filter((d) => d.title === title && d.id !== ready?.id && d.status === 'ready'),
      chunks: [],
      vectors: [],
    });
    opts.onProgress?.({ file, stage: 'read' });
  }

  // 3. The document limit, counting what this run adds (a new version replaces, it does not add).
  const docLimit = conn.features.max_documents;
  if (docLimit !== null) {
    const { count, error } = await db.from('documents').select('id', { head: true, count: 'exact' });
    if (error) throw new OpsError(`counting the client's documents: ${error.message}`);
    const have = count ?? 0;
    const adding = prepared.filter((p) => !p.ready && !p.previous.length).length;
    if (have + adding > docLimit) {
      throw new LimitError(
        'max_documents',
        `refused: client ${clientId} (${conn.tier} tier) may have at most max_documents = ${docLimit} documents; it has ${have} and this would add ${adding}; nothing was written`,
      );
    }
  }

  // 4. The documents the sidekick keeps (and the copies it gets linked to) must be embedded with the
  //    configured model: a second model's vectors are never found by the first model's queries.
  const replaced = new Set(prepared.flatMap((p) => p.previous.map((d) => d.id)));
  const kept = [
    ...linked.filter((d) => d.status === 'ready' && !replaced.has(d.id)),
    ...prepared.flatMap((p) => (p.ready && !linked.some((d) => d.id === p.ready!.id) ? [p.ready] : [])),
  ];
  const mismatch = embeddingMismatch(modelsOf(kept), deps.embedder);
  let reembedded: ReembedResult | undefined;
  if (mismatch && !opts.reembed) {
    throw new EmbeddingModelMismatchError(
      mismatch.stored,
      mismatch.worker,
      `--agent ${agent.slug}: ${mismatch.documents} of the sidekick's documents were embedded with ${mismatch.stored.join(', ')}, but the configured embedder is ${mismatch.worker} (EMBEDDING_PROVIDER, EMBEDDING_MODEL); a sidekick with two models' vectors finds nothing with one of them. Run \`sidekick docs reembed --client ${clientId} --agent ${agent.slug}\` first, or add --reembed to re-embed them in this run, or configure the embedder they were made with; nothing was written`,
    );
  }

  // 5. Chunk and embed (still nothing written).
  for (const p of prepared) {
    if (p.ready) continue;
    const splitter =
      p.mime === 'text/markdown'
        ? RecursiveCharacterTextSplitter.fromLanguage('markdown', splitOpts)
        : new RecursiveCharacterTextSplitter(splitOpts);
    p.chunks = (await splitter.splitText(p.text)).filter((c) => c.trim());
    // The embedder batches (and runs batches side by side) itself.
    p.vectors = await deps.embedder.embed(p.chunks).catch((err: Error) => {
      throw new OpsError(
        `${p.file}: embedding its ${p.chunks.length} chunks with ${deps.embedder.model} failed (${err.message}); nothing was written: run the command again`,
        { cause: err },
      );
    });
    if (p.vectors.length !== p.chunks.length) {
      throw new OpsError(
        `${p.file}: the embedder returned ${p.vectors.length} vectors for ${p.chunks.length} chunks`,
      );
    }
    opts.onProgress?.({ file: p.file, stage: 'embedded', chunks: p.chunks.length });
  }

  if (mismatch) {
    reembedded = await reembedDocuments(deps, {
      clientId,
      agent: agent.id,
      onProgress: opts.onReembedProgress,
    });
  }

  // 6. Write: each new document in full, then made visible (linked, or switched to) in one statement.
  const results: IngestedDocument[] = [];
  for (const p of prepared) {
    if (p.ready) {
      const ready = p.ready;
      let outcome: IngestedDocument['outcome'] = 'already_loaded';
      if (p.previous.length) {
        await opts.beforeSwitch?.(ready.id);
        await switchDocument(
          db,
          p.previous.map((d) => d.id),
          ready.id,
        );
        outcome = 'replaced';
      } else {
        await linkAgent(db, agent.id, ready.id);
        await dropReplaced(db, ready);
      }
      results.push({
        file: p.file,
        documentId: ready.id,
        title: p.title,
        bytes: p.bytes,
        chunks: 0,
        outcome,
        ...(p.previous[0] ? { replacedId: p.previous[0].id } : {}),
      });
      opts.onProgress?.({ file: p.file, stage: outcome === 'replaced' ? 'replaced' : 'skipped' });
      continue;
    }
    for (const u of p.unfinished) {
      // Left half-written by an earlier run: its chunks go with it (ON DELETE CASCADE).
      must(`removing the unfinished copy of ${p.file}`, await db.from('documents').delete().eq('id', u.id));
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
          ...(p.previous[0] ? { [VERSION_KEYS.replaces]: p.previous[0].id } : {}),
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
    // Ready before it is linked: until then no session can see it, after it every chunk is there.
    must(
      `marking ${p.file} ready`,
      await db.from('documents').update({ status: 'ready' }).eq('id', documentId),
    );
    if (p.previous.length) {
      await opts.beforeSwitch?.(documentId);
      await switchDocument(
        db,
        p.previous.map((d) => d.id),
        documentId,
      );
    } else {
      await linkAgent(db, agent.id, documentId);
    }
    const outcome = p.previous.length ? 'replaced' : 'added';
    log.info(
      { document_id: documentId, chunks: p.chunks.length, bytes: p.bytes, replaced: p.previous[0]?.id },
      outcome === 'replaced' ? 'document replaced' : 'document added',
    );
    results.push({
      file: p.file,
      documentId,
      title: p.title,
      bytes: p.bytes,
      chunks: p.chunks.length,
      outcome,
      ...(p.previous[0] ? { replacedId: p.previous[0].id } : {}),
    });
    opts.onProgress?.({
      file: p.file,
      stage: outcome === 'replaced' ? 'replaced' : 'written',
      chunks: p.chunks.length,
    });
  }
  return { clientId, agent, documents: results, ...(reembedded ? { reembedded } : {}) };
}

/** The documents linked to a sidekick, as ingestion compares them with files. */
async function sidekickDocuments(db: TenantQuery, agentId: string): Promise<KnownDocument[]> {
  const ids: string[] = [];
  for await (const l of tenantRows(db, 'agent_documents', 'id, document_id', (b) =>
    b.eq('agent_id', agentId),
  )) {
    ids.push(String(l.document_id));
  }
  const out: KnownDocument[] = [];
  for (let i = 0; i < ids.length; i += 100) {
    const found = must(
      "reading the sidekick's documents",
      await db
        .from('documents')
        .select('id, title, status, metadata')
        .in('id', ids.slice(i, i + 100)),
    );
    out.push(...(found ?? []).map(known));
  }
  return out;
}

function known(row: Record<string, unknown>): KnownDocument {
  const metadata = row.metadata;
  return {
    id: String(row.id),
    title: (row.title as string | null) ?? null,
    status: (row.status as string | null) ?? null,
    metadata: metadata && typeof metadata === 'object' ? (metadata as Record<string, unknown>) : {},
  };
}

/** Documents grouped by the model (and size) their metadata says they were embedded with. */
export function modelsOf(
  docs: ReadonlyArray<{ metadata: Record<string, unknown> }>,
): Array<{ model: string | null; dimensions: number | null; documents: number }> {
  const groups = new Map<string, { model: string | null; dimensions: number | null; documents: number }>();
  for (const d of docs) {
    const model = typeof d.metadata.embedding_model === 'string' ? d.metadata.embedding_model : null;
    const dims = d.metadata.embedding_dimensions;
    const dimensions = typeof dims === 'number' && Number.isInteger(dims) ? dims : null;
    const key = `${model}\u0000${dimensions}`;
    const g = groups.get(key) ?? { model, dimensions, documents: 0 };
    g.documents++;
    groups.set(key, g);
  }
  return [...groups.values()].sort((a, b) => b.documents - a.documents);
}

export interface DocumentListing {
  id: string;
  title: string | null;
  status: string | null;
  sourceType: string | null;
  chunks: number | null;
  bytes: number | null;
  embeddingModel: string | null;
  embeddingDimensions: number | null;
  /** A version being written beside the one in use (replacing it, or re-embedding it). */
  versionOf: string | null;
  createdAt: string | null;
  /** The slugs of the sidekicks that use it (none: no session retrieves it). */
  sidekicks: string[];
}

/** `sidekick docs list`: the client's documents (or one sidekick's), all of them, in pages. */
export async function listDocuments(
  deps: Pick<IngestDeps, 'connections'>,
  opts: { clientId: string; agent?: string | undefined },
): Promise<{ clientId: string; agent: { id: string; slug: string } | null; documents: DocumentListing[] }> {
  const clientId = clientIdArg(opts.clientId);
  const db = (await connectClient(deps, clientId)).db;
  const agent = opts.agent ? await findAgent(db, opts.agent) : null;
  // Which sidekicks use each document: two of the same name are told apart by it.
  const slugs = new Map<string, string>();
  for await (const a of tenantRows(db, 'agents', 'id, slug')) slugs.set(String(a.id), String(a.slug));
  const users = new Map<string, string[]>();
  for await (const l of tenantRows(db, 'agent_documents', 'id, document_id, agent_id')) {
    const doc = String(l.document_id);
    users.set(doc, [...(users.get(doc) ?? []), slugs.get(String(l.agent_id)) ?? String(l.agent_id)]);
  }
  const documents: DocumentListing[] = [];
  for await (const d of tenantRows(db, 'documents', 'id, title, status, source_type, metadata, created_at')) {
    const sidekicks = (users.get(String(d.id)) ?? []).sort();
    if (agent && !sidekicks.includes(agent.slug)) continue;
    const meta = (d.metadata ?? {}) as Record<string, unknown>;
    documents.push({
      id: String(d.id),
      title: (d.title as string | null) ?? null,
      status: (d.status as string | null) ?? null,
      sourceType: (d.source_type as string | null) ?? null,
      chunks: typeof meta.chunks === 'number' ? meta.chunks : await countChunks(db, String(d.id)),
      bytes: typeof meta.bytes === 'number' ? meta.bytes : null,
      embeddingModel: typeof meta.embedding_model === 'string' ? meta.embedding_model : null,
      embeddingDimensions: typeof meta.embedding_dimensions === 'number' ? meta.embedding_dimensions : null,
      versionOf:
        d.status !== 'ready'
          ? String(meta[VERSION_KEYS.reembedOf] ?? meta[VERSION_KEYS.replaces] ?? '') || null
          : null,
      createdAt: (d.created_at as string | null) ?? null,
      sidekicks,
    });
  }
  return { clientId, agent, documents };
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
  const row = await sidekickArg(db, agent);
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
