-- Tenant isolation in the pool: RLS keyed on the JWT's client_id claim, the sidekick limit and the
-- write fence, all enforced by the database whatever the calling code does.

-- The caller's client: the `client_id` claim of the JWT PostgREST verified. Wrapped as
-- `(select ...)` in policies so Postgres evaluates it once per statement (an InitPlan), not per row.
CREATE OR REPLACE FUNCTION request_client_id() RETURNS uuid
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT nullif(auth.jwt() ->> 'client_id', '')::uuid
$$;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY[
    'agents', 'documents', 'document_chunks', 'agent_documents', 'conversations',
    'conversation_transcripts', 'user_overviews'
  ] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('REVOKE ALL ON %I FROM anon', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO authenticated, service_role', t);
    EXECUTE format('DROP POLICY IF EXISTS %I ON %I', t || '_client_isolation', t);
    EXECUTE format(
      'CREATE POLICY %I ON %I FOR ALL TO authenticated
         USING (client_id = (SELECT request_client_id()))
         WITH CHECK (client_id = (SELECT request_client_id()))',
      t || '_client_isolation', t);
  END LOOP;
END $$;

-- pool_clients: a tenant may read its own row (its limit, its fence), never write it.
ALTER TABLE pool_clients ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON pool_clients FROM anon, authenticated;
GRANT SELECT ON pool_clients TO authenticated;
GRANT ALL ON pool_clients TO service_role;
DROP POLICY IF EXISTS pool_clients_own_row ON pool_clients;
CREATE POLICY pool_clients_own_row ON pool_clients FOR SELECT TO authenticated
  USING (client_id = (SELECT request_client_id()));

-- The sidekick limit, enforced where concurrent inserts cannot both pass: the client's pool_clients
-- row is locked, so inserts of one client serialize and each counts what the previous committed.
-- SECURITY DEFINER only so a tenant can take that lock; it reads and writes nothing else.
CREATE OR REPLACE FUNCTION enforce_sidekick_limit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  v_max integer;
  v_count integer;
BEGIN
  SELECT max_sidekicks INTO v_max FROM pool_clients WHERE client_id = NEW.client_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'client % is not registered in this pool', NEW.client_id
      USING ERRCODE = '23503', HINT = 'provision the client before adding sidekicks';
  END IF;
  IF v_max IS NOT NULL THEN
    SELECT count(*) INTO v_count FROM agents WHERE client_id = NEW.client_id AND id <> NEW.id;
    IF v_count >= v_max THEN
      RAISE EXCEPTION 'sidekick limit reached: client % may have at most % sidekick(s)', NEW.client_id, v_max
        USING ERRCODE = '23514', HINT = 'upgrade to the champion tier for unlimited sidekicks';
    END IF;
  END IF;
  RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION enforce_sidekick_limit() FROM PUBLIC, anon, authenticated;

DROP TRIGGER IF EXISTS agents_sidekick_limit ON agents;
CREATE TRIGGER agents_sidekick_limit BEFORE INSERT OR UPDATE OF client_id ON agents
  FOR EACH ROW EXECUTE FUNCTION enforce_sidekick_limit();

-- The write fence of a tier move: while a client's rows are copied out (fenced) and after they
-- have moved, the pool refuses that client's writes from tenant tokens. The mover and cleanup run
-- as service_role and pass. SQLSTATE 55000 tells the worker "temporary, keep the turn and retry".
CREATE OR REPLACE FUNCTION enforce_write_fence() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
  v_client uuid;
  v_fence text;
BEGIN
  IF current_user NOT IN ('authenticated', 'anon') THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  v_client := CASE WHEN TG_OP = 'DELETE' THEN OLD.client_id ELSE NEW.client_id END;
  SELECT write_fence INTO v_fence FROM pool_clients WHERE client_id = v_client;
  IF NOT FOUND THEN
    -- Also what a stale worker meets after cleanup removed a moved client: retryable, like the fence.
    RAISE EXCEPTION 'client % is not registered in this pool', v_client
      USING ERRCODE = '55000', HINT = 'look the client up again in the platform database';
  ELSIF v_fence = 'fenced' THEN
    RAISE EXCEPTION 'writes for client % are fenced: tier move in progress, retry later', v_client
      USING ERRCODE = '55000';
  ELSIF v_fence = 'moved' THEN
    RAISE EXCEPTION 'client % has moved out of this pool', v_client
      USING ERRCODE = '55000', HINT = 'look the client up again in the platform database';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY[
    'agents', 'documents', 'document_chunks', 'agent_documents', 'conversations',
    'conversation_transcripts', 'user_overviews'
  ] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t || '_write_fence', t);
    EXECUTE format(
      'CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION enforce_write_fence()',
      t || '_write_fence', t);
  END LOOP;
END $$;
