import { describe, expect, it } from 'vitest';
import {
  BOOLEAN_FEATURES,
  LIMIT_NAMES,
  limitOf,
  mayUse,
  resolveFeatures,
  TIER_FEATURES,
  TIER_HOSTING,
  type TierFeatures,
  withinLimit,
} from '../src/tenancy/tiers.js';
import {
  asAgentId,
  asClientId,
  asConversationId,
  asPoolId,
  asUserId,
  HOSTING_TYPES,
  isHostingType,
  isTier,
  TIERS,
} from '../src/tenancy/types.js';

type Warning = { msg: string; fields: Record<string, unknown> };

function collect() {
  const warnings: Warning[] = [];
  return {
    warnings,
    warn: (msg: string, fields: Record<string, unknown>) => void warnings.push({ msg, fields }),
  };
}

/** The plan's Phase 4.2 table, plus text chat for every tier and false where the plan omits a flag. */
const EXPECTED: Record<(typeof TIERS)[number], TierFeatures> = {
  adventurer: {
    max_sidekicks: 1,
    max_documents: 50,
    max_document_size_mb: 5,
    text_chat_enabled: true,
    rag_enabled: true,
    voice_chat_enabled: true,
    video_chat_enabled: false,
    custom_voice_enabled: false,
    api_access_enabled: false,
    priority_support: false,
    white_label: false,
    custom_integrations: false,
    dedicated_support_channel: false,
  },
  champion: {
    max_sidekicks: null,
    max_documents: null,
    max_document_size_mb: 50,
    text_chat_enabled: true,
    rag_enabled: true,
    voice_chat_enabled: true,
    video_chat_enabled: true,
    custom_voice_enabled: true,
    api_access_enabled: true,
    priority_support: false,
    white_label: false,
    custom_integrations: false,
    dedicated_support_channel: false,
  },
  paragon: {
    max_sidekicks: null,
    max_documents: null,
    max_document_size_mb: null,
    text_chat_enabled: true,
    rag_enabled: true,
    voice_chat_enabled: true,
    video_chat_enabled: true,
    custom_voice_enabled: true,
    api_access_enabled: true,
    priority_support: true,
    white_label: true,
    custom_integrations: true,
    dedicated_support_channel: true,
  },
};

describe('TIER_FEATURES', () => {
  it.each(TIERS)('%s has the full feature table', (tier) => {
    expect(TIER_FEATURES[tier]).toEqual(EXPECTED[tier]);
    expect(Object.keys(TIER_FEATURES[tier]).sort()).toEqual([...BOOLEAN_FEATURES, ...LIMIT_NAMES].sort());
  });

  it('is deeply frozen', () => {
    expect(Object.isFrozen(TIER_FEATURES)).toBe(true);
    for (const tier of TIERS) expect(Object.isFrozen(TIER_FEATURES[tier])).toBe(true);
    expect(() => {
      (TIER_FEATURES.adventurer as { video_chat_enabled: boolean }).video_chat_enabled = true;
    }).toThrow(TypeError);
  });

  it('puts adventurers in the shared pool and the others on dedicated projects', () => {
    expect(TIER_HOSTING).toEqual({ adventurer: 'shared', champion: 'dedicated', paragon: 'dedicated' });
  });
});

