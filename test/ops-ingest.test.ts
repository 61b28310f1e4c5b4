import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.js';
import { exitCodeFor } from '../src/commands/exit-codes.js';
import { vectorLiteral } from '../src/context/embeddings.js';
import { HashingEmbedder } from '../src/context/hashing-embedder.js';
import { LimitError, UsageError } from '../src/ops/errors.js';
import { ingestDocuments, listDocuments } from '../src/ops/ingest.js';
import type { LocalStack } from '../src/stack/stack.js';
import { ClientConnectionManager } from '../src/tenancy/connections.js';
import { ClientDirectory } from '../src/tenancy/directory.js';
import { createSupabase } from '../src/tenancy/supabase.js';
import { asClientId } from '../src/tenancy/types.js';
import { startOpenAIServer } from './support/openai-server.js';
import { pdf } from './support/pdf.js';
import { startTestStack } from './support/stack.js';

const log = pino({ level: 'silent' });
const embedder = new HashingEmbedder({ dimensions: 1024 });

let stack: LocalStack;
let dir: string;

beforeAll(async () => {
  [stack, dir] = await Promise.all([startTestStack(), mkdtemp(join(tmpdir(), 'sidekick-ingest-'))]);
});
afterAll(async () => {
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A fresh worker-side view (no cached records), as a new `sidekick docs add` process has. */
function deps() {
  const connections = new ClientConnectionManager({
    directory: new ClientDirectory({
      platform: createSupabase(stack.platform.url, stack.platform.serviceRoleKey),
      ttlMs: 1000,
    }),
    tokenTtlSeconds: 300,
    maxProjects: 10,
  });
  return { connections, embedder, log };
}

async function file(name: string, content: string | Buffer): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

/** A heading and one long paragraph: the splitter cuts it between words, with overlapping windows. */
const SADDLE_GUIDE = `# Saddle fitting\n\n${Array.from(
  { length: 12 },
  (_, i) =>
    `Step ${i + 1}: set the saddle height so the knee keeps a slight bend at the bottom of the pedal stroke; ` +
    'a saddle that is too low strains the knee, one too high makes the hips rock. Adjust in steps of five ' +
    'millimetres and ride a week before changing again.',
).join(' ')}`;

async function counts(sql: LocalStack['pool']['sql'], clientId?: string) {
  const where = clientId ? 'WHERE client_id = $1' : '';
  const params = clientId ? [clientId] : [];
  const [d] = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM documents ${where}`, params);
  const [c] = await sql.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM document_chunks ${where}`,
    params,
  );
  return { documents: d!.n, chunks: c!.n };
}

describe('docs add: tier limits', () => {
  it('a file over max_document_size_mb is refused, naming the limit, and nothing is written', async () => {
    const acme = stack.demo!.adventurers[0]!;
    const before = await counts(stack.pool.sql, acme.clientId);
    const small = await file('small.txt', 'Chains need oil.');
    const big = await file('big.txt', 'x'.repeat(6 * 1024 * 1024));
    const err = await ingestDocuments(deps(), {
      clientId: acme.clientId,
      agent: acme.agentSlug,
      files: [small, big],
    }).catch((e) => e);
    expect(err).toBeInstanceOf(LimitError);
    expect(exitCodeFor(err)).toBe(3);
    expect(err.limit).toBe('max_document_size_mb');
    expect(err.message).toMatch(/big\.txt is 6\.0 MB, over the limit max_document_size_mb = 5/);
    expect(err.message).toMatch(/adventurer tier/);
    expect(await counts(stack.pool.sql, acme.clientId)).toEqual(before);
  });

  it('more documents than max_documents are refused, naming the limit, and nothing is written', async () => {
    const acme = stack.demo!.adventurers[0]!;
    await stack.platform.sql.query(
      `UPDATE clients SET tier_features = '{"max_documents": 3}' WHERE id = $1`,
      [acme.clientId],
    );
    try {
      const before = await counts(stack.pool.sql, acme.clientId);
      expect(before.documents).toBe(2);
      const a = await file('a.txt', 'Tubeless tyres seal small punctures themselves.');
      const b = await file('b.txt', 'Disc brakes need bedding in.');
      const err = await ingestDocuments(deps(), {
        clientId: acme.clientId,
        agent: acme.agentSlug,
        files: [a, b],
      }).catch((e) => e);
      expect(err).toBeInstanceOf(LimitError);
      expect(err.limit).toBe('max_documents');
      expect(err.message).toMatch(/at most max_documents = 3 documents; it has 2 and this would add 2/);
      expect(await counts(stack.pool.sql, acme.clientId)).toEqual(before);
    } finally {
      await stack.platform.sql.query(`UPDATE clients SET tier_features = '{}' WHERE id = $1`, [
        acme.clientId,
      ]);
    }
  });

  it('an unsupported file type is a usage error (exit code 2)', async () => {
    const acme = stack.demo!.adventurers[0]!;
    const doc = await file('notes.docx', 'not really');
    const err = await ingestDocuments(deps(), {
      clientId: acme.clientId,
      agent: acme.agentSlug,
      files: [doc],
    }).catch((e) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(exitCodeFor(err)).toBe(2);
  });
});

describe('docs add: within the limits', () => {
  it("chunks with overlap, embeds, writes through the tenant's connection; the sidekick's retrieval finds it", async () => {
    const acme = stack.demo!.adventurers[0]!;
    const md = await file('saddle.md', SADDLE_GUIDE);
    const brakes = await file(
      'brakes.pdf',
      pdf(['Brake pad guide', 'Replace brake pads when less than one millimetre of pad material is left.']),
    );
    const d = deps();
    const result = await ingestDocuments(d, {
      clientId: acme.clientId,
      agent: acme.agentSlug,
      files: [md, brakes],
    });
    expect(result.documents.map((x) => x.outcome)).toEqual(['added', 'added']);
    const [saddle, pads] = result.documents as [(typeof result.documents)[0], (typeof result.documents)[0]];
    expect(saddle.chunks).toBeGreaterThan(2);
    expect(pads.chunks).toBe(1);

    const chunks = await stack.pool.sql.query<{ content: string; chunk_index: number; client_id: string }>(
      'SELECT content, chunk_index, client_id FROM document_chunks WHERE document_id = $1 ORDER BY chunk_index',
      [saddle.documentId],
    );
    expect(chunks).toHaveLength(saddle.chunks);
    for (const c of chunks) {
      expect(c.client_id).toBe(acme.clientId);
      expect(c.content.length).toBeLessThanOrEqual(1000);
    }
    // Neighbouring chunks of the long paragraph overlap: the start of each is found at the end of the
    // one before (chunk 0 is the heading, which the markdown splitter keeps apart).
    expect(chunks[0]!.content).toBe('# Saddle fitting');
    for (let i = 2; i < chunks.length; i++) {
      const head = chunks[i]!.content.slice(0, 40);
      expect(chunks[i - 1]!.content.slice(-200)).toContain(head);
    }
    const [doc] = await stack.pool.sql.query<{ status: string; metadata: Record<string, unknown> }>(
      'SELECT status, metadata FROM documents WHERE id = $1',
      [saddle.documentId],
    );
    expect(doc).toMatchObject({
      status: 'ready',
      metadata: { filename: 'saddle.md', chunks: saddle.chunks },
    });
    // Written with the client's tenant token, never the service key.
    const writes = stack.pool.gateway.requests.filter(
      (r) => r.method === 'POST' && r.path.startsWith('/document_chunks'),
    );
    expect(writes.length).toBeGreaterThan(0);
    for (const w of writes.slice(-2))
      expect(w).toMatchObject({ bearerRole: 'authenticated', usedServiceKey: false });

    const conn = await d.connections.forClient(asClientId(acme.clientId));
    const search = async (question: string) => {
      const { data, error } = await conn.db.rpc('match_documents', {
        p_query_embedding: vectorLiteral(embedder.embedOne(question)),
        p_agent_slug: acme.agentSlug,
        p_match_threshold: 0.1,
        p_match_count: 3,
      });
      expect(error).toBeNull();
      return data as Array<{ document_id: string; title: string }>;
    };
    expect((await search('how high should the saddle height be'))[0]!.document_id).toBe(saddle.documentId);
    expect((await search('when should I replace brake pads'))[0]!.document_id).toBe(pads.documentId);

    // Loading the same file again adds nothing.
    const before = await counts(stack.pool.sql, acme.clientId);
    const again = await ingestDocuments(deps(), {
      clientId: acme.clientId,
      agent: acme.agentSlug,
      files: [md],
    });
    expect(again.documents[0]).toMatchObject({ outcome: 'already_loaded', documentId: saddle.documentId });
    expect(await counts(stack.pool.sql, acme.clientId)).toEqual(before);

    const listed = await listDocuments(deps(), { clientId: acme.clientId, agent: acme.agentSlug });
    expect(listed.documents.map((x) => x.title).sort()).toEqual(
      ['Chain care', 'Tyre pressure guide', 'brakes.pdf', 'saddle.md'].sort(),
    );
  });

  it("a champion's document goes to its own project and its sidekick finds it there", async () => {
    const champion = stack.demo!.champion;
    const before = await counts(stack.dedicated.sql);
    const poolBefore = await counts(stack.pool.sql);
    const guide = await file(
      'lounges.txt',
      'Airport lounges: Nimbus travellers may use business lounges on flights longer than six hours.',
    );
    const d = deps();
    const result = await ingestDocuments(d, {
      clientId: champion.clientId,
      agent: champion.agentSlug,
      files: [guide],
    });
    expect(await counts(stack.dedicated.sql)).toEqual({
      documents: before.documents + 1,
      chunks: before.chunks + 1,
    });
    expect(await counts(stack.pool.sql)).toEqual(poolBefore);
    const conn = await d.connections.forClient(asClientId(champion.clientId));
    const { data } = await conn.db.rpc('match_documents', {
      p_query_embedding: vectorLiteral(embedder.embedOne('can I use the airport lounge')),
      p_agent_slug: champion.agentSlug,
      p_match_threshold: 0.1,
      p_match_count: 1,
    });
    expect((data as Array<{ document_id: string }>)[0]!.document_id).toBe(result.documents[0]!.documentId);
  });
});

describe('the sidekick CLI', () => {
  async function cli(args: string[], env: Record<string, string | undefined> = baseEnv(), stdin = '') {
    let stdout = '';
    let stderr = '';
    const code = await runCli(args, {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      env,
      stdin: Readable.from([stdin]),
    });
    return { code, stdout, stderr };
  }
  function baseEnv(): Record<string, string> {
    return {
      PLATFORM_SUPABASE_URL: stack.platform.url,
      PLATFORM_SUPABASE_SERVICE_ROLE_KEY: stack.platform.serviceRoleKey,
      EMBEDDING_PROVIDER: 'local',
    };
  }

  it('answers --help, and usage and configuration errors exit with 2', async () => {
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/clients/);
    expect(help.stdout).toMatch(/Exit codes: 0 done; 1 failed, worth retrying/);
    const sub = await cli(['clients', 'upgrade', '--help']);
    expect(sub.code).toBe(0);
    expect(sub.stdout).toMatch(/--keep-source/);
    expect((await cli(['clients', 'frobnicate'])).code).toBe(2);
    expect((await cli(['clients', 'create'])).code).toBe(2); // --name is required
    expect((await cli(['clients', 'upgrade', '--client', 'x', '--page-size', 'ten'])).code).toBe(2);
    const noPlatform = await cli(['clients', 'show', '--client', stack.demo!.champion.clientId], {});
    expect(noPlatform.code).toBe(2);
    expect(noPlatform.stderr).toMatch(/PLATFORM_SUPABASE_URL/);
    const noToken = await cli(['clients', 'create', '--name', 'Big Co', '--tier', 'champion']);
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toMatch(/SUPABASE_ACCESS_TOKEN/);
    // An id the platform does not know is bad input (2), like a malformed one.
    const unknown = await cli(['clients', 'show', '--client', '0d0d0d0d-0000-4000-8000-0000000000ff']);
    expect(unknown.code).toBe(2);
  });

  it('create, docs add (and its limit: exit 3), upgrade with --keep-source, show, cleanup, docs list', async () => {
    const created = await cli(['clients', 'create', '--name', 'CLI Cycles', '--json']);
    expect(created.code).toBe(0);
    const { client } = JSON.parse(created.stdout) as {
      client: { id: string; tier: string; provisioning_status: string };
    };
    expect(client).toMatchObject({ tier: 'adventurer', provisioning_status: 'ready' });
    await stack.pool.sql.query(`INSERT INTO agents (client_id, name, slug) VALUES ($1, 'Guide', 'guide')`, [
      client.id,
    ]);

    const notes = await file('cli-notes.md', SADDLE_GUIDE);
    const added = await cli(['docs', 'add', '--client', client.id, '--agent', 'guide', notes, '--json']);
    expect(added.code).toBe(0);
    expect(JSON.parse(added.stdout).documents[0]).toMatchObject({ outcome: 'added', title: 'cli-notes.md' });
    expect(added.stderr).toMatch(/cli-notes\.md: written/);
    const big = await file('cli-big.txt', 'y'.repeat(5 * 1024 * 1024 + 1));
    const refused = await cli(['docs', 'add', '--client', client.id, '--agent', 'guide', big]);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/max_document_size_mb = 5/);

    const target = await stack.addDedicated('cli-target');
    const env = {
      ...baseEnv(),
      DEDICATED_SUPABASE_SERVICE_ROLE_KEY: target.serviceRoleKey,
      DEDICATED_SUPABASE_ANON_KEY: target.anonKey,
    };
    const noTarget = await cli(['clients', 'upgrade', '--client', client.id]);
    expect(noTarget.code).toBe(2);
    const upgraded = await cli(
      [
        'clients',
        'upgrade',
        '--client',
        client.id,
        '--existing-project-url',
        target.url,
        '--existing-project-ref',
        'cli-target',
        '--keep-source',
        '--fence-settle-ms',
        '0',
        '--json',
      ],
      env,
    );
    expect(upgraded.code).toBe(0);
    expect(JSON.parse(upgraded.stdout)).toMatchObject({ outcome: 'cleanup_pending', tier: 'champion' });
    expect(upgraded.stderr).toMatch(/document_chunks: \d+\/\d+ rows? copied/);

    const shown = await cli(['clients', 'show', '--client', client.id, '--json']);
    expect(shown.code).toBe(0);
    const d = JSON.parse(shown.stdout);
    expect(d).toMatchObject({
      tier: 'champion',
      hosting_type: 'dedicated',
      migration: { status: 'cleanup_pending' },
      pool: { write_fence: 'moved' },
      project: { ref: 'cli-target', has_service_role_key: true },
      rows: { agents: 1, documents: 1 },
    });
    expect(shown.stdout).not.toContain(target.serviceRoleKey);

    const cleaned = await cli(['clients', 'cleanup', '--client', client.id, '--json']);
    expect(cleaned.code).toBe(0);
    expect(JSON.parse(cleaned.stdout).deleted).toMatchObject({ documents: 1, agents: 1 });
    // Again: nothing left, and that is not an error.
    const twice = await cli(['clients', 'cleanup', '--client', client.id]);
    expect(twice.code).toBe(0);
    expect(twice.stdout).toMatch(/nothing left/);

    const listed = await cli(['docs', 'list', '--client', client.id, '--agent', 'guide', '--json']);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout).documents.map((x: { title: string }) => x.title)).toEqual([
      'cli-notes.md',
    ]);
    const human = await cli(['docs', 'list', '--client', client.id]);
    expect(human.stdout).toMatch(/ready\s+\d+ chunks?\s+cli-notes\.md {2}\(guide\)/);
  });

  it('chat: a text conversation with a sidekick through the session code, stored in its database', async () => {
    const openai = await startOpenAIServer();
    try {
      const env = { ...baseEnv(), OPENAI_API_KEY: 'sk-loopback', OPENAI_BASE_URL: openai.baseURL };
      const a = stack.demo!.adventurers[0]!;
      const chat = await cli(
        ['chat', '--client', a.clientId, '--agent', a.agentSlug, '--user', stack.demo!.userId],
        env,
        'What tyre pressure should my road bike have?\n/quit\n',
      );
      expect(chat.code).toBe(0);
      expect(chat.stdout).toContain('You said: What tyre pressure should my road bike have?');
      // The greeting, the question and the reply.
      expect(chat.stderr).toMatch(/1 turn; transcript rows written 3, dropped 0/);
      // The reply was grounded in the client's documents, as in a LiveKit session.
      expect(JSON.stringify(openai.chatRequests().at(-1)!.body.messages)).toContain('80 to 100 psi');
      const [row] = await stack.pool.sql.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM conversation_transcripts
          WHERE client_id = $1 AND content = 'What tyre pressure should my road bike have?'`,
        [a.clientId],
      );
      expect(row!.n).toBe(1);

      // Continued with --conversation: the same conversation, without the opening line again.
      const id = /conversation ([0-9a-f-]{36}) \(--conversation to continue it\)/.exec(chat.stdout)![1]!;
      const resumed = await cli(
        [
          'chat',
          '--client',
          a.clientId,
          '--agent',
          a.agentSlug,
          '--user',
          stack.demo!.userId,
          '--conversation',
          id,
        ],
        env,
        'And for gravel?\n/quit\n',
      );
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stderr).toMatch(/1 turn; transcript rows written 2, dropped 0/);
      const turns = await stack.pool.sql.query<{ role: string; content: string }>(
        `SELECT role, content FROM conversation_transcripts WHERE conversation_id = $1 ORDER BY created_at`,
        [id],
      );
      expect(turns.map((t) => t.role)).toEqual(['assistant', 'user', 'assistant', 'user', 'assistant']);
      expect(turns.at(-2)!.content).toBe('And for gravel?');

      // A model that refuses (a bad key, say) is said, not left as silence, and the command fails (1).
      openai.failNext('chat', 401, 10);
      const refused = await cli(['chat', '--client', a.clientId, '--agent', a.agentSlug], env, 'Hello?\n');
      expect(refused.code).toBe(1);
      expect(refused.stdout).toMatch(/# no reply: .*401/);
      expect(refused.stderr).toMatch(
        /the language model did not answer 1 of 1 turns \(.*401.*\): check that OPENAI_BASE_URL \(http:\/\/127\.0\.0\.1:\d+\/v1\) is reachable/,
      );
      openai.reset();

      const noModel = await cli(['chat', '--client', a.clientId, '--agent', a.agentSlug]);
      expect(noModel.code).toBe(2);
      expect(noModel.stderr).toMatch(/OPENAI_API_KEY/);
      const badId = await cli(['chat', '--client', 'acme', '--agent', a.agentSlug], env);
      expect(badId.code).toBe(2);
      expect(badId.stderr).toMatch(/--client.*expected a uuid/);
      const unknown = await cli(['chat', '--client', a.clientId, '--agent', 'no-such-sidekick'], env);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toMatch(/--agent: client .* has no sidekick with slug "no-such-sidekick"/);
      // Another client's conversation: refused before a turn is spoken, naming the option's field.
      const b = stack.demo!.adventurers[1]!;
      const foreign = await cli(
        ['chat', '--client', a.clientId, '--agent', a.agentSlug, '--conversation', b.conversationId],
        env,
        'Hello?\n',
      );
      expect(foreign.code).toBe(2);
      expect(foreign.stderr).toMatch(
        /--conversation: .* is not one of this client's conversations.*leave --conversation out/,
      );
    } finally {
      await openai.close();
    }
  });
});
