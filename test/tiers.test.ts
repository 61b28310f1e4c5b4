import { describe, expect, it } from 'vitest';
import {
  BOOLEAN_FEATURES,
  DEDICATED_TIERS,
  LIMIT_NAMES,
  resolveFeatures,
  TIER_FEATURES,
  TIER_HOSTING,
} from '../src/tenancy/tiers.js';
import { asClientId, asConversationId, asUserId, isTier, TIERS } from '../src/tenancy/types.js';

type Warning = { msg: string; fields: Record<string, unknown> };

function collect() {
  const warnings: Warning[] = [];
  return {
    warnings,
    warn: (msg: string, fields: Record<string, unknown>) => void warnings.push({ msg, fields }),
  };
}

const resolve = (tier: string, tierFeatures: unknown, maxSidekicks: number | null = null) => {
  const { warnings, warn } = collect();
  return { ...resolveFeatures({ tier, tierFeatures, maxSidekicks }, warn), warnings };
};

describe('the tier table', () => {
  it('never gives a higher tier less than a lower one', () => {
    for (let i = 1; i < TIERS.length; i++) {
      const lower = TIER_FEATURES[TIERS[i - 1]!];
      const higher = TIER_FEATURES[TIERS[i]!];
      for (const f of BOOLEAN_FEATURES) if (lower[f]) expect(higher[f], f).toBe(true);
      for (const l of LIMIT_NAMES) {
        const [lo, hi] = [lower[l], higher[l]];
        // null is unlimited: more than any number.
        if (hi !== null)
          expect(lo !== null && lo <= hi, `${l}: ${TIERS[i - 1]} ${lo} vs ${TIERS[i]} ${hi}`).toBe(true);
      }
    }
  });

  it('cannot be changed at run time', () => {
    expect(() => {
      (TIER_FEATURES.adventurer as { video_chat_enabled: boolean }).video_chat_enabled = true;
    }).toThrow(TypeError);
    expect(TIER_FEATURES.adventurer.video_chat_enabled).toBe(false);
  });

  it('offers tier moves exactly to the tiers that live in a dedicated project', () => {
    expect(DEDICATED_TIERS).toEqual(TIERS.filter((t) => TIER_HOSTING[t] === 'dedicated'));
    expect(DEDICATED_TIERS).toEqual(['champion', 'paragon']);
    expect(TIER_HOSTING.adventurer).toBe('shared');
  });
});

describe('resolveFeatures: a client is its tier plus its overrides', () => {
  it.each(TIERS)('%s without overrides: the tier as it is, silently, nothing marked overridden', (tier) => {
    for (const overrides of [undefined, null, {}]) {
      const r = resolve(tier, overrides);
      expect(r.tier).toBe(tier);
      expect(r.features).toEqual(TIER_FEATURES[tier]);
      expect([...r.overridden]).toEqual([]);
      expect(r.warnings).toEqual([]);
    }
  });

  it('merges valid overrides in either direction and says which they are', () => {
    const r = resolve('champion', {
      rag_enabled: false,
      white_label: true,
      max_documents: 200,
      video_chat_enabled: true,
    });
    expect(r.features).toMatchObject({ rag_enabled: false, white_label: true, max_documents: 200 });
    // video is already a champion's: an override that changes nothing is not an override.
    expect([...r.overridden].sort()).toEqual(['max_documents', 'rag_enabled', 'white_label']);
    expect(r.warnings).toEqual([]);
    expect(Object.isFrozen(r.features)).toBe(true);
    expect(TIER_FEATURES.champion.rag_enabled).toBe(true);
  });

  it('grants an adventurer what an operator grants (video), but never a second sidekick: the database fixes that', () => {
    const r = resolve('adventurer', { video_chat_enabled: true, max_sidekicks: 5 });
    expect(r.features.video_chat_enabled).toBe(true);
    expect(r.overridden.has('video_chat_enabled')).toBe(true);
    expect(r.features.max_sidekicks).toBe(1);
    expect(r.overridden.has('max_sidekicks')).toBe(false);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]?.fields).toMatchObject({ tier: 'adventurer', key: 'max_sidekicks', fixed: 1 });
  });

  it("takes the platform's clients.max_sidekicks over tier_features", () => {
    const r = resolve('champion', { max_sidekicks: 3 }, 7);
    expect(r.features.max_sidekicks).toBe(7);
    expect(resolve('champion', { max_sidekicks: 3 }).features.max_sidekicks).toBe(3);
  });

  it('drops unknown keys and wrongly typed values, each with a warning naming the key', () => {
    const r = resolve('champion', {
      teleport_enabled: true,
      video_chat_enabled: 'yes',
      rag_enabled: 1,
      max_documents: -3,
      max_document_size_mb: 2.5,
      max_sidekicks: '10',
      priority_support: true,
    });
    expect(r.features).toEqual({ ...TIER_FEATURES.champion, priority_support: true });
    expect(r.warnings.map((w) => w.fields.key).sort()).toEqual(
      [
        'max_document_size_mb',
        'max_documents',
        'max_sidekicks',
        'rag_enabled',
        'teleport_enabled',
        'video_chat_enabled',
      ].sort(),
    );
    expect(r.warnings.find((w) => w.fields.key === 'video_chat_enabled')?.fields).toMatchObject({
      expected: 'a boolean',
      got: 'string',
    });
    expect(r.warnings.find((w) => w.fields.key === 'teleport_enabled')?.msg).toMatch(/unknown feature/);
  });

  it('ignores overrides that are not a JSON object, with one warning', () => {
    for (const overrides of [[{ rag_enabled: false }], 'rag_enabled', 7, true]) {
      const r = resolve('paragon', overrides);
      expect(r.features).toEqual(TIER_FEATURES.paragon);
      expect(r.warnings).toHaveLength(1);
      expect(r.warnings[0]?.msg).toMatch(/not a JSON object/);
    }
  });

  it.each(['', 'legendary', 'Champion', 'PARAGON'])(
    'treats unknown tier %j as the least privileged',
    (tier) => {
      const r = resolve(tier, {});
      expect(r.tier).toBe('adventurer');
      expect(r.features).toEqual(TIER_FEATURES.adventurer);
      expect(r.warnings).toEqual([expect.objectContaining({ fields: { tier, used: 'adventurer' } })]);
    },
  );

  it('holds an unknown tier to the fixed adventurer facts too', () => {
    const r = resolve('gold', { max_sidekicks: null, video_chat_enabled: true });
    expect(r.features).toMatchObject({ max_sidekicks: 1, video_chat_enabled: true });
  });
});

describe('tenancy types', () => {
  const id = '6F9619FF-8B86-D011-B42D-00C04FC964FF';

  it('brands valid uuids, lower-cased', () => {
    for (const make of [asClientId, asConversationId, asUserId]) expect(make(id)).toBe(id.toLowerCase());
  });

  it('rejects anything else with a TypeError naming the field, without echoing the value', () => {
    expect(() => asClientId('not-a-uuid')).toThrow(
      new TypeError('client_id: expected a uuid (8-4-4-4-12 hex digits), got a string of length 10'),
    );
    expect(() => asUserId(42, 'metadata.user_id')).toThrow(
      /^metadata\.user_id: expected a uuid.*got number$/,
    );
    expect(() => asUserId(`${id} `)).toThrow(TypeError);
    expect(() => asConversationId(null)).toThrow(/^conversation_id:/);
  });

  it('knows the tiers, and nothing else is one', () => {
    expect(TIERS.every(isTier)).toBe(true);
    expect(isTier('Champion')).toBe(false);
    expect(isTier(undefined)).toBe(false);
  });
});
