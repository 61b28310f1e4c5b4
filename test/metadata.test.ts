import { describe, expect, it } from 'vitest';
import { InvalidJobMetadataError } from '../src/agent/errors.js';
import { parseJobMetadata } from '../src/agent/metadata.js';

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
    ['a JSON array', '[]', 'metadata', 'must be a JSON object'],
    ['no client_id', JSON.stringify({ agent_slug: 'x' }), 'client_id', 'is required'],
    [
      'client_id not a uuid',
      JSON.stringify({ client_id: 'acme', agent_slug: 'x' }),
      'client_id',
      'must be a uuid',
    ],
    ['client_id a number', JSON.stringify({ client_id: 7, agent_slug: 'x' }), 'client_id', ''],
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
