-- LOCAL ONLY: what hosted Supabase already provides, for the embedded stack and tests.
-- Applied by src/stack before the real migrations (applyMigrations(..., { bootstrap: true }));
-- never part of migrations/platform|shared_pool|dedicated. Idempotent, and safe when several
-- databases of one server run it at the same time (roles are cluster-wide: a concurrent creator
-- makes CREATE ROLE / GRANT fail with duplicate_object or unique_violation, which is caught).

-- The API roles, as Supabase defines them. PostgREST logs in as authenticator and switches to the
-- role named by the JWT (SET ROLE), with the claims in request.jwt.claims.
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN
    SELECT * FROM (VALUES
      ('anon', 'NOLOGIN NOINHERIT'),
      ('authenticated', 'NOLOGIN NOINHERIT'),
      ('service_role', 'NOLOGIN NOINHERIT BYPASSRLS'),
      ('authenticator', 'LOGIN NOINHERIT PASSWORD ''authenticator-local-only''')
    ) AS v (name, attrs)
  LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.name) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I %s', r.name, r.attrs);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL; -- created by a concurrent bootstrap of another database
      END;
    END IF;
  END LOOP;

  FOR r IN SELECT unnest(ARRAY['anon', 'authenticated', 'service_role']) AS name LOOP
    IF NOT pg_has_role('authenticator', r.name, 'MEMBER') THEN
      BEGIN
        EXECUTE format('GRANT %I TO authenticator', r.name);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
      END;
    END IF;
  END LOOP;
END $$;

-- auth.jwt(), auth.uid(), auth.role() as on Supabase.
CREATE SCHEMA IF NOT EXISTS auth;
CREATE SCHEMA IF NOT EXISTS extensions;

CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    auth.jwt() ->> 'sub'
  )::uuid
$$;

CREATE OR REPLACE FUNCTION auth.role() RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    auth.jwt() ->> 'role'
  )
$$;

GRANT USAGE ON SCHEMA auth, public, extensions TO anon, authenticated, service_role;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA auth TO anon, authenticated, service_role;

-- As on Supabase: the API roles get privileges on whatever the migrations create in public, and
-- row-level security decides what they see. Migrations revoke what a table must not expose.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;

CREATE EXTENSION IF NOT EXISTS vector;

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
    CREATE PUBLICATION supabase_realtime;
  END IF;
EXCEPTION WHEN duplicate_object THEN
  NULL;
END $$;
