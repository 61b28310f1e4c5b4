-- Shared pools (the plan's 1.2, for several pools): where adventurers' data lives, how the worker
-- signs tenant tokens for each pool, and which pool each shared client is in.

-- The plan's table, as the plan wrote it (a platform database may already have it) ...
CREATE TABLE IF NOT EXISTS shared_pool_config (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  pool_name text NOT NULL UNIQUE DEFAULT 'adventurer_pool',
  supabase_url text NOT NULL,
  supabase_service_role_key text NOT NULL,
  supabase_anon_key text,
  supabase_project_ref text,
  max_clients integer DEFAULT 1000,
  current_client_count integer DEFAULT 0,
  is_active boolean DEFAULT true,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now()
);

-- ... plus how tenant tokens are signed for the pool: Supabase's legacy JWT secret (HS256), or an
-- ES256 private JWK imported into the project as a signing key, with its key id (kid).
ALTER TABLE shared_pool_config
  ADD COLUMN IF NOT EXISTS jwt_algorithm text NOT NULL DEFAULT 'HS256',
  ADD COLUMN IF NOT EXISTS jwt_secret text,
  ADD COLUMN IF NOT EXISTS jwt_private_key jsonb,
  ADD COLUMN IF NOT EXISTS jwt_key_id text;

-- The plan's nullable columns, made NOT NULL (a NULL max_clients would make the capacity CHECK pass).
DO $$
BEGIN
  IF EXISTS (
    SELECT 1 FROM pg_attribute
     WHERE attrelid = 'shared_pool_config'::regclass
       AND attname IN ('max_clients', 'current_client_count', 'is_active', 'created_at', 'updated_at')
       AND NOT attnotnull AND NOT attisdropped
  ) THEN
    UPDATE shared_pool_config
       SET max_clients = coalesce(max_clients, 1000), current_client_count = coalesce(current_client_count, 0),
           is_active = coalesce(is_active, true), created_at = coalesce(created_at, now()),
           updated_at = coalesce(updated_at, now())
     WHERE max_clients IS NULL OR current_client_count IS NULL OR is_active IS NULL
        OR created_at IS NULL OR updated_at IS NULL;
    ALTER TABLE shared_pool_config
      ALTER COLUMN max_clients SET NOT NULL,
      ALTER COLUMN current_client_count SET NOT NULL,
      ALTER COLUMN is_active SET NOT NULL,
      ALTER COLUMN created_at SET NOT NULL,
      ALTER COLUMN updated_at SET NOT NULL;
  END IF;
END $$;

DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_constraint WHERE conrelid = 'shared_pool_config'::regclass AND conname = 'shared_pool_jwt_algorithm'
  ) THEN
    ALTER TABLE shared_pool_config ADD CONSTRAINT shared_pool_jwt_algorithm
      CHECK (jwt_algorithm IN ('HS256', 'ES256'));
  END IF;
  IF NOT EXISTS (
    SELECT 1 FROM pg_constraint WHERE conrelid = 'shared_pool_config'::regclass AND conname = 'shared_pool_signing_key'
  ) THEN
    -- The secret the algorithm needs must be there; for ES256 a private EC key (it has "d") and its kid.
    ALTER TABLE shared_pool_config ADD CONSTRAINT shared_pool_signing_key CHECK (
      (jwt_algorithm = 'HS256' AND jwt_secret IS NOT NULL AND jwt_secret <> '')
      OR (jwt_algorithm = 'ES256' AND jwt_private_key ->> 'kty' = 'EC' AND jwt_private_key ? 'd'
          AND jwt_key_id IS NOT NULL AND jwt_key_id <> '')
    );
  END IF;
  IF NOT EXISTS (
    SELECT 1 FROM pg_constraint WHERE conrelid = 'shared_pool_config'::regclass AND conname = 'shared_pool_capacity'
  ) THEN
    -- current_client_count is kept by the trigger below. The trigger's UPDATE takes the pool row's
    -- lock, so of two concurrent assignments to a pool with one place left the second waits, sees
    -- the first's count and fails this CHECK: a pool can never be overfilled.
    ALTER TABLE shared_pool_config ADD CONSTRAINT shared_pool_capacity
      CHECK (current_client_count BETWEEN 0 AND max_clients);
  END IF;
END $$;

CREATE INDEX IF NOT EXISTS idx_shared_pool_active ON shared_pool_config (is_active, pool_name);

DROP TRIGGER IF EXISTS shared_pool_config_updated_at ON shared_pool_config;
CREATE TRIGGER shared_pool_config_updated_at BEFORE UPDATE ON shared_pool_config
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();

ALTER TABLE shared_pool_config ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON shared_pool_config FROM PUBLIC, anon, authenticated;
GRANT ALL ON shared_pool_config TO service_role;

COMMENT ON TABLE shared_pool_config IS 'Shared infrastructure pools (adventurer tier); current_client_count is kept by a trigger on clients';

