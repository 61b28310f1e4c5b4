-- RPCs of the pool, with the plan's names and parameters. They run as the caller (RLS applies) and
-- first check that p_client_id is the caller's own client: passing another id gets an error, not
-- another client's rows. Retrieval is exact: distances are computed over the client's own rows
-- (found through client_id-led btree indexes), so it returns the true top-k whatever vector
-- indexes exist; an approximate index filtered by client_id would return fewer than k rows.

CREATE OR REPLACE FUNCTION assert_caller_client(p_client_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
BEGIN
  IF current_user IN ('authenticated', 'anon') AND p_client_id IS DISTINCT FROM (SELECT request_client_id()) THEN
    RAISE EXCEPTION 'p_client_id does not match the caller''s client_id claim' USING ERRCODE = '42501';
  END IF;
  RETURN true;
END $$;

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
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
BEGIN
  PERFORM assert_caller_client(p_client_id);
  RETURN QUERY
  WITH mine AS MATERIALIZED (
    SELECT dc.id, dc.document_id, dc.content, dc.chunk_index, d.title, d.source_url,
           dc.embeddings <=> p_query_embedding AS distance
      FROM agents a
      JOIN agent_documents ad ON ad.client_id = a.client_id AND ad.agent_id = a.id AND ad.enabled
      JOIN documents d ON d.client_id = ad.client_id AND d.id = ad.document_id
      JOIN document_chunks dc ON dc.client_id = d.client_id AND dc.document_id = d.id
     WHERE a.client_id = p_client_id AND a.slug = p_agent_slug AND dc.embeddings IS NOT NULL
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
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
BEGIN
  PERFORM assert_caller_client(p_client_id);
  RETURN QUERY
  WITH mine AS MATERIALIZED (
    SELECT ct.id, ct.conversation_id, ct.role, ct.content, ct.created_at,
           ct.embeddings <=> p_query_embedding AS distance
      FROM conversation_transcripts ct
      JOIN agents a ON a.client_id = ct.client_id AND a.id = ct.agent_id
     WHERE ct.client_id = p_client_id
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
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = public, pg_temp AS $$
DECLARE
  result jsonb;
BEGIN
  PERFORM assert_caller_client(p_client_id);
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
DECLARE f text;
BEGIN
  FOREACH f IN ARRAY ARRAY[
    'assert_caller_client(uuid)',
    'match_documents(uuid, vector, text, float8, integer)',
    'match_conversation_transcripts_secure(uuid, vector, text, uuid, float8, integer, uuid)',
    'get_user_overview_for_agent(uuid, uuid, uuid)',
    'request_client_id()'
  ] LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO authenticated, service_role', f);
  END LOOP;
END $$;
