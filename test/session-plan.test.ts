import { describe, expect, it } from 'vitest';
import { NoChannelAllowedError } from '../src/agent/errors.js';
import { decideSession, type SidekickRow } from '../src/agent/session-plan.js';
import { resolveFeatures, TIER_FEATURES } from '../src/tenancy/tiers.js';
import { TIERS, type Tier } from '../src/tenancy/types.js';

const DEFAULTS = { defaultVoice: 'alloy' };

function sidekick(flags: {
  voice: boolean;
  text: boolean;
  video: boolean;
  customVoice: boolean;
}): SidekickRow {
  return {
    id: '5e5e5e5e-0000-4000-8000-000000000001',
    name: 'Guide',
    slug: 'guide',
    system_prompt: 'You are the guide.',
    greeting: 'Hello!',
    voice_settings: flags.customVoice ? { voice: 'nova' } : {},
    voice_chat_enabled: flags.voice,
    text_chat_enabled: flags.text,
    video_chat_enabled: flags.video,
  };
}

const bools = [true, false];
const table = TIERS.flatMap((tier) =>
  bools.flatMap((voice) =>
    bools.flatMap((text) =>
      bools.flatMap((video) => bools.map((customVoice) => ({ tier, voice, text, video, customVoice }))),
    ),
  ),
);

/** The rules as the product states them, written out independently of the code under test. */
function expected(row: (typeof table)[number]) {
  const paid = row.tier !== 'adventurer';
  return {
    audio: row.voice,
    text: row.text,
    video: paid && row.video,
    voice: paid && row.customVoice ? 'nova' : 'alloy',
    customVoice: paid && row.customVoice,
    rag: true,
  };
}

describe('the tier gate: every tier × sidekick flag combination', () => {
  it.each(table)('%o', (row) => {
    const input = {
      clientId: 'c1c1c1c1-0000-4000-8000-000000000001',
      tier: row.tier,
      features: TIER_FEATURES[row.tier],
      sidekick: sidekick(row),
    };
    if (!row.voice && !row.text) {
      expect(() => decideSession(input, DEFAULTS)).toThrow(NoChannelAllowedError);
      return;
    }
    const plan = decideSession(input, DEFAULTS);
    const want = expected(row);
    expect({
      audio: plan.audio.enabled,
      text: plan.text.enabled,
      video: plan.video.enabled,
      voice: plan.voice.name,
      customVoice: plan.voice.custom,
      rag: plan.rag.enabled,
    }).toEqual(want);
    for (const d of [plan.audio, plan.text, plan.video, plan.rag])
      expect(d.reason.length).toBeGreaterThan(10);
    expect(plan.sidekick).toMatchObject({
      slug: 'guide',
      instructions: 'You are the guide.',
      greeting: 'Hello!',
    });
  });

  it('has 48 rows (3 tiers × 2^4 flags)', () => {
    expect(table).toHaveLength(48);
  });
});

describe('reasons and overrides', () => {
  const all = { voice: true, text: true, video: true, customVoice: true };
  const clientId = 'c1c1c1c1-0000-4000-8000-000000000001';

  it('an adventurer never gets video, even when an override grants it', () => {
    const features = resolveFeatures('adventurer', { video_chat_enabled: true }, () => {});
    expect(features.video_chat_enabled).toBe(true);
    const plan = decideSession({ clientId, tier: 'adventurer', features, sidekick: sidekick(all) }, DEFAULTS);
    expect(plan.video).toEqual({ enabled: false, reason: 'video is never available to the adventurer tier' });
  });

  it('says whether the tier or the sidekick switched a channel off', () => {
    const features = resolveFeatures('champion', { voice_chat_enabled: false }, () => {});
    const plan = decideSession(
      { clientId, tier: 'champion', features, sidekick: sidekick({ ...all, video: false }) },
      DEFAULTS,
    );
    expect(plan.audio.reason).toBe('voice chat is not part of the champion tier');
    expect(plan.video.reason).toBe('video chat is switched off on the sidekick');
    expect(plan.text.enabled).toBe(true);
  });

  it('a tier without RAG gets no document lookup', () => {
    const features = resolveFeatures('champion', { rag_enabled: false }, () => {});
    const plan = decideSession({ clientId, tier: 'champion', features, sidekick: sidekick(all) }, DEFAULTS);
    expect(plan.rag.enabled).toBe(false);
  });

  it('a sidekick without a prompt gets sensible default instructions and no greeting', () => {
    const s = { ...sidekick(all), system_prompt: '  ', greeting: null };
    const plan = decideSession(
      { clientId, tier: 'paragon' as Tier, features: TIER_FEATURES.paragon, sidekick: s },
      DEFAULTS,
    );
    expect(plan.sidekick.instructions).toMatch(/helpful voice assistant/);
    expect(plan.sidekick.greeting).toBeNull();
  });
});
