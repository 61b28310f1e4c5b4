-- Platform database: the base clients table (one row per customer).

CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;

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

DROP TRIGGER IF EXISTS clients_updated_at ON clients;
CREATE TRIGGER clients_updated_at BEFORE UPDATE ON clients FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Only the service role reads the platform: RLS on, no policies, no grants to the API roles.
ALTER TABLE clients ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON clients FROM anon, authenticated;
