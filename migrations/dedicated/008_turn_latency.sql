-- Per-turn latency, read back: each assistant turn's metadata.latency (src/usage/latency.ts,
-- written with the transcript) summed up per sidekick and component for `sidekick usage`. The
-- pool's turn_latency_report without p_client_id: the whole project is the client's.

CREATE INDEX IF NOT EXISTS idx_transcripts_latency ON conversation_transcripts (created_at)
  WHERE role = 'assistant' AND metadata ? 'latency';

CREATE OR REPLACE FUNCTION turn_latency_report(p_from timestamptz, p_to timestamptz, p_agent_slug text DEFAULT NULL)
RETURNS TABLE (agent_slug text, component text, turns bigint, p50_ms float8, p90_ms float8, p99_ms float8)
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
  SELECT a.slug, c.component, count(*),
         percentile_cont(0.5) WITHIN GROUP (ORDER BY (c.v)::float8),
         percentile_cont(0.9) WITHIN GROUP (ORDER BY (c.v)::float8),
         percentile_cont(0.99) WITHIN GROUP (ORDER BY (c.v)::float8)
    FROM conversation_transcripts ct
    JOIN agents a ON a.id = ct.agent_id
    CROSS JOIN LATERAL (VALUES
      ('e2e', ct.metadata -> 'latency' -> 'e2e_ms'),
      ('end_of_turn', ct.metadata -> 'latency' -> 'end_of_turn_ms'),
      ('transcription', ct.metadata -> 'latency' -> 'transcription_ms'),
      ('context', ct.metadata -> 'latency' -> 'context_ms'),
      ('llm_ttft', ct.metadata -> 'latency' -> 'llm_ttft_ms'),
      ('tts_ttfb', ct.metadata -> 'latency' -> 'tts_ttfb_ms')) AS c(component, v)
   WHERE ct.role = 'assistant' AND ct.metadata ? 'latency'
     AND ct.created_at >= p_from AND ct.created_at < p_to
     AND (p_agent_slug IS NULL OR a.slug = p_agent_slug)
     AND jsonb_typeof(c.v) = 'number'
   GROUP BY a.slug, c.component
   ORDER BY a.slug, c.component
$$;

REVOKE ALL ON FUNCTION turn_latency_report(timestamptz, timestamptz, text) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION turn_latency_report(timestamptz, timestamptz, text) TO service_role;
