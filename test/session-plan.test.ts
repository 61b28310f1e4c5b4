import { describe, expect, it } from 'vitest';
import { NoChannelAllowedError } from '../src/agent/errors.js';
import { decideSession } from '../src/agent/session-plan.js';
import type { SidekickRow } from '../src/tenancy/sidekicks.js';
import { resolveFeatures } from '../src/tenancy/tiers.js';
import type { Tier } from '../src/tenancy/types.js';

const clientId = 'c1c1c1c1-0000-4000-8000-000000000001';

function sidekick(over: Partial<SidekickRow> = {}): SidekickRow {
  return {
    id: '5e5e5e5e-0000-4000-8000-000000000001',
    name: 'Guide',
    slug: 'guide',
    system_prompt: 'You are the guide.',
    greeting: 'Hello!',
    voice_settings: { voice: 'nova' },
    voice_chat_enabled: true,
    text_chat_enabled: true,
    video_chat_enabled: true,
    tools_config: {},
    ...over,
  };
}

/** The plan of a client of `tier` (with its overrides) for a sidekick: through the real feature resolution. */
function plan(tier: Tier, s: SidekickRow = sidekick(), tierFeatures: Record<string, unknown> = {}) {
  const { features, overridden } = resolveFeatures({ tier, tierFeatures }, () => {});
  return decideSession({ clientId, tier, features, overridden, sidekick: s });
}

describe('the session plan: what the tier allows AND what the sidekick switches on', () => {
  it('a channel needs both, and the reason says which side said no', () => {
    expect(plan('champion').audio).toEqual({
      enabled: true,
      reason: 'voice chat is allowed by the champion tier and switched on on the sidekick',
    });
    expect(plan('champion', sidekick({ video_chat_enabled: false })).video).toEqual({
      enabled: false,
      reason: 'video chat is switched off on the sidekick',
    });
    // A column left NULL is not a yes.
    expect(plan('champion', sidekick({ text_chat_enabled: null })).text.enabled).toBe(false);
    expect(plan('champion', sidekick(), { voice_chat_enabled: false }).audio).toEqual({
      enabled: false,
      reason: "voice chat is not allowed by this client's tier_features override",
    });
  });

  it('an adventurer gets no video by default, whatever its sidekick says', () => {
    expect(plan('adventurer').video).toEqual({
      enabled: false,
      reason: 'video chat is not allowed by the adventurer tier',
    });
  });

  it("an adventurer an operator granted video gets it, and the plan says it is the client's override", () => {
    const granted = plan('adventurer', sidekick(), { video_chat_enabled: true });
    expect(granted.video).toEqual({
      enabled: true,
      reason: "video chat is allowed by this client's tier_features override and switched on on the sidekick",
    });
  });

  it('a custom voice only where the tier has custom voices; otherwise the worker default (null)', () => {
    expect(plan('champion').voice).toMatchObject({ name: 'nova', custom: true });
    expect(plan('adventurer').voice).toEqual({
      name: null,
      custom: false,
      reason: 'a custom voice is not allowed by the adventurer tier; using the default voice',
    });
    expect(plan('paragon', sidekick({ voice_settings: {} })).voice).toMatchObject({
      name: null,
      custom: false,
    });
  });

  it('document retrieval follows the tier and its override', () => {
    expect(plan('adventurer').rag.enabled).toBe(true);
    expect(plan('champion', sidekick(), { rag_enabled: false }).rag).toEqual({
      enabled: false,
      reason: "document retrieval is not allowed by this client's tier_features override",
    });
  });

  it('a sidekick allowed neither voice nor text is refused, with both reasons', () => {
    const silent = sidekick({ voice_chat_enabled: false, text_chat_enabled: false });
    expect(() => plan('paragon', silent)).toThrow(NoChannelAllowedError);
    expect(() => plan('paragon', silent)).toThrow(
      'sidekick "guide" of client c1c1c1c1-0000-4000-8000-000000000001 may use neither voice nor text: voice chat is switched off on the sidekick; text chat is switched off on the sidekick',
    );
  });

  it('a sidekick without a prompt gets default instructions, and no greeting', () => {
    const p = plan('paragon', sidekick({ system_prompt: '  ', greeting: null }));
    expect(p.sidekick.instructions).toMatch(/helpful voice assistant/);
    expect(p.sidekick.greeting).toBeNull();
    expect(plan('paragon').sidekick).toMatchObject({
      instructions: 'You are the guide.',
      greeting: 'Hello!',
    });
  });
});