-- Which pool a shared client's data lives in. (Provisioning inserts the client first, status
-- pending, and assigns the pool after: 004 requires a pool only of a ready shared client.)
ALTER TABLE clients ADD COLUMN IF NOT EXISTS shared_pool_id uuid REFERENCES shared_pool_config (id);
CREATE INDEX IF NOT EXISTS idx_clients_shared_pool ON clients (shared_pool_id);

-- current_client_count follows clients.shared_pool_id (insert, change, delete).
CREATE OR REPLACE FUNCTION clients_pool_count() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.shared_pool_id IS NOT NULL
     AND (TG_OP = 'DELETE' OR OLD.shared_pool_id IS DISTINCT FROM NEW.shared_pool_id) THEN
    UPDATE shared_pool_config SET current_client_count = current_client_count - 1 WHERE id = OLD.shared_pool_id;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.shared_pool_id IS NOT NULL
     AND (TG_OP = 'INSERT' OR OLD.shared_pool_id IS DISTINCT FROM NEW.shared_pool_id) THEN
    UPDATE shared_pool_config SET current_client_count = current_client_count + 1 WHERE id = NEW.shared_pool_id;
  END IF;
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION clients_pool_count() FROM PUBLIC, anon, authenticated;

DROP TRIGGER IF EXISTS clients_pool_count ON clients;
CREATE TRIGGER clients_pool_count AFTER INSERT OR DELETE OR UPDATE OF shared_pool_id ON clients
  FOR EACH ROW EXECUTE FUNCTION clients_pool_count();

-- Re-derive the counts on every run, so they are right on a database that got shared_pool_id
-- values some other way (a bulk load with triggers off, a TRUNCATE). The lock keeps assignments
-- out while counting, until this file's transaction ends.
DO $$
BEGIN
  LOCK TABLE clients IN SHARE ROW EXCLUSIVE MODE;
  UPDATE shared_pool_config p
     SET current_client_count = n.count
    FROM (
      SELECT sp.id, (SELECT count(*) FROM clients c WHERE c.shared_pool_id = sp.id)::integer AS count
        FROM shared_pool_config sp
    ) n
   WHERE n.id = p.id AND p.current_client_count IS DISTINCT FROM n.count;
END $$;

-- Puts a shared client in the least loaded active pool with room and returns the pool's id. A
-- client that already has a pool keeps it (so a re-run is harmless). A full or inactive pool is
-- never chosen; when none has room: SQLSTATE P0001, 'no shared pool has room ...'.
CREATE OR REPLACE FUNCTION assign_shared_pool(p_client_id uuid) RETURNS uuid
LANGUAGE plpgsql SECURITY INVOKER SET search_path = public, pg_temp AS $$
DECLARE
  v_pool uuid;
  v_hosting hosting_type;
BEGIN
  -- The client's row lock: two assignments of one client cannot both count it.
  SELECT shared_pool_id, hosting_type INTO v_pool, v_hosting FROM clients WHERE id = p_client_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'client % does not exist', p_client_id USING ERRCODE = 'P0002';
  END IF;
  IF v_pool IS NOT NULL THEN
    RETURN v_pool;
  END IF;
  IF v_hosting <> 'shared' THEN
    RAISE EXCEPTION 'client % is not a shared client (hosting_type %): it gets no shared pool', p_client_id, v_hosting
      USING ERRCODE = 'P0001';
  END IF;

  -- Least loaded first; a pool another assignment holds right now is skipped. This never waits
  -- for a pool's lock: a transaction that waited would keep the lock of a pool that filled up
  -- meanwhile (Postgres keeps locks on rows that fail the re-check) and go on to lock the next,
  -- and two such transactions can deadlock. When every pool with room is held, poll briefly
  -- instead: the holders finish in milliseconds.
  LOOP
    SELECT id INTO v_pool FROM shared_pool_config
     WHERE is_active AND current_client_count < max_clients
     ORDER BY current_client_count::float8 / greatest(max_clients, 1), pool_name
     LIMIT 1
     FOR UPDATE SKIP LOCKED;
    EXIT WHEN v_pool IS NOT NULL;
    PERFORM 1 FROM shared_pool_config WHERE is_active AND current_client_count < max_clients;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'no shared pool has room for client %', p_client_id
        USING ERRCODE = 'P0001', HINT = 'add a pool to shared_pool_config or raise max_clients of an active one';
    END IF;
    PERFORM pg_sleep(0.005);
  END LOOP;

  -- We hold the pool's lock and saw room: the count trigger's +1 cannot break shared_pool_capacity.
  UPDATE clients SET shared_pool_id = v_pool WHERE id = p_client_id;
  RETURN v_pool;
END $$;

REVOKE ALL ON FUNCTION assign_shared_pool(uuid) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION assign_shared_pool(uuid) TO service_role;
