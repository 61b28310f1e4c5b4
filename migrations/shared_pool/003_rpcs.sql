-- RPCs of the pool, with the plan's names, parameters and result columns. Unlike the plan's, they
-- run as the caller (SECURITY INVOKER: RLS applies) and start by checking that p_client_id is the
-- caller's own client (the JWT's client_id claim); passing another client's id is an error
-- (42501), not another client's rows. Only service_role (provisioning, the mover) may name any client.
-- PL/pgSQL rather than SQL so that this check is guaranteed to run before the query.
--
-- Retrieval is exact: the client's rows are collected first (through client_id-led btree indexes)
-- in a MATERIALIZED CTE, then ordered by exact distance. The planner cannot turn that into an
-- approximate index scan with a client_id post-filter (which returns fewer than k rows, or the
-- wrong ones), whatever vector indexes someone adds later. Ties are broken by id.
-- search_path includes `extensions`, where hosted Supabase may keep pgvector's operators.

-- The earlier helper that did the caller check; the check is now inlined in each RPC.
DROP FUNCTION IF EXISTS assert_caller_client(uuid);

CREATE OR REPLACE FUNCTION match_documents(
  p_client_id uuid,
  p_query_embedding vector,
  p_agent_slug text,
  p_match_threshold float8 DEFAULT 0.5,
  p_match_count integer DEFAULT 5
)
RETURNS TABLE (
  id uuid, document_id uuid, content text, relevance float8, title text, source_url text, chunk_index integer
)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
#variable_conflict use_column
BEGIN
  IF current_user <> 'service_role' AND p_client_id IS DISTINCT FROM (auth.jwt() ->> 'client_id')::uuid THEN
    RAISE EXCEPTION 'p_client_id does not match the caller''s client_id claim' USING ERRCODE = '42501';
  END IF;
  RETURN QUERY
  WITH mine AS MATERIALIZED (
    SELECT dc.id, dc.document_id, dc.content, dc.chunk_index, d.title, d.source_url,
           dc.embeddings <=> p_query_embedding AS distance
      FROM agents a
      JOIN agent_documents ad ON ad.client_id = a.client_id AND ad.agent_id = a.id
      JOIN documents d ON d.client_id = ad.client_id AND d.id = ad.document_id
      JOIN document_chunks dc ON dc.client_id = d.client_id AND dc.document_id = d.id
     WHERE a.client_id = p_client_id
       AND a.slug = p_agent_slug
       AND ad.enabled
       AND dc.embeddings IS NOT NULL
  )
  SELECT m.id, m.document_id, m.content, (1 - m.distance)::float8, m.title, m.source_url, m.chunk_index
    FROM mine m
   WHERE 1 - m.distance > p_match_threshold
   ORDER BY m.distance, m.id
   LIMIT p_match_count;
END $$;

CREATE OR REPLACE FUNCTION match_conversation_transcripts_secure(
  p_client_id uuid,
  p_query_embedding vector,
  p_agent_slug text,
  p_user_id uuid,
  p_match_threshold float8 DEFAULT 0.5,
  p_match_count integer DEFAULT 5,
  p_exclude_conversation_id uuid DEFAULT NULL
)
RETURNS TABLE (id uuid, conversation_id uuid, role text, content text, relevance float8, created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
#variable_conflict use_column
BEGIN
  IF current_user <> 'service_role' AND p_client_id IS DISTINCT FROM (auth.jwt() ->> 'client_id')::uuid THEN
    RAISE EXCEPTION 'p_client_id does not match the caller''s client_id claim' USING ERRCODE = '42501';
  END IF;
  RETURN QUERY
  WITH mine AS MATERIALIZED (
    SELECT ct.id, ct.conversation_id, ct.role, ct.content, ct.created_at,
           ct.embeddings <=> p_query_embedding AS distance
      FROM agents a
      JOIN conversation_transcripts ct ON ct.client_id = a.client_id AND ct.agent_id = a.id
     WHERE a.client_id = p_client_id
       AND a.slug = p_agent_slug
       AND ct.user_id = p_user_id
       AND ct.embeddings IS NOT NULL
       AND (p_exclude_conversation_id IS NULL OR ct.conversation_id <> p_exclude_conversation_id)
  )
  SELECT m.id, m.conversation_id, m.role, m.content, (1 - m.distance)::float8, m.created_at
    FROM mine m
   WHERE 1 - m.distance > p_match_threshold
   ORDER BY m.distance, m.id
   LIMIT p_match_count;
END $$;

CREATE OR REPLACE FUNCTION get_user_overview_for_agent(p_client_id uuid, p_user_id uuid, p_agent_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
DECLARE
  result jsonb;
BEGIN
  IF current_user <> 'service_role' AND p_client_id IS DISTINCT FROM (auth.jwt() ->> 'client_id')::uuid THEN
    RAISE EXCEPTION 'p_client_id does not match the caller''s client_id claim' USING ERRCODE = '42501';
  END IF;
  -- The sidekick's own overview of the user first, else the client-wide one (agent_id NULL).
  SELECT uo.sections INTO result
    FROM user_overviews uo
   WHERE uo.client_id = p_client_id
     AND uo.user_id = p_user_id
     AND (uo.agent_id = p_agent_id OR uo.agent_id IS NULL)
   ORDER BY uo.agent_id NULLS LAST
   LIMIT 1;
  RETURN coalesce(result, '{}'::jsonb);
END $$;

DO $$
DECLARE
  f text;
BEGIN
  FOREACH f IN ARRAY ARRAY[
    'match_documents(uuid, vector, text, float8, integer)',
    'match_conversation_transcripts_secure(uuid, vector, text, uuid, float8, integer, uuid)',
    'get_user_overview_for_agent(uuid, uuid, uuid)'
  ] LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO authenticated, service_role', f);
  END LOOP;
  -- Trigger functions are not RPCs: nobody but their owner needs them.
  REVOKE ALL ON FUNCTION set_updated_at() FROM PUBLIC, anon, authenticated;
END $$;
