import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Embedder, vectorLiteral } from '../src/context/embeddings.js';
import { HashingEmbedder } from '../src/context/hashing-embedder.js';
import { InjectedFailure } from '../src/ops/errors.js';
import { ingestDocuments } from '../src/ops/ingest.js';
import { reembedDocuments } from '../src/ops/reembed.js';
import type { LocalStack } from '../src/stack/stack.js';
import type { ClientConnectionManager } from '../src/tenancy/connections.js';
import { asClientId } from '../src/tenancy/types.js';
import { json, sidekick, stackEnv } from './support/cli.js';
import { startOpenAIServer } from './support/openai-server.js';
import { pdf } from './support/pdf.js';
import { connectionsTo, startTestStack } from './support/stack.js';

const log = pino({ level: 'silent' });
const hashing = new HashingEmbedder({ dimensions: 1024 });

/** Another embedding model: its vectors differ from the hashing model's for the same text. */
class ShiftedEmbedder implements Embedder {
  readonly model = 'shifted-hashing-v1';
  readonly dimensions = 1024;
  calls: string[][] = [];
  async embed(texts: string[]): Promise<number[][]> {
    this.calls.push(texts);
    return texts.map((t) => hashing.embedOne(`zebra quartz ${t}`));
  }
}

let stack: LocalStack;
let dir: string;
let env: Record<string, string>;

