-- PLATFORM database: the base clients table (one row per customer).
-- Only the service role reads the platform database: RLS on, no policies, nothing granted to the
-- API roles (the service role bypasses RLS). Every file here is idempotent.

CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION set_updated_at() FROM PUBLIC, anon, authenticated;

CREATE TABLE IF NOT EXISTS clients (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL,
  -- The dedicated Supabase project of champion/paragon clients (NULL for shared clients).
  supabase_url text,
  supabase_anon_key text,
  supabase_service_role_key text,
  supabase_project_ref text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- A dedicated project holds one client: a second client given the same project would read the
-- first one's data with the project's service key.
CREATE UNIQUE INDEX IF NOT EXISTS clients_one_per_project
  ON clients (supabase_project_ref) WHERE supabase_project_ref IS NOT NULL;

DROP TRIGGER IF EXISTS clients_updated_at ON clients;
CREATE TRIGGER clients_updated_at BEFORE UPDATE ON clients FOR EACH ROW EXECUTE FUNCTION set_updated_at();

ALTER TABLE clients ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON clients FROM PUBLIC, anon, authenticated;
GRANT ALL ON clients TO service_role;

COMMENT ON TABLE clients IS 'One row per customer: tier, where its data lives, provisioning and tier-move state';
