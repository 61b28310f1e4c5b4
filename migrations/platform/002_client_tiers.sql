-- The plan's Phase 1: tiers, hosting type, sidekick limit, feature overrides.

DO $$ BEGIN
  CREATE TYPE client_tier AS ENUM ('adventurer', 'champion', 'paragon');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

DO $$ BEGIN
  CREATE TYPE hosting_type AS ENUM ('shared', 'dedicated');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

-- Defaults are champion/dedicated, as in the plan: every client that existed before tiers has its
-- own project. (The plan's "UPDATE clients SET tier = 'champion' ... WHERE tier IS NULL" is dead
-- code: ADD COLUMN ... DEFAULT fills every existing row.)
ALTER TABLE clients
  ADD COLUMN IF NOT EXISTS tier client_tier NOT NULL DEFAULT 'champion',
  ADD COLUMN IF NOT EXISTS hosting_type hosting_type NOT NULL DEFAULT 'dedicated',
  ADD COLUMN IF NOT EXISTS max_sidekicks integer DEFAULT NULL,
  ADD COLUMN IF NOT EXISTS tier_features jsonb NOT NULL DEFAULT '{}';

-- A platform database where the plan's own Phase 1 already ran has these columns nullable, and a
-- NULL there would slip through both CHECKs below (a CHECK passes on NULL). Backfill and forbid.
DO $$
BEGIN
  IF EXISTS (
    SELECT 1 FROM pg_attribute
     WHERE attrelid = 'clients'::regclass AND attname IN ('tier', 'hosting_type', 'tier_features')
       AND NOT attnotnull AND NOT attisdropped
  ) THEN
    UPDATE clients
       SET tier = coalesce(tier, 'champion'),
           hosting_type = coalesce(hosting_type,
             CASE WHEN tier = 'adventurer' THEN 'shared' ELSE 'dedicated' END::hosting_type),
           tier_features = coalesce(tier_features, '{}')
     WHERE tier IS NULL OR hosting_type IS NULL OR tier_features IS NULL;
    ALTER TABLE clients
      ALTER COLUMN tier SET NOT NULL,
      ALTER COLUMN hosting_type SET NOT NULL,
      ALTER COLUMN tier_features SET NOT NULL;
  END IF;
END $$;

CREATE INDEX IF NOT EXISTS idx_clients_tier ON clients (tier);
CREATE INDEX IF NOT EXISTS idx_clients_hosting_type ON clients (hosting_type);

-- The plan's two constraints, by name. check_adventurer_limits also refuses max_sidekicks NULL:
-- the plan's "max_sidekicks = 1" is NULL for NULL, and a CHECK that yields NULL passes, so an
-- adventurer with unlimited sidekicks got through. A database that has the plan's version gets it
-- replaced.
DO $$
DECLARE
  v_def text;
BEGIN
  SELECT pg_get_constraintdef(oid) INTO v_def
    FROM pg_constraint WHERE conrelid = 'clients'::regclass AND conname = 'check_adventurer_limits';
  IF v_def IS NOT NULL AND v_def NOT LIKE '%max_sidekicks IS NOT NULL%' THEN
    ALTER TABLE clients DROP CONSTRAINT check_adventurer_limits;
    v_def := NULL;
  END IF;
  IF v_def IS NULL THEN
    ALTER TABLE clients ADD CONSTRAINT check_adventurer_limits CHECK (
      tier <> 'adventurer'
      OR (max_sidekicks IS NOT NULL AND max_sidekicks = 1 AND hosting_type = 'shared')
    );
  END IF;

  IF NOT EXISTS (
    SELECT 1 FROM pg_constraint WHERE conrelid = 'clients'::regclass AND conname = 'check_champion_dedicated'
  ) THEN
    ALTER TABLE clients ADD CONSTRAINT check_champion_dedicated CHECK (
      tier = 'adventurer' OR hosting_type = 'dedicated'
    );
  END IF;

  IF NOT EXISTS (
    SELECT 1 FROM pg_constraint WHERE conrelid = 'clients'::regclass AND conname = 'clients_max_sidekicks_range'
  ) THEN
    ALTER TABLE clients ADD CONSTRAINT clients_max_sidekicks_range CHECK (max_sidekicks >= 0);
  END IF;

  IF NOT EXISTS (
    SELECT 1 FROM pg_constraint WHERE conrelid = 'clients'::regclass AND conname = 'clients_tier_features_object'
  ) THEN
    ALTER TABLE clients ADD CONSTRAINT clients_tier_features_object CHECK (jsonb_typeof(tier_features) = 'object');
  END IF;
END $$;

COMMENT ON COLUMN clients.tier IS 'Subscription tier: adventurer (shared), champion (dedicated), paragon (bespoke)';
COMMENT ON COLUMN clients.hosting_type IS 'Infrastructure type: shared (pool DB) or dedicated (own Supabase project)';
COMMENT ON COLUMN clients.max_sidekicks IS 'Maximum number of sidekicks allowed. NULL = unlimited';
COMMENT ON COLUMN clients.tier_features IS 'Per-client overrides of the tier feature flags (merged over the tier defaults)';
