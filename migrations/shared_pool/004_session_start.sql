-- Session start in one round trip: the sidekick (within the client's sidekick limit), what is
-- known about the user, whether the conversation to continue is this client's, this sidekick's
-- and this user's (and, for the job, the conversation claimed), and which embedding models the
-- sidekick's documents were embedded with. Runs as the caller (RLS applies) and checks that
-- p_client_id is the caller's client, like every RPC of the pool.

CREATE OR REPLACE FUNCTION begin_session(
  p_client_id uuid,
  p_agent_slug text,
  p_max_sidekicks integer DEFAULT NULL,      -- NULL: unlimited
  p_user_id uuid DEFAULT NULL,
  p_conversation_id uuid DEFAULT NULL,
  p_claim_conversation boolean DEFAULT false -- true in the job: create the conversation if it is new
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
BEGIN
  IF current_user <> 'service_role' AND p_client_id IS DISTINCT FROM (auth.jwt() ->> 'client_id')::uuid THEN
    RAISE EXCEPTION 'p_client_id does not match the caller''s client_id claim' USING ERRCODE = '42501';
  END IF;

  SELECT * INTO v_agent FROM agents a WHERE a.client_id = p_client_id AND a.slug = p_agent_slug;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('sidekick', NULL, 'beyond_limit', false);
  END IF;
  -- The oldest max_sidekicks sidekicks stay usable after a downgrade; the others are refused.
  IF p_max_sidekicks IS NOT NULL THEN
    SELECT r.n INTO v_rank FROM (
      SELECT a.id, row_number() OVER (ORDER BY a.created_at, a.id) AS n
        FROM agents a WHERE a.client_id = p_client_id) r
     WHERE r.id = v_agent.id;
    IF v_rank > p_max_sidekicks THEN
      RETURN jsonb_build_object('sidekick', NULL, 'beyond_limit', true);
    END IF;
  END IF;

  IF p_user_id IS NOT NULL THEN
    SELECT coalesce(
      (SELECT uo.sections FROM user_overviews uo
        WHERE uo.client_id = p_client_id AND uo.user_id = p_user_id
          AND (uo.agent_id = v_agent.id OR uo.agent_id IS NULL)
        ORDER BY uo.agent_id NULLS LAST LIMIT 1),
      '{}'::jsonb) INTO v_overview;
  END IF;

  -- p_claim_conversation: p_conversation_id is a new id the worker chose, created here. Otherwise
  -- it is a conversation to continue, which must be this client's, this sidekick's and this user's;
  -- an unknown id and another client's id get the same answer ('unknown'), so nothing tells one
  -- client whether an id is used by another.
  IF p_conversation_id IS NOT NULL THEN
    SELECT c.agent_id, c.user_id INTO v_conv_agent, v_conv_user
      FROM conversations c WHERE c.client_id = p_client_id AND c.id = p_conversation_id;
    IF FOUND AND NOT p_claim_conversation THEN
      v_status := CASE
        WHEN v_conv_agent <> v_agent.id THEN 'other_sidekick'
        WHEN v_conv_user IS DISTINCT FROM p_user_id THEN 'other_user'
        ELSE 'continued' END;
      v_claimed := v_status = 'continued';
    ELSIF NOT FOUND AND p_claim_conversation THEN
      v_status := 'new';
      BEGIN
        INSERT INTO conversations (id, client_id, agent_id, user_id)
        VALUES (p_conversation_id, p_client_id, v_agent.id, p_user_id)
        ON CONFLICT (id) DO NOTHING;
        v_claimed := FOUND;
        IF NOT v_claimed THEN v_status := 'unknown'; END IF;
      EXCEPTION WHEN object_not_in_prerequisite_state THEN
        -- The write fence of a tier move: the transcript store creates it once writes are open.
        v_claimed := false;
      END;
    ELSE
      v_status := 'unknown';
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
        JOIN documents d ON d.client_id = ad.client_id AND d.id = ad.document_id
       WHERE ad.client_id = p_client_id AND ad.agent_id = v_agent.id AND ad.enabled AND d.status = 'ready'
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
    'embedding_models', v_models);
END $$;

REVOKE ALL ON FUNCTION begin_session(uuid, text, integer, uuid, uuid, boolean) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION begin_session(uuid, text, integer, uuid, uuid, boolean) TO authenticated, service_role;
