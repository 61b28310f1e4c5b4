-- The plan's Phase 1: tiers, hosting type, sidekick limit, feature overrides.

DO $$ BEGIN
  CREATE TYPE client_tier AS ENUM ('adventurer', 'champion', 'paragon');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

DO $$ BEGIN
  CREATE TYPE hosting_type AS ENUM ('shared', 'dedicated');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

-- Defaults are champion/dedicated: every client that existed before tiers has its own project.
ALTER TABLE clients
  ADD COLUMN IF NOT EXISTS tier client_tier NOT NULL DEFAULT 'champion',
  ADD COLUMN IF NOT EXISTS hosting_type hosting_type NOT NULL DEFAULT 'dedicated',
  ADD COLUMN IF NOT EXISTS max_sidekicks integer DEFAULT NULL CHECK (max_sidekicks IS NULL OR max_sidekicks >= 0),
  ADD COLUMN IF NOT EXISTS tier_features jsonb NOT NULL DEFAULT '{}';

CREATE INDEX IF NOT EXISTS idx_clients_tier ON clients (tier);
CREATE INDEX IF NOT EXISTS idx_clients_hosting_type ON clients (hosting_type);

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'check_adventurer_limits') THEN
    ALTER TABLE clients ADD CONSTRAINT check_adventurer_limits CHECK (
      tier <> 'adventurer' OR (max_sidekicks = 1 AND hosting_type = 'shared')
    );
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'check_champion_dedicated') THEN
    ALTER TABLE clients ADD CONSTRAINT check_champion_dedicated CHECK (
      tier = 'adventurer' OR hosting_type = 'dedicated'
    );
  END IF;
END $$;

COMMENT ON COLUMN clients.tier IS 'Subscription tier: adventurer (shared), champion (dedicated), paragon (bespoke)';
COMMENT ON COLUMN clients.hosting_type IS 'Infrastructure type: shared (pool DB) or dedicated (own Supabase project)';
COMMENT ON COLUMN clients.max_sidekicks IS 'Maximum number of sidekicks allowed. NULL = unlimited';
COMMENT ON COLUMN clients.tier_features IS 'Per-client overrides of the tier feature flags (merged over the tier defaults)';
