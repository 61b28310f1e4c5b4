import type { SqlExecutor } from '../src/stack/sql.js';

/**
 * Synthetic tenants for the bench: per client one sidekick, `docs` documents linked to it with
 * `chunks` chunks each, and a user's past conversation. Vectors are generated inside the database
 * (random 1024-dim), so loading 100k chunks does not mean shipping gigabytes of SQL text.
 */
export interface Shape {
  clients: number;
  docs: number;
  chunks: number;
  transcripts: number;
}

export const BENCH_USER = '0b0b0b0b-0000-4000-8000-00000000000b';

const idOf = (prefix: string, i: number) =>
  `${prefix}000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
export const clientIdOf = (i: number) => idOf('be', i);
/** The sidekick of client i (each bench client has one). */
export const agentIdOf = (i: number) => idOf('ae', i);
const conversationIdOf = (i: number) => idOf('ce', i);

// ARRAY(subquery), not array_agg: an aggregate over only outer columns would be evaluated once, outside.
const RANDOM_VECTOR =
  'ARRAY(SELECT random() - 0.5 + 0 * g.n FROM generate_series(1, 1024))::float4[]::vector(1024)';

/** Loads `shape` into a database of `kind`; returns the client ids loaded. */
export async function loadTenants(
  sql: SqlExecutor,
  kind: 'shared_pool' | 'dedicated',
  shape: Shape,
  firstClient = 0,
): Promise<string[]> {
  const ids: string[] = [];
  const shared = kind === 'shared_pool';
  for (let c = firstClient; c < firstClient + shape.clients; c++) {
    const client = clientIdOf(c);
    ids.push(client);
    const cid = shared ? `'${client}'::uuid, ` : '';
    const col = shared ? 'client_id, ' : '';
    const agent = agentIdOf(c);
    const conv = conversationIdOf(c);
    if (shared) {
      await sql.exec(`INSERT INTO pool_clients (client_id, max_sidekicks) VALUES ('${client}', 1)`);
    }
    await sql.exec(`
      INSERT INTO agents (${col}id, name, slug, system_prompt)
        VALUES (${cid}'${agent}', 'Bench sidekick', 'bench', 'You answer questions.');
      INSERT INTO documents (${col}id, title, content, status)
        SELECT ${cid}md5('${client}' || g.n)::uuid, 'Document ' || g.n, 'body', 'ready'
          FROM generate_series(1, ${shape.docs}) AS g(n);
      INSERT INTO agent_documents (${col}agent_id, document_id)
        SELECT ${cid}'${agent}', d.id FROM documents d ${shared ? `WHERE d.client_id = '${client}'` : ''};
      INSERT INTO document_chunks (${col}document_id, chunk_index, content, embeddings)
        SELECT ${cid}d.id, g.n, 'Passage ' || g.n || ' of ' || d.title, ${RANDOM_VECTOR}
          FROM documents d CROSS JOIN generate_series(1, ${shape.chunks}) AS g(n)
          ${shared ? `WHERE d.client_id = '${client}'` : ''};
      INSERT INTO conversations (${col}id, agent_id, user_id) VALUES (${cid}'${conv}', '${agent}', '${BENCH_USER}');
      INSERT INTO conversation_transcripts (${col}conversation_id, agent_id, user_id, role, content, embeddings)
        SELECT ${cid}'${conv}', '${agent}', '${BENCH_USER}', CASE WHEN g.n % 2 = 0 THEN 'assistant' ELSE 'user' END,
               'Turn ' || g.n, ${RANDOM_VECTOR}
          FROM generate_series(1, ${shape.transcripts}) AS g(n);
      INSERT INTO user_overviews (${col}user_id, agent_id, sections)
        VALUES (${cid}'${BENCH_USER}', '${agent}', '{"identity": "bench user"}');
    `);
  }
  await sql.exec('ANALYZE');
  return ids;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function summarize(samples: number[]): { p50: number; p95: number; n: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p95: percentile(s, 95), n: s.length };
}