beforeAll(async () => {
  [stack, dir] = await Promise.all([startTestStack(), mkdtemp(join(tmpdir(), 'sidekick-docs-'))]);
  env = stackEnv(stack);
});
afterAll(async () => {
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function file(name: string, content: string | Buffer): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

/** A new adventurer with a sidekick, made with the CLI. */
async function newClient(name: string, slug = 'guide'): Promise<string> {
  const made = await sidekick(['clients', 'create', '--name', name, '--json'], env);
  expect(made.code, made.stderr).toBe(0);
  const id = json<{ client: { id: string } }>(made).client.id;
  const agent = await sidekick(['agents', 'create', '--client', id, '--name', 'Guide', '--slug', slug], env);
  expect(agent.code, agent.stderr).toBe(0);
  return id;
}

/** Every chunk the sidekick's retrieval can reach (threshold below any similarity), in one RPC. */
async function retrieve(connections: ClientConnectionManager, clientId: string, slug: string, query: string) {
  const conn = await connections.forClient(asClientId(clientId));
  const { data, error } = await conn.db.rpc('match_documents', {
    p_query_embedding: vectorLiteral(hashing.embedOne(query)),
    p_agent_slug: slug,
    p_match_threshold: -1,
    p_match_count: 1000,
  });
  if (error) throw new Error(error.message);
  return data as Array<{ document_id: string; content: string; title: string }>;
}

/** Numbered paragraphs that each become their own chunk (chunk size 120). */
function policy(version: string, n: number): string {
  return Array.from(
    { length: n },
    (_, i) =>
      `Returns rule ${i + 1} of version ${version}: items come back within ${version === 'one' ? 14 : 30} days.`,
  ).join('\n\n');
}

describe('docs add of a changed file replaces the document atomically', () => {
  it('one version at every moment of the replace; afterwards the old text is gone', async () => {
    const clientId = await newClient('Versioned Bikes');
    const connections = connectionsTo(stack);
    const path = await file('returns.md', policy('one', 24));
    const deps = { connections, embedder: hashing, log };
    const first = await ingestDocuments(deps, {
      clientId,
      agent: 'guide',
      files: [path],
      chunkSize: 120,
      chunkOverlap: 0,
    });
    expect(first.documents[0]).toMatchObject({ outcome: 'added' });
    const v1 = first.documents[0]!.documentId;
    expect((await retrieve(connections, clientId, 'guide', 'returns')).length).toBe(24);

    // Retrieval runs without pause while the new version is written a chunk per request.
    await writeFile(path, policy('two', 30));
    const seen: Array<Set<string>> = [];
    let writing = true;
    const reader = (async () => {
      while (writing) {
        const rows = await retrieve(connections, clientId, 'guide', 'returns within days');
        seen.push(new Set(rows.map((r) => r.document_id)));
      }
    })();
    let atSwitch: Set<string> | undefined;
    const second = await ingestDocuments(deps, {
      clientId,
      agent: 'guide',
      files: [path],
      chunkSize: 120,
      chunkOverlap: 0,
      insertBatch: 1,
      beforeSwitch: async () => {
        // Every chunk of the new version is written and ready: sessions still see only the old one.
        atSwitch = new Set(
          (await retrieve(connections, clientId, 'guide', 'returns')).map((r) => r.document_id),
        );
      },
    }).finally(() => {
      writing = false;
    });
    await reader;
    const v2 = second.documents[0]!.documentId;
    expect(second.documents[0]).toMatchObject({ outcome: 'replaced', replacedId: v1, chunks: 30 });
    expect(atSwitch).toEqual(new Set([v1]));
    expect(seen.length).toBeGreaterThan(3);
    for (const s of seen) expect(s.size, 'a retrieval saw both versions or neither').toBe(1);
    expect(seen.some((s) => s.has(v1))).toBe(true);

    const after = await retrieve(connections, clientId, 'guide', 'returns within 14 days version one');
    expect(new Set(after.map((r) => r.document_id))).toEqual(new Set([v2]));
    expect(after.some((r) => r.content.includes('version one'))).toBe(false);
    const [left] = await stack.pool.sql.query<{ docs: number; chunks: number }>(
      `SELECT (SELECT count(*)::int FROM documents WHERE client_id = $1) AS docs,
              (SELECT count(*)::int FROM document_chunks WHERE client_id = $1 AND content LIKE '%version one%') AS chunks`,
      [clientId],
    );
    expect(left).toEqual({ docs: 1, chunks: 0 });
  });

  it('through the CLI: replaced, counted once against max_documents, and loading it again adds nothing', async () => {
    const clientId = await newClient('Replace Cycles');
    const path = await file('hours.txt', 'The shop opens at nine on weekdays.');
    const a = await sidekick(['docs', 'add', '--client', clientId, '--agent', 'guide', path, '--json'], env);
    expect(a.code, a.stderr).toBe(0);
    const v1 = json<{ documents: Array<{ document_id: string }> }>(a).documents[0]!.document_id;
    await writeFile(path, 'The shop opens at ten on weekdays and at noon on Sundays.');
    await stack.platform.sql.query(
      `UPDATE clients SET tier_features = '{"max_documents": 1}' WHERE id = $1`,
      [clientId],
    );
    try {
      const b = await sidekick(['docs', 'add', '--client', clientId, '--agent', 'guide', path], env);
      expect(b.code, b.stderr).toBe(0);
      expect(b.stdout).toMatch(
        new RegExp(`^replaced\\s+\\S+\\s+hours\\.txt\\s+1 chunk\\s+\\(replaces ${v1}\\)`),
      );
      expect(b.stderr).toMatch(/hours\.txt: replaced \(1 chunk\)/);
      const again = await sidekick(
        ['docs', 'add', '--client', clientId, '--agent', 'guide', path, '--json'],
        env,
      );
      expect(json<{ documents: Array<{ outcome: string }> }>(again).documents[0]!.outcome).toBe(
        'already_loaded',
      );
      const listed = json<{ documents: Array<{ title: string; sidekicks: string[] }> }>(
        await sidekick(['docs', 'list', '--client', clientId, '--json'], env),
      );
      expect(listed.documents.map((d) => [d.title, d.sidekicks])).toEqual([['hours.txt', ['guide']]]);
      // A new file is still one too many.
      const extra = await file('extra.txt', 'Something else entirely.');
      const refused = await sidekick(['docs', 'add', '--client', clientId, '--agent', 'guide', extra], env);
      expect(refused.code).toBe(3);
    } finally {
      await stack.platform.sql.query(`UPDATE clients SET tier_features = '{}' WHERE id = $1`, [clientId]);
    }
  });
});

describe('docs add over the second copies older releases made of a changed file', () => {
  it('replaces every copy of that name: the sidekick ends with the new version only', async () => {
    const clientId = await newClient('Legacy Cycles');
    const path = await file('faq.txt', 'Old answer: we close at five.');
    expect((await sidekick(['docs', 'add', '--client', clientId, '--agent', 'guide', path], env)).code).toBe(
      0,
    );
    // A second, older copy of faq.txt linked to the same sidekick, as an earlier release would add it.
    const [agent] = await stack.pool.sql.query<{ id: string }>('SELECT id FROM agents WHERE client_id = $1', [
      clientId,
    ]);
    const [legacy] = await stack.pool.sql.query<{ id: string }>(
      `INSERT INTO documents (client_id, title, status, metadata) VALUES ($1, 'faq.txt', 'ready', '{"sha256": "older"}') RETURNING id`,
      [clientId],
    );
    await stack.pool.sql.query(
      `INSERT INTO document_chunks (client_id, document_id, chunk_index, content) VALUES ($1, $2, 0, 'Older answer: we close at four.')`,
      [clientId, legacy!.id],
    );
    await stack.pool.sql.query(
      'INSERT INTO agent_documents (client_id, agent_id, document_id) VALUES ($1, $2, $3)',
      [clientId, agent!.id, legacy!.id],
    );
    await writeFile(path, 'New answer: we close at six.');
    const run = await sidekick(
      ['docs', 'add', '--client', clientId, '--agent', 'guide', path, '--json'],
      env,
    );
    expect(run.code, run.stderr).toBe(0);
    expect(json<{ documents: Array<{ outcome: string }> }>(run).documents[0]!.outcome).toBe('replaced');
    const rows = await retrieve(connectionsTo(stack), clientId, 'guide', 'when do you close');
    expect(rows.map((r) => r.content)).toEqual(['New answer: we close at six.']);
    const [n] = await stack.pool.sql.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM documents WHERE client_id = $1',
      [clientId],
    );
    expect(n!.n).toBe(1);
  });
});

describe('docs show, docs remove', () => {
  it('show names chunks, model, dimensions, bytes and sidekicks; remove by name or id; ambiguity and absence exit 2', async () => {
    const clientId = await newClient('Show Cycles');
    const a = await file(
      'tyres.md',
      '# Tyres\n\nRoad tyres run at 80 to 100 psi.\n\nGravel tyres at 35 to 50 psi.',
    );
    const b = await file('chains.txt', 'Oil the chain every 300 kilometres.');
    expect((await sidekick(['docs', 'add', '--client', clientId, '--agent', 'guide', a, b], env)).code).toBe(
      0,
    );

    const shown = await sidekick(
      ['docs', 'show', '--client', clientId, 'tyres.md', '--chunks', '5', '--json'],
      env,
    );
    expect(shown.code, shown.stderr).toBe(0);
    const d = json<Record<string, unknown>>(shown);
    expect(d).toMatchObject({
      title: 'tyres.md',
      status: 'ready',
      embedding_model: 'local-hashing-v1',
      embedding_dimensions: 1024,
      bytes: Buffer.byteLength(
        '# Tyres\n\nRoad tyres run at 80 to 100 psi.\n\nGravel tyres at 35 to 50 psi.',
      ),
      mime: 'text/markdown',
      sidekicks: [expect.objectContaining({ slug: 'guide', enabled: true })],
    });
    expect(d.chunks).toBeGreaterThanOrEqual(1);
    expect((d.chunk_preview as unknown[]).length).toBe(d.chunks);
    const human = await sidekick(['docs', 'show', '--client', clientId, String(d.id)], env);
    expect(human.stdout).toMatch(/embedded\s+local-hashing-v1, 1024 dimensions/);
    expect(human.stdout).toMatch(/sidekicks\s+guide/);

    const removed = await sidekick(['docs', 'remove', '--client', clientId, 'tyres.md', '--json'], env);
    expect(removed.code, removed.stderr).toBe(0);
    expect(json(removed)).toMatchObject({ removed: [{ title: 'tyres.md', sidekicks: ['guide'] }] });
    const [n] = await stack.pool.sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM document_chunks WHERE client_id = $1 AND content LIKE '%psi%'`,
      [clientId],
    );
    expect(n!.n).toBe(0);

    const missing = await sidekick(['docs', 'remove', '--client', clientId, 'tyres.md', 'chains.txt'], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/document "tyres\.md": no such document/);
    // All names are resolved first: chains.txt is still there.
    const list = json<{ documents: unknown[] }>(
      await sidekick(['docs', 'list', '--client', clientId, '--json'], env),
    );
    expect(list.documents).toHaveLength(1);

    // Two documents of one name (as older releases loaded changed files): named by id instead.
    const other = await stack.pool.sql.query<{ id: string }>(
      `INSERT INTO documents (client_id, title, status) VALUES ($1, 'chains.txt', 'ready') RETURNING id`,
      [clientId],
    );
    const ambiguous = await sidekick(['docs', 'remove', '--client', clientId, 'chains.txt'], env);
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toMatch(/2 documents have this name .*: name one by its id/);
    const byId = await sidekick(['docs', 'remove', '--client', clientId, other[0]!.id], env);
    expect(byId.code, byId.stderr).toBe(0);
    expect(byId.stdout).toMatch(new RegExp(`removed ${other[0]!.id}`));
  });
});

describe('docs add: file types and encodings', () => {
  it('files without an extension are sniffed (text, PDF); binary and archives are refused; Latin-1 gets a hint', async () => {
    const clientId = await newClient('Sniff Cycles');
    const text = await file('README', 'Saddles should be level.');
    const pdfFile = await file('MANUAL', pdf(['Brake manual', 'Pads wear out after about 2000 kilometres.']));
    const ok = await sidekick(
      ['docs', 'add', '--client', clientId, '--agent', 'guide', text, pdfFile, '--json'],
      env,
    );
    expect(ok.code, ok.stderr).toBe(0);
    const shownPdf = json<{ mime: string }>(
      await sidekick(['docs', 'show', '--client', clientId, 'MANUAL', '--json'], env),
    );
    expect(shownPdf.mime).toBe('application/pdf');
    const shownText = json<{ mime: string }>(
      await sidekick(['docs', 'show', '--client', clientId, 'README', '--json'], env),
    );
    expect(shownText.mime).toBe('text/plain');

    const binary = await file('blob', Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2, 0, 0, 0]));
    const bin = await sidekick(['docs', 'add', '--client', clientId, '--agent', 'guide', binary], env);
    expect(bin.code).toBe(2);
    expect(bin.stderr).toMatch(/blob: a binary file, neither text nor PDF/);
    const zip = await file(
      'report',
      Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04]), Buffer.alloc(20, 1)]),
    );
    expect(
      (await sidekick(['docs', 'add', '--client', clientId, '--agent', 'guide', zip], env)).stderr,
    ).toMatch(/a ZIP archive .*export it as PDF or plain text/);
    const docx = await file('notes.docx', 'x');
    expect((await sidekick(['docs', 'add', '--client', clientId, '--agent', 'guide', docx], env)).code).toBe(
      2,
    );

    // An empty file or one of white space is bad input (exit 2), not worth retrying.
    for (const [name, content, why] of [
      ['empty.txt', '', 'the file is empty'],
      ['blank.md', '  \n\n\t\n', 'only white space'],
    ] as const) {
      const nothing = await sidekick(
        ['docs', 'add', '--client', clientId, '--agent', 'guide', await file(name, content)],
        env,
      );
      expect(nothing.code, nothing.stderr).toBe(2);
      expect(nothing.stderr).toContain(`${name}: no text could be extracted (${why}); nothing was written`);
    }

    const latin = await file('menu.txt', Buffer.from('Caf\xe9 cr\xe8me, cr\xeape au beurre', 'latin1'));
    const refused = await sidekick(['docs', 'add', '--client', clientId, '--agent', 'guide', latin], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/menu\.txt: not UTF-8 text; it looks like Latin-1 \(ISO-8859-1\)/);
    expect(refused.stderr).toMatch(/iconv -f latin1 -t utf-8 '.*menu\.txt' > converted\.txt/);
    expect(refused.stderr).toMatch(/--encoding latin1/);
    const loaded = await sidekick(
      ['docs', 'add', '--client', clientId, '--agent', 'guide', '--encoding', 'latin1', latin, '--json'],
      env,
    );
    expect(loaded.code, loaded.stderr).toBe(0);
    const [row] = await stack.pool.sql.query<{ content: string }>(
      `SELECT content FROM documents WHERE client_id = $1 AND title = 'menu.txt'`,
      [clientId],
    );
    expect(row!.content).toBe('Café crème, crêpe au beurre');
  });
});

describe('the embedding model of a sidekick’s documents', () => {
  it('docs add with another embedder than its documents were made with: refused (exit 2) naming both and the fix, nothing written; --reembed does both', async () => {
    const clientId = await newClient('Model Cycles');
    const first = await file('first.txt', 'Helmets must be replaced after a crash.');
    expect((await sidekick(['docs', 'add', '--client', clientId, '--agent', 'guide', first], env)).code).toBe(
      0,
    );
    const openai = await startOpenAIServer();
    try {
      const withOpenAI = {
        ...env,
        EMBEDDING_PROVIDER: 'openai',
        OPENAI_API_KEY: 'sk-loopback',
        OPENAI_BASE_URL: openai.baseURL,
      };
      const second = await file('second.txt', 'Lights are required after dark.');
      const refused = await sidekick(
        ['docs', 'add', '--client', clientId, '--agent', 'guide', second],
        withOpenAI,
      );
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(
        /1 of the sidekick's documents were embedded with local-hashing-v1 \(1024 dimensions\), but the configured embedder is text-embedding-3-small \(1024 dimensions\)/,
      );
      expect(refused.stderr).toMatch(/sidekick docs reembed --client \S+ --agent guide/);
      expect(refused.stderr).toMatch(/--reembed/);
      expect(openai.embeddingRequests()).toHaveLength(0);
      const [n] = await stack.pool.sql.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM documents WHERE client_id = $1',
        [clientId],
      );
      expect(n!.n).toBe(1);

      const both = await sidekick(
        ['docs', 'add', '--client', clientId, '--agent', 'guide', second, '--reembed', '--json'],
        withOpenAI,
      );
      expect(both.code, both.stderr).toBe(0);
      const r = json<{
        reembedded: { documents: Array<{ from: string }> };
        documents: Array<{ outcome: string }>;
      }>(both);
      expect(r.reembedded.documents).toEqual([expect.objectContaining({ from: 'local-hashing-v1' })]);
      expect(r.documents[0]!.outcome).toBe('added');
      const models = await stack.pool.sql.query<{ model: string }>(
        `SELECT metadata->>'embedding_model' AS model FROM documents WHERE client_id = $1 ORDER BY 1`,
        [clientId],
      );
      expect(models.map((m) => m.model)).toEqual(['text-embedding-3-small', 'text-embedding-3-small']);
      // The first document's chunk went through the embeddings API again.
      expect(JSON.stringify(openai.embeddingRequests().map((q) => q.body.input))).toContain(
        'Helmets must be replaced',
      );
    } finally {
      await openai.close();
    }
  });

  it('docs reembed: pages, progress, an injected crash half-way; the re-run continues and sessions see one model throughout', async () => {
    const clientId = await newClient('Reembed Cycles');
    const connections = connectionsTo(stack);
    const path = await file('manual.md', policy('one', 25));
    await ingestDocuments(
      { connections, embedder: hashing, log },
      { clientId, agent: 'guide', files: [path], chunkSize: 120, chunkOverlap: 0 },
    );
    const [old] = await stack.pool.sql.query<{ id: string }>(
      'SELECT id FROM documents WHERE client_id = $1',
      [clientId],
    );
    const shifted = new ShiftedEmbedder();
    const progress: Array<[number, number]> = [];
    const crash = await reembedDocuments(
      { connections, embedder: shifted, log },
      {
        clientId,
        agent: 'guide',
        pageSize: 10,
        failAfterPages: 2,
        onProgress: (e) => progress.push([e.done, e.total]),
      },
    ).catch((e) => e);
    expect(crash).toBeInstanceOf(InjectedFailure);
    expect(progress).toEqual([
      [10, 25],
      [20, 25],
    ]);
    // Mid-way, sessions still retrieve the old, complete version only.
    const during = await retrieve(connections, clientId, 'guide', 'returns');
    expect(new Set(during.map((r) => r.document_id))).toEqual(new Set([old!.id]));
    expect(during).toHaveLength(25);

    const resumed = await reembedDocuments(
      { connections, embedder: shifted, log },
      { clientId, agent: 'guide', pageSize: 10, onProgress: (e) => progress.push([e.done, e.total]) },
    );
    expect(progress.slice(2)).toEqual([[25, 25]]);
    // Only the chunks not done before the crash were embedded again.
    expect(shifted.calls.map((c) => c.length)).toEqual([10, 10, 5]);
    expect(resumed.documents).toEqual([
      expect.objectContaining({ previousId: old!.id, chunks: 25, resumedAt: 20, from: 'local-hashing-v1' }),
    ]);
    const now = resumed.documents[0]!.documentId;
    const rows = await stack.pool.sql.query<{ document_id: string; content: string; embeddings: string }>(
      'SELECT document_id, content, embeddings::text FROM document_chunks WHERE client_id = $1 ORDER BY chunk_index',
      [clientId],
    );
    expect(rows).toHaveLength(25);
    expect(new Set(rows.map((r) => r.document_id))).toEqual(new Set([now]));
    const expected = (await shifted.embed([rows[7]!.content]))[0]!;
    const stored = JSON.parse(rows[7]!.embeddings) as number[];
    expect(stored.length).toBe(1024);
    for (let i = 0; i < 1024; i++) expect(stored[i]).toBeCloseTo(expected[i]!, 5);
    const [meta] = await stack.pool.sql.query<{ model: string }>(
      `SELECT metadata->>'embedding_model' AS model FROM documents WHERE client_id = $1`,
      [clientId],
    );
    expect(meta!.model).toBe('shifted-hashing-v1');

    // Nothing left to do: a third run re-embeds nothing.
    const third = await reembedDocuments(
      { connections, embedder: shifted, log },
      { clientId, agent: 'guide' },
    );
    expect(third).toMatchObject({ documents: [], unchanged: 1 });
  });

  it('docs reembed through the CLI: the embeddings API fails half-way (exit 1), the same command again finishes', async () => {
    const clientId = await newClient('Flaky Cycles');
    const path = await file('flaky.md', policy('one', 12));
    expect(
      (
        await sidekick(
          [
            'docs',
            'add',
            '--client',
            clientId,
            '--agent',
            'guide',
            '--chunk-size',
            '120',
            '--chunk-overlap',
            '0',
            path,
          ],
          env,
        )
      ).code,
    ).toBe(0);
    const openai = await startOpenAIServer();
    try {
      const withOpenAI = {
        ...env,
        EMBEDDING_PROVIDER: 'openai',
        OPENAI_API_KEY: 'sk-loopback',
        OPENAI_BASE_URL: openai.baseURL,
      };
      openai.failNext('embeddings', 500, 1, 1);
      const failed = await sidekick(
        ['docs', 'reembed', '--client', clientId, '--page-size', '5'],
        withOpenAI,
      );
      expect(failed.code).toBe(1);
      expect(failed.stderr).toMatch(/flaky\.md: 5\/12 chunks re-embedded/);
      expect(failed.stderr).toMatch(
        /re-embedding "flaky\.md" with text-embedding-3-small: the embedder failed after 5 of 12 chunks \(500 injected failure \(500\)\); run the same command again/,
      );
      const again = await sidekick(['docs', 'reembed', '--client', clientId, '--page-size', '5'], withOpenAI);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toMatch(
        /flaky\.md: 10\/12 chunks re-embedded\n.*flaky\.md: 12\/12 chunks re-embedded/,
      );
      expect(again.stdout).toMatch(
        /re-embedded\s+\S+\s+flaky\.md\s+12 chunks \(was local-hashing-v1; resumed at 5\)/,
      );
      expect(again.stdout).toMatch(
        /1 document re-embedded with text-embedding-3-small \(1024 dimensions\), 0 already were/,
      );
      const listed = await sidekick(['docs', 'list', '--client', clientId], withOpenAI);
      expect(listed.stdout.trim().split('\n')).toHaveLength(1);
      expect(listed.stdout).toMatch(/ready\s+12 chunks\s+flaky\.md {2}\(\S+\) {2}\[text-embedding-3-small\]/);
    } finally {
      await openai.close();
    }
  });
});

describe("docs: another client's documents", () => {
  it('are no such documents to show, remove or re-embed; they stay as they are', async () => {
    const bloom = stack.demo!.adventurers[1]!;
    const [theirs] = await stack.pool.sql.query<{ id: string; metadata: unknown }>(
      'SELECT id, metadata FROM documents WHERE client_id = $1 ORDER BY id LIMIT 1',
      [bloom.clientId],
    );
    const mine = await newClient('Nosy Cycles');
    for (const args of [
      ['docs', 'show', '--client', mine, theirs!.id],
      ['docs', 'remove', '--client', mine, theirs!.id],
      ['docs', 'remove', '--client', mine, 'Watering houseplants'],
    ]) {
      const run = await sidekick(args, env);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr).toMatch(/no such document/);
    }
    const reembed = await sidekick(['docs', 'reembed', '--client', mine, '--all', '--json'], env);
    expect(reembed.code, reembed.stderr).toBe(0);
    expect(json(reembed)).toMatchObject({ documents: [], unchanged: 0 });
    const [still] = await stack.pool.sql.query<{ id: string; metadata: unknown }>(
      'SELECT id, metadata FROM documents WHERE id = $1',
      [theirs!.id],
    );
    expect(still).toEqual(theirs);
  });
});

describe('docs: bad input exits 2 and names the field', () => {
  it.each([
    [['docs', 'add', '--client', 'nope', '--agent', 'guide', 'x.txt'], /--client.*expected a uuid/],
    [
      [
        'docs',
        'add',
        '--client',
        'a1a1a1a1-0000-4000-8000-000000000001',
        '--agent',
        'bike-guide',
        '/no/such.txt',
      ],
      /\/no\/such\.txt: no such file/,
    ],
    [
      [
        'docs',
        'add',
        '--client',
        'a1a1a1a1-0000-4000-8000-000000000001',
        '--agent',
        'bike-guide',
        '--encoding',
        'ebcdic',
        'x.txt',
      ],
      /--encoding.*utf-8, latin1/,
    ],
    [
      [
        'docs',
        'add',
        '--client',
        'a1a1a1a1-0000-4000-8000-000000000001',
        '--agent',
        'bike-guide',
        '--chunk-size',
        '10',
        '--chunk-overlap',
        '20',
        'x.txt',
      ],
      /--chunk-overlap \(20\) must be below --chunk-size \(10\)/,
    ],
    [
      [
        'docs',
        'add',
        '--client',
        'a1a1a1a1-0000-4000-8000-000000000001',
        '--agent',
        'bike-guide',
        '--chunk-size',
        '100',
        'x.txt',
      ],
      /--chunk-overlap \(150, the default\) must be below --chunk-size \(100\): give a smaller --chunk-overlap/,
    ],
    [
      ['docs', 'list', '--client', 'a1a1a1a1-0000-4000-8000-000000000001', '--agent', 'nobody'],
      /--agent: client .* has no sidekick with slug "nobody"/,
    ],
    [
      ['docs', 'show', '--client', 'a1a1a1a1-0000-4000-8000-000000000001', 'no-such.md'],
      /document "no-such\.md": no such document/,
    ],
    [
      [
        'docs',
        'show',
        '--client',
        'a1a1a1a1-0000-4000-8000-000000000001',
        '0d0d0d0d-0000-4000-8000-0000000000ff',
      ],
      /document id "0d0d0d0d-.*": no such document/,
    ],
    [
      ['docs', 'remove', '--client', 'a1a1a1a1-0000-4000-8000-000000000001'],
      /missing required argument 'documents'/,
    ],
    [
      ['docs', 'reembed', '--client', 'a1a1a1a1-0000-4000-8000-000000000001', '--page-size', '5000'],
      /page size must be a whole number from 1 to 1000/,
    ],
    [['docs', 'reembed', '--client', '0d0d0d0d-0000-4000-8000-0000000000ff'], /is not in the platform/],
  ])('%j', async (args, message) => {
    const run = await sidekick(args as string[], env);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(message as RegExp);
    expect(run.stderr).not.toMatch(/\([0-9A-Z]{5}\)|invalid input syntax/);
  });
});
