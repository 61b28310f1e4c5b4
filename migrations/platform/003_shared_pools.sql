-- Shared pools (the plan's 1.2, for several pools): where adventurers' data lives, and how the
-- worker signs tenant tokens for each pool.

CREATE TABLE IF NOT EXISTS shared_pool_config (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  pool_name text NOT NULL UNIQUE DEFAULT 'adventurer_pool',
  supabase_url text NOT NULL,
  supabase_service_role_key text NOT NULL,
  supabase_anon_key text,
  supabase_project_ref text,
  max_clients integer NOT NULL DEFAULT 1000,
  current_client_count integer NOT NULL DEFAULT 0,
  is_active boolean NOT NULL DEFAULT true,
  -- Tenant tokens: Supabase's legacy JWT secret (HS256) or an imported ES256 signing key with its kid.
  jwt_algorithm text NOT NULL DEFAULT 'HS256',
  jwt_secret text,
  jwt_private_key jsonb,
  jwt_key_id text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'shared_pool_capacity') THEN
    -- The count is kept by the trigger below; this makes overfilling fail even under concurrency.
    ALTER TABLE shared_pool_config ADD CONSTRAINT shared_pool_capacity
      CHECK (current_client_count >= 0 AND current_client_count <= max_clients);
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'shared_pool_signing_key') THEN
    ALTER TABLE shared_pool_config ADD CONSTRAINT shared_pool_signing_key CHECK (
      (jwt_algorithm = 'HS256' AND jwt_secret IS NOT NULL)
      OR (jwt_algorithm = 'ES256' AND jwt_private_key IS NOT NULL AND jwt_key_id IS NOT NULL)
    );
  END IF;
END $$;

CREATE INDEX IF NOT EXISTS idx_shared_pool_active ON shared_pool_config (is_active, pool_name);

DROP TRIGGER IF EXISTS shared_pool_config_updated_at ON shared_pool_config;
CREATE TRIGGER shared_pool_config_updated_at BEFORE UPDATE ON shared_pool_config
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();

ALTER TABLE shared_pool_config ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON shared_pool_config FROM anon, authenticated;

COMMENT ON TABLE shared_pool_config IS 'Shared infrastructure pools (adventurer tier); current_client_count is kept by trigger';

ALTER TABLE clients ADD COLUMN IF NOT EXISTS shared_pool_id uuid REFERENCES shared_pool_config (id);
CREATE INDEX IF NOT EXISTS idx_clients_shared_pool ON clients (shared_pool_id);

-- current_client_count follows clients.shared_pool_id. The UPDATE takes the pool row's lock, so
-- concurrent assignments serialize on it and the CHECK above sees the true count.
CREATE OR REPLACE FUNCTION clients_pool_count() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' AND OLD.shared_pool_id IS NOT NULL
     AND (TG_OP = 'DELETE' OR OLD.shared_pool_id IS DISTINCT FROM NEW.shared_pool_id) THEN
    UPDATE shared_pool_config SET current_client_count = current_client_count - 1 WHERE id = OLD.shared_pool_id;
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.shared_pool_id IS NOT NULL
     AND (TG_OP = 'INSERT' OR OLD.shared_pool_id IS DISTINCT FROM NEW.shared_pool_id) THEN
    UPDATE shared_pool_config SET current_client_count = current_client_count + 1 WHERE id = NEW.shared_pool_id;
  END IF;
  RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS clients_pool_count ON clients;
CREATE TRIGGER clients_pool_count AFTER INSERT OR DELETE OR UPDATE OF shared_pool_id ON clients
  FOR EACH ROW EXECUTE FUNCTION clients_pool_count();

-- Puts a client in the least loaded active pool with room; returns the pool. Idempotent: a client
-- that has a pool keeps it. A full or inactive pool is never chosen.
CREATE OR REPLACE FUNCTION assign_shared_pool(p_client_id uuid) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
  v_pool uuid;
  v_tries integer := 0;
BEGIN
  SELECT shared_pool_id INTO v_pool FROM clients WHERE id = p_client_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'client % does not exist', p_client_id USING ERRCODE = 'P0002';
  END IF;
  IF v_pool IS NOT NULL THEN
    RETURN v_pool;
  END IF;
  LOOP
    SELECT id INTO v_pool FROM shared_pool_config
     WHERE is_active AND current_client_count < max_clients
     ORDER BY current_client_count::float8 / greatest(max_clients, 1), pool_name
     LIMIT 1
     FOR UPDATE SKIP LOCKED;
    IF v_pool IS NOT NULL THEN
      UPDATE clients SET shared_pool_id = v_pool WHERE id = p_client_id;
      RETURN v_pool;
    END IF;
    -- Every pool with room may be locked by a concurrent assignment: wait briefly and look again.
    v_tries := v_tries + 1;
    IF v_tries > 200 OR NOT EXISTS (
      SELECT 1 FROM shared_pool_config WHERE is_active AND current_client_count < max_clients
    ) THEN
      RAISE EXCEPTION 'no shared pool has room for client %', p_client_id
        USING ERRCODE = 'P0001', HINT = 'add a pool to shared_pool_config or raise max_clients of an active one';
    END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$;

REVOKE ALL ON FUNCTION assign_shared_pool(uuid) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION assign_shared_pool(uuid) TO service_role;
