-- State that provisioning and tier moves need.

ALTER TABLE clients
  ADD COLUMN IF NOT EXISTS provisioning_status text NOT NULL DEFAULT 'pending',
  ADD COLUMN IF NOT EXISTS provisioning_error text,
  ADD COLUMN IF NOT EXISTS provisioning_completed_at timestamptz,
  -- none -> migrating (copying, pool writes fenced) -> switched (the platform points at the new
  -- project) -> cleanup_pending (the pool still holds the old rows) -> none.
  ADD COLUMN IF NOT EXISTS migration_status text NOT NULL DEFAULT 'none',
  -- Progress of a tier move: phase, target project, per-table cursor (last id copied); lets a
  -- re-run continue where a crash stopped.
  ADD COLUMN IF NOT EXISTS migration_state jsonb NOT NULL DEFAULT '{}',
  ADD COLUMN IF NOT EXISTS migration_started_at timestamptz;

DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_constraint WHERE conrelid = 'clients'::regclass AND conname = 'clients_provisioning_status'
  ) THEN
    ALTER TABLE clients ADD CONSTRAINT clients_provisioning_status
      CHECK (provisioning_status IN ('pending', 'provisioning', 'ready', 'failed', 'suspended'));
  END IF;
  IF NOT EXISTS (
    SELECT 1 FROM pg_constraint WHERE conrelid = 'clients'::regclass AND conname = 'clients_migration_status'
  ) THEN
    ALTER TABLE clients ADD CONSTRAINT clients_migration_status
      CHECK (migration_status IN ('none', 'migrating', 'switched', 'cleanup_pending'));
  END IF;
  IF NOT EXISTS (
    SELECT 1 FROM pg_constraint WHERE conrelid = 'clients'::regclass AND conname = 'clients_migration_state_object'
  ) THEN
    ALTER TABLE clients ADD CONSTRAINT clients_migration_state_object
      CHECK (jsonb_typeof(migration_state) = 'object');
  END IF;
  IF NOT EXISTS (
    SELECT 1 FROM pg_constraint WHERE conrelid = 'clients'::regclass AND conname = 'clients_ready_shared_has_pool'
  ) THEN
    -- Provisioning registers a shared client (pending) before its pool is chosen, so a pool is
    -- required only once the client is ready.
    ALTER TABLE clients ADD CONSTRAINT clients_ready_shared_has_pool
      CHECK (hosting_type <> 'shared' OR provisioning_status <> 'ready' OR shared_pool_id IS NOT NULL);
  END IF;
END $$;

CREATE INDEX IF NOT EXISTS idx_clients_provisioning_status ON clients (provisioning_status);
CREATE INDEX IF NOT EXISTS idx_clients_migration_status ON clients (migration_status) WHERE migration_status <> 'none';
