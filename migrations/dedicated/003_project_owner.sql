-- The one client a dedicated project belongs to, recorded in the project itself, so that no URL
-- or ref written differently can point a second client at it. Written once, by the service role
-- at provisioning (or the tier move's target), through claim_project_owner(); the worker reads it
-- at session start (begin_session) and refuses a session for any other client.

CREATE TABLE IF NOT EXISTS project_owner (
  client_id uuid PRIMARY KEY,
  claimed_at timestamptz NOT NULL DEFAULT now()
);
-- At most one row: every row has the same value of this index's expression.
CREATE UNIQUE INDEX IF NOT EXISTS project_owner_one_row ON project_owner ((true));

-- Written once: the owner is never changed in place (releasing a project is a deliberate DELETE by
-- the database owner; the API roles cannot delete).
CREATE OR REPLACE FUNCTION project_owner_written_once() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  RAISE EXCEPTION 'project_owner is written once: this project belongs to client %', OLD.client_id
    USING ERRCODE = '23514';
END $$;
DROP TRIGGER IF EXISTS project_owner_written_once ON project_owner;
CREATE TRIGGER project_owner_written_once BEFORE UPDATE ON project_owner
  FOR EACH ROW EXECUTE FUNCTION project_owner_written_once();
REVOKE ALL ON FUNCTION project_owner_written_once() FROM PUBLIC, anon, authenticated;

ALTER TABLE project_owner ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON project_owner FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT, INSERT ON project_owner TO service_role;

-- Records p_client_id as the owner unless the project has one; answers who the owner is now. An
-- unowned project that already holds data is claimed only with p_adopt_data (an existing champion
-- project registered for its own client): otherwise it may be another client's project from before
-- this record, and the answer says so (owner null, holds_data) without claiming it.
CREATE OR REPLACE FUNCTION claim_project_owner(p_client_id uuid, p_adopt_data boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, pg_temp AS $$
DECLARE
  v_owner uuid;
  v_sidekicks bigint;
  v_holds_data boolean;
  v_claimed boolean := false;
BEGIN
  IF p_client_id IS NULL THEN
    RAISE EXCEPTION 'p_client_id is required' USING ERRCODE = '22004';
  END IF;
  SELECT o.client_id INTO v_owner FROM project_owner o;
  SELECT count(*) INTO v_sidekicks FROM agents;
  v_holds_data := v_sidekicks > 0 OR EXISTS (SELECT 1 FROM documents) OR EXISTS (SELECT 1 FROM conversations)
                  OR EXISTS (SELECT 1 FROM user_overviews);
  IF v_owner IS NULL AND (p_adopt_data OR NOT v_holds_data) THEN
    -- A concurrent claim that won is kept (either unique index); the answer names the winner.
    INSERT INTO project_owner (client_id) VALUES (p_client_id) ON CONFLICT DO NOTHING;
    v_claimed := FOUND;
    SELECT o.client_id INTO v_owner FROM project_owner o;
  END IF;
  RETURN jsonb_build_object('owner', v_owner, 'claimed', v_claimed, 'holds_data', v_holds_data,
                            'sidekicks', v_sidekicks);
END $$;
REVOKE ALL ON FUNCTION claim_project_owner(uuid, boolean) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION claim_project_owner(uuid, boolean) TO service_role;
