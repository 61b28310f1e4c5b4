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