describe('the session plan: tools (tools_config against max_tools and custom_integrations)', () => {
  const tool = (name: string, more: Record<string, unknown> = {}) => ({
    name,
    description: `the ${name} tool`,
    endpoint: { url: `https://api.example.com/${name}` },
    ...more,
  });
  const mcp = (name: string) => ({ name, url: `https://mcp.example.com/${name}` });
  const withTools = (toolsConfig: unknown) => sidekick({ tools_config: toolsConfig });

  it('an adventurer keeps the first 2, a champion 20, a paragon all; an override moves the limit and says so', () => {
    const four = withTools({ tools: ['a', 'b', 'c', 'd'].map((n) => tool(n)) });
    expect(plan('adventurer', four).tools.http.map((t) => t.name)).toEqual(['a', 'b']);
    expect(plan('adventurer', four).tools.reason).toBe(
      '2 of 4 configured tools (max_tools 2 from the adventurer tier)',
    );
    expect(plan('adventurer', four).tools.leftOut.map((l) => l.name)).toEqual(['c', 'd']);
    expect(plan('champion', four).tools.http).toHaveLength(4);
    expect(plan('paragon', four).tools.reason).toBe(
      '4 of 4 configured tools (unlimited by the paragon tier)',
    );
    const three = plan('adventurer', four, { max_tools: 3 }).tools;
    expect(three.http.map((t) => t.name)).toEqual(['a', 'b', 'c']);
    expect(three.leftOut[0]!.problem).toBe(
      "beyond max_tools (3, from this client's tier_features override): only the first 3 are used",
    );
    expect(plan('champion', four, { max_tools: 0 }).tools.http).toEqual([]);
  });

  it('MCP servers need custom_integrations: a paragon, or a champion granted it; they count against max_tools', () => {
    const both = withTools({ tools: [tool('a')], mcp_servers: [mcp('crm')] });
    expect(plan('champion', both).tools.mcp).toEqual([]);
    expect(plan('champion', both).tools.leftOut).toEqual([
      {
        entry: 'mcp_servers[0]',
        name: 'crm',
        problem: 'MCP servers need custom_integrations, which is not allowed by the champion tier',
      },
    ]);
    expect(plan('paragon', both).tools.mcp.map((m) => m.name)).toEqual(['crm']);
    expect(plan('champion', both, { custom_integrations: true }).tools.mcp).toHaveLength(1);
    const granted = plan('adventurer', both, { custom_integrations: true, max_tools: 1 }).tools;
    expect([granted.http.length, granted.mcp.length]).toEqual([1, 0]);
  });

  it('bad entries are left out one by one with the field named; defaults are filled in; nothing throws', () => {
    const p = plan(
      'paragon',
      withTools({
        tools: [
          tool('ok'),
          tool('ok'),
          tool('creds', { endpoint: { url: 'https://x.example', headers: { 'X-Api-Key': 'abc' } } }),
          tool('nosecret', { secret: { name: 'lower-case' } }),
          { name: 'extra', description: 'd', endpoint: { url: 'https://x.example' }, surprise: 1 },
          'not an object',
        ],
        mcp_servers: 'not a list',
        else: true,
      }),
    ).tools;
    expect(p.http.map((t) => t.name)).toEqual(['ok']);
    expect(p.http[0]).toMatchObject({
      timeout_ms: 5000,
      endpoint: { method: 'POST', headers: {} },
      response: { max_chars: 2000 },
    });
    expect(p.leftOut.map((l) => `${l.entry} ${l.problem}`)).toEqual([
      'tools_config unknown field else (ignored)',
      'tools[1] the name is used by an earlier entry',
      'tools[2] endpoint.headers.X-Api-Key: looks like a credential: store it with `sidekick secrets set` and name it in "secret" instead',
      expect.stringMatching(/^tools\[3\] secret\.name: must be a secret name/),
      'tools[4] unknown field surprise',
      expect.stringMatching(/^tools\[5\] /),
      'mcp_servers is not a list',
    ]);
    for (const stored of [null, {}, undefined])
      expect(plan('paragon', withTools(stored)).tools.http).toEqual([]);
    expect(plan('paragon', withTools('junk')).tools.leftOut[0]!.entry).toBe('tools_config');
  });
});
