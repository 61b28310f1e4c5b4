-- Tenant isolation in the pool, enforced by the database whatever the calling code does:
--   * RLS for role authenticated, keyed on the JWT's client_id claim. The worker's tenant tokens
--     carry it; `(select ...)` makes Postgres evaluate the claim once per statement (an InitPlan),
--     not once per row. service_role has BYPASSRLS (provisioning, the mover); anon gets nothing.
--   * the write fence of a tier move (tg10_write_fence on every tenant table);
--   * the sidekick limit (tg20_sidekick_limit on agents), safe under concurrent inserts.
-- Triggers of one table fire in name order, so the fence (which also refuses a row tagged with
-- another client, as RLS would) runs before the sidekick-limit trigger, which can see every client.

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY[
    'agents', 'documents', 'document_chunks', 'agent_documents', 'conversations',
    'conversation_transcripts', 'user_overviews'
  ] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    -- Not the ALL that Supabase's default privileges give: no TRUNCATE (it ignores RLS), TRIGGER
    -- or REFERENCES for the API roles.
    EXECUTE format('REVOKE ALL ON %I FROM PUBLIC, anon, authenticated', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO authenticated', t);
    EXECUTE format('GRANT ALL ON %I TO service_role', t);
    EXECUTE format('DROP POLICY IF EXISTS %I ON %I', t || '_client_isolation', t);
    EXECUTE format(
      'CREATE POLICY %I ON %I FOR ALL TO authenticated
         USING (client_id = (SELECT (auth.jwt() ->> %L)::uuid))
         WITH CHECK (client_id = (SELECT (auth.jwt() ->> %L)::uuid))',
      t || '_client_isolation', t, 'client_id', 'client_id');
  END LOOP;
END $$;

-- pool_clients: a tenant may read its own row (its limit, its fence), never write it.
ALTER TABLE pool_clients ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON pool_clients FROM PUBLIC, anon, authenticated;
GRANT SELECT ON pool_clients TO authenticated;
GRANT ALL ON pool_clients TO service_role;
DROP POLICY IF EXISTS pool_clients_own_row ON pool_clients;
CREATE POLICY pool_clients_own_row ON pool_clients FOR SELECT TO authenticated
  USING (client_id = (SELECT (auth.jwt() ->> 'client_id')::uuid));

-- The earlier helper the policies used; nothing uses it now.
DROP FUNCTION IF EXISTS request_client_id();

-- The write fence. While a tier move copies a client's rows (fenced) and after the client has
-- moved out (moved), the pool refuses that client's writes; SQLSTATE 55000 tells the worker
-- "temporary: keep the turn, look the client up again and retry". The mover and the cleanup run
-- as service_role and pass. Writes made by foreign-key actions (ON DELETE CASCADE / SET NULL, run
-- as the table owner, trigger depth > 1) pass too: they follow a write of the same client (the
-- composite keys guarantee it) that already passed here, e.g. service_role's cleanup deleting
-- documents of a moved client cascades to their chunks.
-- For the API roles it also refuses a row tagged with another client with RLS's own error, before
-- any other trigger runs. One primary-key lookup per row; runs as the caller (a tenant sees only
-- its own pool_clients row).
CREATE OR REPLACE FUNCTION enforce_write_fence() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER SET search_path = '' AS $$
DECLARE
  v_client uuid;
  v_fence text;
BEGIN
  IF current_user = 'service_role' OR pg_trigger_depth() > 1 THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;

  FOREACH v_client IN ARRAY CASE TG_OP
    WHEN 'INSERT' THEN ARRAY[NEW.client_id]
    WHEN 'DELETE' THEN ARRAY[OLD.client_id]
    ELSE CASE WHEN NEW.client_id IS DISTINCT FROM OLD.client_id
              THEN ARRAY[OLD.client_id, NEW.client_id] ELSE ARRAY[NEW.client_id] END
  END LOOP
    IF current_user IN ('authenticated', 'anon')
       AND v_client IS DISTINCT FROM (auth.jwt() ->> 'client_id')::uuid THEN
      RAISE EXCEPTION 'new row violates row-level security policy for table "%"', TG_TABLE_NAME
        USING ERRCODE = '42501';
    END IF;
    SELECT pc.write_fence INTO v_fence FROM public.pool_clients pc WHERE pc.client_id = v_client;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'client % is not registered in this pool', v_client
        USING ERRCODE = '23503', HINT = 'provisioning registers the client in pool_clients first';
    ELSIF v_fence = 'fenced' THEN
      RAISE EXCEPTION 'writes for client % are fenced: tier move in progress, retry later', v_client
        USING ERRCODE = '55000';
    ELSIF v_fence = 'moved' THEN
      RAISE EXCEPTION 'client % has moved out of this pool', v_client
        USING ERRCODE = '55000', HINT = 'look the client up again in the platform database';
    END IF;
  END LOOP;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
REVOKE ALL ON FUNCTION enforce_write_fence() FROM PUBLIC, anon, authenticated;

-- The sidekick limit, where concurrent inserts cannot both pass. The client's pool_clients row is
-- locked first, so inserts of one client serialize, and each counts what the previous committed.
-- The lock is taken with a no-op UPDATE rather than SELECT ... FOR UPDATE: under READ COMMITTED
-- both behave the same, but under REPEATABLE READ a mere row lock lets the second transaction go
-- on counting with its old snapshot, while an updated row makes it fail with a serialization error.
-- SECURITY DEFINER (owner, with a fixed search_path) only because a tenant must lock and count
-- rows it cannot update or see; it reads pool_clients and counts agents, nothing else. It also
-- re-checks that a tenant writes its own client: the fence trigger before it already did, this
-- keeps the definer from answering about another client even if the trigger order changed.
CREATE OR REPLACE FUNCTION enforce_sidekick_limit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_max integer;
  v_count integer;
BEGIN
  -- current_user is the owner here; the SET ROLE of the caller is still in the role setting.
  IF current_setting('role') IN ('authenticated', 'anon')
     AND NEW.client_id IS DISTINCT FROM (auth.jwt() ->> 'client_id')::uuid THEN
    RAISE EXCEPTION 'new row violates row-level security policy for table "%"', TG_TABLE_NAME
      USING ERRCODE = '42501';
  END IF;
  UPDATE public.pool_clients SET max_sidekicks = max_sidekicks
   WHERE client_id = NEW.client_id
  RETURNING max_sidekicks INTO v_max;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'client % is not registered in this pool', NEW.client_id
      USING ERRCODE = '23503', HINT = 'provisioning registers the client in pool_clients first';
  END IF;
  IF v_max IS NOT NULL THEN
    SELECT count(*) INTO v_count FROM public.agents a WHERE a.client_id = NEW.client_id AND a.id <> NEW.id;
    IF v_count >= v_max THEN
      RAISE EXCEPTION 'sidekick limit reached: client % may have at most % sidekick(s)', NEW.client_id, v_max
        USING ERRCODE = '23514', HINT = 'upgrade to the champion tier for unlimited sidekicks';
    END IF;
  END IF;
  RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION enforce_sidekick_limit() FROM PUBLIC, anon, authenticated;

DROP TRIGGER IF EXISTS agents_sidekick_limit ON agents; -- earlier name
DROP TRIGGER IF EXISTS tg20_sidekick_limit ON agents;
CREATE TRIGGER tg20_sidekick_limit BEFORE INSERT OR UPDATE OF client_id ON agents
  FOR EACH ROW EXECUTE FUNCTION enforce_sidekick_limit();

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY[
    'agents', 'documents', 'document_chunks', 'agent_documents', 'conversations',
    'conversation_transcripts', 'user_overviews'
  ] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t || '_write_fence', t); -- earlier name
    EXECUTE format('DROP TRIGGER IF EXISTS tg10_write_fence ON %I', t);
    EXECUTE format(
      'CREATE TRIGGER tg10_write_fence BEFORE INSERT OR UPDATE OR DELETE ON %I
         FOR EACH ROW EXECUTE FUNCTION enforce_write_fence()', t);
  END LOOP;
END $$;
