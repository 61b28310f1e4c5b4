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

-- begin_session (003) with the owner: given p_for_client, a project recorded as another client's
-- returns only its owner, before reading or claiming anything. The answer always names the owner
-- (null: a project from before this record). 003's signature is replaced, not overloaded (an
-- overload would make PostgREST's choice between the two ambiguous).
DROP FUNCTION IF EXISTS begin_session(text, integer, uuid, uuid, boolean);

CREATE OR REPLACE FUNCTION begin_session(
  p_agent_slug text,
  p_max_sidekicks integer DEFAULT NULL,
  p_user_id uuid DEFAULT NULL,
  p_conversation_id uuid DEFAULT NULL,
  p_claim_conversation boolean DEFAULT false,
  p_for_client uuid DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
DECLARE
  v_agent agents%ROWTYPE;
  v_rank bigint;
  v_overview jsonb := '{}'::jsonb;
  v_status text := 'none';
  v_claimed boolean := false;
  v_conv_agent uuid;
  v_conv_user uuid;
  v_models jsonb;
  v_owner uuid;
BEGIN
  -- A project recorded as another client's answers nothing else and writes nothing.
  SELECT o.client_id INTO v_owner FROM project_owner o;
  IF v_owner <> p_for_client THEN
    RETURN jsonb_build_object('sidekick', NULL, 'beyond_limit', false, 'owner', v_owner);
  END IF;
  SELECT * INTO v_agent FROM agents a WHERE a.slug = p_agent_slug;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('sidekick', NULL, 'beyond_limit', false, 'owner', v_owner);
  END IF;
  IF p_max_sidekicks IS NOT NULL THEN
    SELECT r.n INTO v_rank FROM (
      SELECT a.id, row_number() OVER (ORDER BY a.created_at, a.id) AS n FROM agents a) r
     WHERE r.id = v_agent.id;
    IF v_rank > p_max_sidekicks THEN
      RETURN jsonb_build_object('sidekick', NULL, 'beyond_limit', true, 'owner', v_owner);
    END IF;
  END IF;

  IF p_user_id IS NOT NULL THEN
    SELECT coalesce(
      (SELECT uo.sections FROM user_overviews uo
        WHERE uo.user_id = p_user_id AND (uo.agent_id = v_agent.id OR uo.agent_id IS NULL)
        ORDER BY uo.agent_id NULLS LAST LIMIT 1),
      '{}'::jsonb) INTO v_overview;
  END IF;

  IF p_conversation_id IS NOT NULL THEN
    SELECT c.agent_id, c.user_id INTO v_conv_agent, v_conv_user FROM conversations c WHERE c.id = p_conversation_id;
    IF FOUND THEN
      v_status := CASE
        WHEN v_conv_agent <> v_agent.id THEN 'other_sidekick'
        WHEN v_conv_user IS DISTINCT FROM p_user_id THEN 'other_user'
        ELSE 'continued' END;
      v_claimed := v_status = 'continued';
    ELSE
      v_status := 'new';
      IF p_claim_conversation THEN
        INSERT INTO conversations (id, agent_id, user_id) VALUES (p_conversation_id, v_agent.id, p_user_id)
        ON CONFLICT (id) DO NOTHING;
        v_claimed := FOUND;
      END IF;
    END IF;
  END IF;

  SELECT coalesce(jsonb_agg(jsonb_build_object('model', m.model, 'dimensions', m.dimensions, 'documents', m.n)
                            ORDER BY m.n DESC), '[]'::jsonb)
    INTO v_models
    FROM (
      SELECT d.metadata ->> 'embedding_model' AS model,
             CASE WHEN d.metadata ->> 'embedding_dimensions' ~ '^[0-9]{1,6}$'
                  THEN (d.metadata ->> 'embedding_dimensions')::integer END AS dimensions,
             count(*) AS n
        FROM agent_documents ad
        JOIN documents d ON d.id = ad.document_id
       WHERE ad.agent_id = v_agent.id AND ad.enabled AND d.status = 'ready'
       GROUP BY 1, 2) m;

  RETURN jsonb_build_object(
    'sidekick', jsonb_build_object(
      'id', v_agent.id, 'name', v_agent.name, 'slug', v_agent.slug, 'system_prompt', v_agent.system_prompt,
      'greeting', v_agent.greeting, 'voice_settings', v_agent.voice_settings,
      'voice_chat_enabled', v_agent.voice_chat_enabled, 'text_chat_enabled', v_agent.text_chat_enabled,
      'video_chat_enabled', v_agent.video_chat_enabled, 'tools_config', v_agent.tools_config),
    'beyond_limit', false,
    'overview', v_overview,
    'conversation', jsonb_build_object('status', v_status, 'claimed', v_claimed),
    'embedding_models', v_models,
    'owner', v_owner);
END $$;

REVOKE ALL ON FUNCTION begin_session(text, integer, uuid, uuid, boolean, uuid) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION begin_session(text, integer, uuid, uuid, boolean, uuid) TO service_role;
