import type { TenantQuery } from '../tenancy/tenant-query.js';
import { isUuid } from '../tenancy/types.js';
import { VERSION_KEYS } from './document-versions.js';
import { must, UsageError } from './errors.js';
import { countTenantRows, tenantRows } from './tables.js';
import { connectClient, sidekickArg, type TenantDeps } from './tenant.js';

/** A document by what an operator types: its id, or its source name (the file name it was loaded from). */
interface FoundDocument {
  id: string;
  title: string | null;
  status: string | null;
  sourceType: string | null;
  metadata: Record<string, unknown>;
  createdAt: string | null;
}

export interface DocumentDetails {
  clientId: string;
  id: string;
  title: string | null;
  status: string | null;
  sourceType: string | null;
  /** The file's size as loaded (metadata.bytes), else the stored text's. */
  bytes: number | null;
  /** Counted in document_chunks, not taken from the metadata. */
  chunks: number;
  embeddingModel: string | null;
  embeddingDimensions: number | null;
  mime: string | null;
  sha256: string | null;
  chunkSize: number | null;
  chunkOverlap: number | null;
  pages: number | null;
  createdAt: string | null;
  /** The sidekicks whose sessions retrieve from it. */
  sidekicks: Array<{ id: string; slug: string; enabled: boolean }>;
  /** With `chunks`: the first ones, shortened. */
  chunkPreview?: Array<{ index: number; chars: number; text: string }>;
}

/** `sidekick docs show`: one document, what it was embedded with, its chunks and who uses it. */
export async function showDocument(
  deps: TenantDeps,
  opts: { clientId: string; document: string; agent?: string | undefined; preview?: number },
): Promise<DocumentDetails> {
  const conn = await connectClient(deps, opts.clientId);
  const db = conn.db;
  const [doc] = await resolveDocuments(db, [opts.document], opts.agent);
  const d = doc!;
  const full = must(
    `reading document ${d.id}`,
    await db.from('documents').select('content').eq('id', d.id).maybeSingle(),
  );
  const chunks = await countTenantRows(db, 'document_chunks', (b) => b.eq('document_id', d.id));
  const m = d.metadata;
  const num = (v: unknown) => (typeof v === 'number' ? v : null);
  const str = (v: unknown) => (typeof v === 'string' ? v : null);
  const details: DocumentDetails = {
    clientId: conn.clientId,
    id: d.id,
    title: d.title,
    status: d.status,
    sourceType: d.sourceType,
    bytes: num(m.bytes) ?? (typeof full?.content === 'string' ? Buffer.byteLength(full.content) : null),
    chunks,
    embeddingModel: str(m.embedding_model),
    embeddingDimensions: num(m.embedding_dimensions),
    mime: str(m.mime),
    sha256: str(m.sha256),
    chunkSize: num(m.chunk_size),
    chunkOverlap: num(m.chunk_overlap),
    pages: num(m.pages),
    createdAt: d.createdAt,
    sidekicks: await sidekicksOf(db, d.id),
  };
  if (opts.preview) {
    const rows = must(
      `reading the chunks of ${d.id}`,
      await db
        .from('document_chunks')
        .select('chunk_index, content')
        .eq('document_id', d.id)
        .order('chunk_index')
        .limit(opts.preview),
    );
    details.chunkPreview = (rows ?? []).map((r) => {
      const text = String(r.content);
      const flat = text.replace(/\s+/g, ' ').trim();
      return {
        index: Number(r.chunk_index),
        chars: text.length,
        text: flat.length > 100 ? `${flat.slice(0, 99)}…` : flat,
      };
    });
  }
  return details;
}

export interface RemovedDocument {
  id: string;
  title: string | null;
  chunks: number;
  /** The sidekicks that no longer retrieve from it. */
  sidekicks: string[];
}

/**
 * `sidekick docs remove`: deletes documents (by id or source name) with their chunks and sidekick
 * links (ON DELETE CASCADE), and any version of them still being written. Every name is resolved
 * before anything is deleted: one that matches nothing, or more than one document, refuses the run.
 */
