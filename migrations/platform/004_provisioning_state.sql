-- State that provisioning and tier moves need.

ALTER TABLE clients
  ADD COLUMN IF NOT EXISTS provisioning_status text NOT NULL DEFAULT 'pending',
  ADD COLUMN IF NOT EXISTS provisioning_error text,
  ADD COLUMN IF NOT EXISTS provisioning_completed_at timestamptz,
  ADD COLUMN IF NOT EXISTS migration_status text NOT NULL DEFAULT 'none',
  -- Progress of a tier move: per table, the last id copied; lets a re-run continue.
  ADD COLUMN IF NOT EXISTS migration_state jsonb NOT NULL DEFAULT '{}',
  ADD COLUMN IF NOT EXISTS migration_started_at timestamptz;

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'clients_provisioning_status') THEN
    ALTER TABLE clients ADD CONSTRAINT clients_provisioning_status
      CHECK (provisioning_status IN ('pending', 'provisioning', 'ready', 'failed', 'suspended'));
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'clients_migration_status') THEN
    ALTER TABLE clients ADD CONSTRAINT clients_migration_status
      CHECK (migration_status IN ('none', 'migrating', 'switched', 'cleanup_pending'));
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'clients_ready_shared_has_pool') THEN
    -- A shared client may be registered before its pool is chosen, but never be ready without one.
    ALTER TABLE clients ADD CONSTRAINT clients_ready_shared_has_pool
      CHECK (hosting_type <> 'shared' OR provisioning_status <> 'ready' OR shared_pool_id IS NOT NULL);
  END IF;
END $$;

CREATE INDEX IF NOT EXISTS idx_clients_provisioning_status ON clients (provisioning_status);
CREATE INDEX IF NOT EXISTS idx_clients_migration_status ON clients (migration_status) WHERE migration_status <> 'none';
