import { describe, expect, it } from 'vitest';
import { InvalidJobMetadataError } from '../src/agent/errors.js';
import { JOB_METADATA_LIMITS, parseJobMetadata } from '../src/agent/metadata.js';

const CLIENT = '3f0c9a52-8d1e-4c4b-9f5e-2a7b6c1d0e9f';
const USER = '0d0d0d0d-0000-4000-8000-00000000000a';

function refusal(raw: string | undefined): InvalidJobMetadataError {
  try {
    parseJobMetadata(raw);
  } catch (err) {
    if (err instanceof InvalidJobMetadataError) return err;
    throw err;
  }
  throw new Error('expected the metadata to be refused');
}

describe('job metadata', () => {
  it('accepts the documented contract', () => {
    const m = parseJobMetadata(
      JSON.stringify({
        client_id: CLIENT.toUpperCase(),
        agent_slug: 'bike-guide',
        user_id: USER,
        conversation_id: 'c3c3c3c3-0000-4000-8000-0000000000c3',
        hosting_type: 'shared',
      }),
    );
    expect(m).toEqual({
      clientId: CLIENT,
      agentSlug: 'bike-guide',
      userId: USER,
      conversationId: 'c3c3c3c3-0000-4000-8000-0000000000c3',
      hostingTypeHint: 'shared',
      ignoredCredentialFields: [],
    });
  });

  it('accepts the minimum: client and sidekick', () => {
    const m = parseJobMetadata(JSON.stringify({ client_id: CLIENT, agent_slug: 'trip-planner' }));
    expect(m.userId).toBeUndefined();
    expect(m.conversationId).toBeUndefined();
    expect(m.hostingTypeHint).toBeUndefined();
  });

  it.each([
    ['empty metadata', undefined, 'metadata', 'is empty'],
    ['blank metadata', '  ', 'metadata', 'is empty'],
    ['not JSON', '{client_id:', 'metadata', 'not valid JSON'],
    ['a JSON array', '[]', 'metadata', 'must be a JSON object, got an array'],
    ['no client_id', JSON.stringify({ agent_slug: 'x' }), 'client_id', 'is required'],
    [
      'client_id not a uuid',
      JSON.stringify({ client_id: 'acme', agent_slug: 'x' }),
      'client_id',
      'must be a uuid',
    ],
    [
      'client_id a number',
      JSON.stringify({ client_id: 7, agent_slug: 'x' }),
      'client_id',
      "must be a string: a uuid, the client's id in the platform clients table, got a number",
    ],
    [
      'user_id a number (optional, not missing)',
      JSON.stringify({ client_id: CLIENT, agent_slug: 'x', user_id: 12 }),
      'user_id',
      "must be a string: a uuid, the end user's id, got a number",
    ],
    [
      'conversation_id null',
      JSON.stringify({ client_id: CLIENT, agent_slug: 'x', conversation_id: null }),
      'conversation_id',
      'got null',
    ],
    [
      'agent_slug an object',
      JSON.stringify({ client_id: CLIENT, agent_slug: { slug: 'x' } }),
      'agent_slug',
      "must be a string: the sidekick's slug, got an object",
    ],
    [
      'hosting_type a boolean',
      JSON.stringify({ client_id: CLIENT, agent_slug: 'x', hosting_type: true }),
      'hosting_type',
      'must be "shared" or "dedicated" (a hint only), got a boolean',
    ],
    ['no agent_slug', JSON.stringify({ client_id: CLIENT }), 'agent_slug', 'is required'],
    [
      'agent_slug with spaces',
      JSON.stringify({ client_id: CLIENT, agent_slug: 'my bot' }),
      'agent_slug',
      'slug',
    ],
    [
      'user_id not a uuid',
      JSON.stringify({ client_id: CLIENT, agent_slug: 'x', user_id: 'bob' }),
      'user_id',
      'uuid',
    ],
    [
      'conversation_id not a uuid',
      JSON.stringify({ client_id: CLIENT, agent_slug: 'x', conversation_id: '12' }),
      'conversation_id',
      'uuid',
    ],
    [
      'unknown hosting_type',
      JSON.stringify({ client_id: CLIENT, agent_slug: 'x', hosting_type: 'cloud' }),
      'hosting_type',
      '"shared" or "dedicated"',
    ],
  ])('refuses %s, naming the field', (_case, raw, field, problem) => {
    const err = refusal(raw);
    expect(err.code).toBe('invalid_job_metadata');
    const issue = err.issues.find((i) => i.field === field);
    expect(issue, `issues: ${JSON.stringify(err.issues)}`).toBeDefined();
    expect(issue!.problem).toContain(problem);
    expect(err.message).toContain(`${field}:`);
  });

  it('refuses metadata over 64 KiB before parsing it, naming the limit', () => {
    const huge = JSON.stringify({ client_id: CLIENT, agent_slug: 'x', blob: 'y'.repeat(1024 * 1024) });
    const err = refusal(huge);
    expect(err.issues).toEqual([
      {
        field: 'metadata',
        problem: expect.stringContaining(
          `is ${huge.length} bytes, over the limit of 65536 bytes (64 KiB) for job metadata`,
        ),
      },
    ]);
    // Not parsed: broken JSON of that size gets the same answer, not "not valid JSON".
    expect(refusal(`{${'x'.repeat(70_000)}`).issues[0]!.problem).toMatch(/over the limit of 65536 bytes/);
    // Bytes, not characters: 40,000 two-byte characters are 80,000 bytes.
    expect(
      refusal(JSON.stringify({ client_id: CLIENT, agent_slug: 'x', n: 'é'.repeat(40_000) })).message,
    ).toMatch(/over the limit/);
    expect(JOB_METADATA_LIMITS).toEqual({ bytes: 65536, keys: 1000, depth: 8 });
  });

  it('refuses 100,000 keys (over the size), more than 1,000 keys, or nesting deeper than 8', () => {
    const many = (n: number) =>
      JSON.stringify({
        client_id: CLIENT,
        agent_slug: 'x',
        ...Object.fromEntries([...Array(n)].map((_, i) => [`k${i}`, 0])),
      });
    expect(refusal(many(100_000)).message).toMatch(/over the limit of 65536 bytes/);
    expect(refusal(many(1000)).message).toContain(
      'holds more than 1000 keys and array items, the limit of job metadata',
    );
    expect(parseJobMetadata(many(990)).clientId).toBe(CLIENT);
    const nest = (depth: number): unknown => (depth === 1 ? 0 : { n: nest(depth - 1) });
    const deep = (levels: number) => JSON.stringify({ client_id: CLIENT, agent_slug: 'x', n: nest(levels) });
    expect(parseJobMetadata(deep(8)).clientId).toBe(CLIENT); // 8 levels, the document's own included
    expect(refusal(deep(9)).message).toContain('nests deeper than 8 levels, the limit of job metadata');
    // A hostile nesting inside the size limit is refused, not walked until the stack overflows.
    expect(
      refusal(`{"client_id":"${CLIENT}","a":${'['.repeat(30_000)}${']'.repeat(30_000)}}`).message,
    ).toContain('nests deeper than 8 levels');
  });

  it('never echoes a wrong value, only its kind', () => {
    const secret = 'eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2ln';
    const err = refusal(JSON.stringify({ client_id: { token: secret }, agent_slug: 42 }));
    expect(err.message).toBe(
      "invalid job metadata: client_id: must be a string: a uuid, the client's id in the platform clients table, got an object; agent_slug: must be a string: the sidekick's slug, got a number",
    );
    expect(err.message).not.toContain(secret);
  });

  it('finds credential-like names at any depth, Authorization-style ones included', () => {
    const secret = 'sk-live-0123456789abcdef';
    const m = parseJobMetadata(
      JSON.stringify({
        client_id: CLIENT,
        agent_slug: 'x',
        auth: { Authorization: `Bearer ${secret}` },
        headers: [{ 'X-Api-Key': secret }, { accept: 'json' }],
        context: {
          db: { database_url: 'postgres://u:p@h/db', service_key: secret },
          monkey: 'fine',
          tokens: 3,
        },
      }),
    );
    expect(m.ignoredCredentialFields).toEqual([
      'auth.Authorization',
      'headers.0.X-Api-Key',
      'context.db.database_url',
      'context.db.service_key',
    ]);
    expect(JSON.stringify(m)).not.toContain(secret);
  });

  it('lists every bad field at once', () => {
    const err = refusal(JSON.stringify({ client_id: 'x', user_id: 'y' }));
    expect(err.issues.map((i) => i.field).sort()).toEqual(['agent_slug', 'client_id', 'user_id']);
  });

  it('ignores credentials sent in metadata and never repeats their values', () => {
    const secret = 'eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2ln';
    const m = parseJobMetadata(
      JSON.stringify({
        client_id: CLIENT,
        agent_slug: 'x',
        supabase_url: 'https://evil.example',
        supabase_service_role_key: secret,
      }),
    );
    expect(m.ignoredCredentialFields).toEqual(['supabase_url', 'supabase_service_role_key']);
    expect(JSON.stringify(m)).not.toContain(secret);
    const err = refusal(
      JSON.stringify({ client_id: 'nope', agent_slug: 'x', supabase_service_role_key: secret }),
    );
    expect(err.message).not.toContain(secret);
  });
});