export async function removeDocuments(
  deps: TenantDeps,
  opts: { clientId: string; documents: string[]; agent?: string | undefined },
): Promise<{ clientId: string; removed: RemovedDocument[] }> {
  if (!opts.documents.length)
    throw new UsageError('docs remove: name at least one document (id or file name)');
  const conn = await connectClient(deps, opts.clientId);
  const db = conn.db;
  const found = await resolveDocuments(db, opts.documents, opts.agent);
  const removed: RemovedDocument[] = [];
  for (const d of found) {
    const chunks = await countTenantRows(db, 'document_chunks', (b) => b.eq('document_id', d.id));
    const sidekicks = (await sidekicksOf(db, d.id)).map((s) => s.slug);
    for (const key of [VERSION_KEYS.reembedOf, VERSION_KEYS.replaces]) {
      must(
        `removing versions of ${d.id} still being written`,
        await db.from('documents').delete().eq(`metadata->>${key}`, d.id).neq('status', 'ready'),
      );
    }
    must(`removing document ${d.id}`, await db.from('documents').delete().eq('id', d.id));
    removed.push({ id: d.id, title: d.title, chunks, sidekicks });
  }
  return { clientId: conn.clientId, removed };
}

/**
 * Documents by id or source name: the title `docs add` gives a file (its name), among the client's
 * documents, or the sidekick's with `agent`. Versions still being written are not candidates.
 */
async function resolveDocuments(
  db: TenantQuery,
  refs: readonly string[],
  agent: string | undefined,
): Promise<FoundDocument[]> {
  const scope = agent ? await linkedTo(db, (await sidekickArg(db, agent)).id) : null;
  const out: FoundDocument[] = [];
  const seen = new Set<string>();
  for (const ref of refs) {
    const byId = isUuid(ref);
    const rows = must(
      `looking up document ${ref}`,
      await db
        .from('documents')
        .select('id, title, status, source_type, metadata, created_at')
        .eq(byId ? 'id' : 'title', byId ? ref.toLowerCase() : ref)
        .limit(50),
    );
    const matches = (rows ?? [])
      .map(found)
      .filter((d) => !scope || scope.has(d.id))
      .filter((d) => byId || d.status === 'ready' || !inFlight(d));
    if (!matches.length) {
      throw new UsageError(
        `${byId ? 'document id' : 'document'} "${ref}": no such document${scope ? ` of sidekick ${agent}` : ''} (\`sidekick docs list --client ${db.clientId}\` shows them)`,
      );
    }
    if (matches.length > 1) {
      throw new UsageError(
        `document "${ref}": ${matches.length} documents have this name (${matches.map((m) => `${m.id} ${m.status}`).join(', ')}): name one by its id${scope ? '' : ', or narrow with --agent'}`,
      );
    }
    const d = matches[0]!;
    if (!seen.has(d.id)) out.push(d);
    seen.add(d.id);
  }
  return out;
}

function inFlight(d: FoundDocument): boolean {
  return VERSION_KEYS.reembedOf in d.metadata || VERSION_KEYS.replaces in d.metadata;
}

function found(row: Record<string, unknown>): FoundDocument {
  const metadata = row.metadata;
  return {
    id: String(row.id),
    title: (row.title as string | null) ?? null,
    status: (row.status as string | null) ?? null,
    sourceType: (row.source_type as string | null) ?? null,
    metadata: metadata && typeof metadata === 'object' ? (metadata as Record<string, unknown>) : {},
    createdAt: (row.created_at as string | null) ?? null,
  };
}

async function linkedTo(db: TenantQuery, agentId: string): Promise<Set<string>> {
  const ids = new Set<string>();
  for await (const l of tenantRows(db, 'agent_documents', 'id, document_id', (b) =>
    b.eq('agent_id', agentId),
  )) {
    ids.add(String(l.document_id));
  }
  return ids;
}

async function sidekicksOf(
  db: TenantQuery,
  documentId: string,
): Promise<Array<{ id: string; slug: string; enabled: boolean }>> {
  const links: Array<{ agent: string; enabled: boolean }> = [];
  for await (const l of tenantRows(db, 'agent_documents', 'id, agent_id, enabled', (b) =>
    b.eq('document_id', documentId),
  )) {
    links.push({ agent: String(l.agent_id), enabled: l.enabled !== false });
  }
  if (!links.length) return [];
  const agents = must(
    'reading the sidekicks of the document',
    await db
      .from('agents')
      .select('id, slug')
      .in(
        'id',
        links.map((l) => l.agent),
      ),
  );
  const slugs = new Map((agents ?? []).map((a) => [String(a.id), String(a.slug)]));
  return links.map((l) => ({ id: l.agent, slug: slugs.get(l.agent) ?? '?', enabled: l.enabled }));
}