describe('resolveFeatures', () => {
  it.each(TIERS)('gives %s its defaults without overrides, silently', (tier) => {
    for (const overrides of [undefined, null, {}]) {
      const { warnings, warn } = collect();
      expect(resolveFeatures(tier, overrides, warn)).toEqual(EXPECTED[tier]);
      expect(warnings).toEqual([]);
    }
  });

  it('merges valid overrides over the tier defaults', () => {
    const { warnings, warn } = collect();
    const features = resolveFeatures(
      'champion',
      { rag_enabled: false, white_label: true, max_documents: 200, max_document_size_mb: null },
      warn,
    );
    expect(features).toEqual({
      ...EXPECTED.champion,
      rag_enabled: false,
      white_label: true,
      max_documents: 200,
      max_document_size_mb: null,
    });
    expect(warnings).toEqual([]);
    expect(Object.isFrozen(features)).toBe(true);
    expect(TIER_FEATURES.champion.rag_enabled).toBe(true);
  });

  it("applies an operator's grant to an adventurer, except the sidekick limit the database fixes", () => {
    const { warnings, warn } = collect();
    const features = resolveFeatures('adventurer', { video_chat_enabled: true, max_sidekicks: 5 }, warn);
    expect(features.video_chat_enabled).toBe(true);
    expect(features.max_sidekicks).toBe(1);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.fields).toMatchObject({ tier: 'adventurer', key: 'max_sidekicks', fixed: 1 });
  });

  it('drops unknown keys and wrongly typed values, each with a warning naming the key', () => {
    const { warnings, warn } = collect();
    const features = resolveFeatures(
      'champion',
      {
        teleport_enabled: true,
        video_chat_enabled: 'yes',
        rag_enabled: 1,
        max_documents: -3,
        max_document_size_mb: 2.5,
        max_sidekicks: '10',
        priority_support: true,
      },
      warn,
    );
    expect(features).toEqual({ ...EXPECTED.champion, priority_support: true });
    expect(warnings.map((w) => w.fields.key).sort()).toEqual(
      [
        'max_document_size_mb',
        'max_documents',
        'max_sidekicks',
        'rag_enabled',
        'teleport_enabled',
        'video_chat_enabled',
      ].sort(),
    );
    const video = warnings.find((w) => w.fields.key === 'video_chat_enabled');
    expect(video?.fields).toMatchObject({ expected: 'a boolean', got: 'string' });
    expect(warnings.find((w) => w.fields.key === 'teleport_enabled')?.msg).toMatch(/unknown feature/);
  });

  it('ignores overrides that are not a JSON object', () => {
    for (const overrides of [[{ rag_enabled: false }], 'rag_enabled', 7, true]) {
      const { warnings, warn } = collect();
      expect(resolveFeatures('paragon', overrides, warn)).toEqual(EXPECTED.paragon);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]?.msg).toMatch(/not a JSON object/);
    }
  });

  it.each(['', 'legendary', 'Champion', 'PARAGON'])(
    'gives unknown tier %j the least-privileged features',
    (tier) => {
      const { warnings, warn } = collect();
      expect(resolveFeatures(tier, {}, warn)).toEqual(EXPECTED.adventurer);
      expect(warnings).toEqual([expect.objectContaining({ fields: { tier, used: 'adventurer' } })]);
    },
  );

  it('holds an unknown tier to the fixed adventurer limits too', () => {
    const { warn } = collect();
    expect(resolveFeatures('gold', { max_sidekicks: null, video_chat_enabled: true }, warn)).toMatchObject({
      max_sidekicks: 1,
      video_chat_enabled: true,
    });
  });
});

describe('feature helpers', () => {
  const adventurer = TIER_FEATURES.adventurer;
  const paragon = TIER_FEATURES.paragon;

  it('mayUse reads boolean features', () => {
    expect(mayUse(adventurer, 'voice_chat_enabled')).toBe(true);
    expect(mayUse(adventurer, 'video_chat_enabled')).toBe(false);
    expect(mayUse(paragon, 'white_label')).toBe(true);
  });

  it('limitOf returns the limit, null for unlimited', () => {
    expect(limitOf(adventurer, 'max_documents')).toBe(50);
    expect(limitOf(paragon, 'max_documents')).toBeNull();
  });

  it('withinLimit allows counts up to and including the limit, and anything when unlimited', () => {
    expect(withinLimit(adventurer, 'max_sidekicks', 1)).toBe(true);
    expect(withinLimit(adventurer, 'max_sidekicks', 2)).toBe(false);
    expect(withinLimit(adventurer, 'max_document_size_mb', 4.5)).toBe(true);
    expect(withinLimit(adventurer, 'max_document_size_mb', 5.1)).toBe(false);
    expect(withinLimit(paragon, 'max_sidekicks', 10_000)).toBe(true);
    expect(withinLimit(TIER_FEATURES.champion, 'max_document_size_mb', 51)).toBe(false);
  });

  it('withinLimit rejects nonsense counts', () => {
    expect(() => withinLimit(adventurer, 'max_documents', -1)).toThrow(RangeError);
    expect(() => withinLimit(adventurer, 'max_documents', Number.NaN)).toThrow(RangeError);
  });
});

describe('tenancy types', () => {
  const id = '6F9619FF-8B86-D011-B42D-00C04FC964FF';

  it('brands valid uuids, lower-cased', () => {
    for (const make of [asClientId, asPoolId, asAgentId, asConversationId, asUserId]) {
      expect(make(id)).toBe(id.toLowerCase());
    }
  });

  it('rejects anything else with a TypeError naming the field, without echoing the value', () => {
    expect(() => asClientId('not-a-uuid')).toThrow(
      new TypeError('client_id: expected a uuid (8-4-4-4-12 hex digits), got a string of length 10'),
    );
    expect(() => asAgentId(42, 'metadata.agent_id')).toThrow(
      /^metadata\.agent_id: expected a uuid.*got number$/,
    );
    expect(() => asUserId(`${id} `)).toThrow(TypeError);
    expect(() => asPoolId(undefined)).toThrow(/^pool_id:/);
    expect(() => asConversationId(null)).toThrow(/^conversation_id:/);
  });

  it('knows the tiers and hosting types', () => {
    expect(TIERS).toEqual(['adventurer', 'champion', 'paragon']);
    expect(HOSTING_TYPES).toEqual(['shared', 'dedicated']);
    expect(TIERS.every(isTier)).toBe(true);
    expect(isTier('Champion')).toBe(false);
    expect(isTier(undefined)).toBe(false);
    expect(HOSTING_TYPES.every(isHostingType)).toBe(true);
    expect(isHostingType('hybrid')).toBe(false);
  });
});
