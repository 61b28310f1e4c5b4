import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { BOOLEAN_FEATURES, LIMIT_NAMES, TIER_FEATURES, TIER_HOSTING } from '../src/tenancy/tiers.js';
import { TIERS } from '../src/tenancy/types.js';

/** What the README tells operators must be what the code does. */
describe('the README', () => {
  it('shows the tier table as tiers.ts has it', async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
    const cell = (v: boolean | number | null) =>
      v === null ? 'unlimited' : v === true ? 'yes' : v === false ? 'no' : String(v);
    const rows = [
      `| feature or limit | ${TIERS.join(' | ')} |`,
      `| hosting | ${TIERS.map((t) => TIER_HOSTING[t]).join(' | ')} |`,
      ...[...LIMIT_NAMES, ...BOOLEAN_FEATURES].map(
        (f) => `| \`${f}\` | ${TIERS.map((t) => cell(TIER_FEATURES[t][f])).join(' | ')} |`,
      ),
    ];
    for (const row of rows) expect(readme).toContain(row);
  });
});
