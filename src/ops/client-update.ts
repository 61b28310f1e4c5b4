/**
 * Changing a registered client's name and its per-client overrides (`clients.tier_features`):
 * what the tier gives it, raised or lowered for this one client (its concurrent sessions, its
 * retention, a feature). The tier itself moves only with `sidekick clients upgrade`.
 */

import { overridableFeatures } from '../tenancy/tiers.js';
import { asClientId, type Tier } from '../tenancy/types.js';
import { UsageError } from './errors.js';
import type { ClientRow, PlatformAdmin } from './platform.js';
import { checkFeatureOverrides } from './provision.js';

export interface ClientUpdate {
  clientId: string;
  name?: string;
  /** Overrides to set (merged over the stored ones); null is a value ("unlimited"), not a removal. */
  features?: Record<string, unknown>;
  /** Overrides to remove: the tier's value applies again. */
  unsetFeatures?: readonly string[];
  allowDuplicateName?: boolean;
}

export interface ClientUpdated {
  client: ClientRow;
  /** The overrides before the change. */
  previousFeatures: Record<string, unknown>;
}

export async function updateClientRecord(
  deps: { platform: PlatformAdmin },
  req: ClientUpdate,
): Promise<ClientUpdated> {
  const id = asClientId(req.clientId, '--client');
  const row = await deps.platform.getClient(id);
  const tier = row.tier as Tier;
  const previous = { ...((row.tier_features ?? {}) as Record<string, unknown>) };
  const next = { ...previous, ...req.features };
  for (const key of req.unsetFeatures ?? []) {
    if (!(key in next)) {
      throw new UsageError(
        `--unset-feature: client ${id} has no override ${key} (its overrides: ${Object.keys(previous).sort().join(', ') || 'none'})`,
      );
    }
    delete next[key];
  }
  checkFeatureOverrides(tier, next);
  const name = req.name?.trim();
  if (req.name !== undefined && !name) throw new UsageError('--name: the client needs a name');
  if (name && name.toLowerCase() !== row.name.toLowerCase() && !req.allowDuplicateName) {
    const twin = (await deps.platform.findClientsByName(name)).find((c) => c.id !== id);
    if (twin) {
      throw new UsageError(
        `--name: client ${twin.id} is already called "${twin.name}"; choose another name or pass --allow-duplicate-name`,
      );
    }
  }
  if (req.features === undefined && req.unsetFeatures === undefined && name === undefined) {
    throw new UsageError(
      `nothing to change: give --name, --features or --unset-feature (keys the ${tier} tier lets a client override: ${overridableFeatures(tier).join(', ')})`,
    );
  }
  const client = await deps.platform.updateClient(id, {
    ...(name !== undefined ? { name } : {}),
    tier_features: next,
  });
  return { client, previousFeatures: previous };
}
