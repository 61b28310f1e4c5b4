import type { TenantQuery } from '../tenancy/tenant-query.js';
import { must } from './errors.js';
import { tenantRows } from './tables.js';

/**
 * Replacing a document without a session ever seeing both versions or neither. Retrieval
 * (match_documents, in the pool and in dedicated projects) reads the chunks of the documents a
 * sidekick is linked to (agent_documents), in one statement, so one snapshot. A new version is
 * therefore written in full beside the old one and is invisible while unlinked: its document row
 * (status 'processing'), all of its chunks, then 'ready'. Then one UPDATE moves the old version's
 * links to it (a single statement commits at once: a concurrent retrieval sees all old links or all
 * new ones), and the old version is deleted (its chunks go with it, ON DELETE CASCADE).
 *
 * A crash before the switch leaves the old version in use and the new one unlinked (the next run
 * finds it again by its content hash or `reembed_of`); after the switch, the old one unlinked, and
 * the new version's `metadata.replaces` names it so the next run deletes it.
 */

/** Metadata keys that tie versions together. */
export const VERSION_KEYS = Object.freeze({
  /** On a new version: the document it replaces once it is complete. */
  replaces: 'replaces',
  /** On a re-embedded copy being written: the document whose chunks it re-embeds. */
  reembedOf: 'reembed_of',
});

/**
 * Moves every link of `previous` to `next` (ready, complete) and deletes `previous`. With several
 * previous versions (duplicates that older releases loaded as second copies), each is switched in
 * turn; only the first switch is the atomic one sessions notice.
 */
export async function switchDocument(
  db: TenantQuery,
  previous: readonly string[],
  next: string,
): Promise<{ links: number }> {
  const linked = new Set<string>();
  for await (const l of tenantRows(db, 'agent_documents', 'id, agent_id', (b) => b.eq('document_id', next))) {
    linked.add(String(l.agent_id));
  }
  let links = 0;
  for (const old of previous) {
    if (old === next) continue;
    let move = db.from('agent_documents').update({ document_id: next }).eq('document_id', old);
    // A sidekick linked to both already (a legacy duplicate): its old link goes with the old version.
    if (linked.size) move = move.not('agent_id', 'in', `(${[...linked].join(',')})`);
    const moved = must('switching the sidekicks to the new version', await move.select('agent_id'));
    for (const m of moved ?? []) linked.add(String(m.agent_id));
    links += moved?.length ?? 0;
    must('deleting the old version', await db.from('documents').delete().eq('id', old));
  }
  return { links };
}

/**
 * The leftover of a switch that crashed before its delete: the version `next` replaced, if it still
 * exists and nothing links to it, is deleted.
 */
export async function dropReplaced(db: TenantQuery, next: { metadata: unknown }): Promise<boolean> {
  const replaced = (next.metadata as Record<string, unknown> | null)?.[VERSION_KEYS.replaces];
  if (typeof replaced !== 'string') return false;
  const links = must(
    'looking for links of the replaced version',
    await db.from('agent_documents').select('id').eq('document_id', replaced).limit(1),
  );
  if (links?.length) return false;
  const gone = must(
    'deleting the replaced version',
    await db.from('documents').delete().eq('id', replaced).select('id'),
  );
  return Boolean(gone?.length);
}
