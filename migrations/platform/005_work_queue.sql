-- Durable work that must outlive the process that started it: turns a session could not write
-- before it ended, post-session work, webhook deliveries. Any worker may do an item; a lease with
-- a fencing token (the attempt number) makes sure that of two workers only the one holding the
-- current lease can finish or fail it. Service role only, like every platform table.

CREATE TABLE IF NOT EXISTS work_items (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  kind text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,62}$'),
  client_id uuid REFERENCES clients (id) ON DELETE CASCADE,
  -- Enqueueing the same work twice (a retried session end, two workers) gives one item.
  dedupe_key text,
  payload jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
  attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  max_attempts integer NOT NULL DEFAULT 10 CHECK (max_attempts >= 1),
  run_after timestamptz NOT NULL DEFAULT now(),
  leased_by text,
  lease_expires_at timestamptz,
  last_error text,
  result jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  CONSTRAINT work_items_dedupe UNIQUE (kind, dedupe_key)
);

-- What claim_work_items scans: the items that may run, oldest due first.
CREATE INDEX IF NOT EXISTS idx_work_items_due ON work_items (run_after) WHERE status IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS idx_work_items_client ON work_items (client_id, kind, status);

DROP TRIGGER IF EXISTS work_items_updated_at ON work_items;
CREATE TRIGGER work_items_updated_at BEFORE UPDATE ON work_items FOR EACH ROW EXECUTE FUNCTION set_updated_at();

ALTER TABLE work_items ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON work_items FROM PUBLIC, anon, authenticated;
GRANT ALL ON work_items TO service_role;

-- Leases up to p_limit items of the given kinds to p_worker for p_lease_seconds: due pending items,
-- and running items whose lease expired (their worker died). SKIP LOCKED: concurrent claimers never
-- wait for each other and never get the same item. Each claim counts an attempt; the attempt number
-- is the lease's fencing token.
CREATE OR REPLACE FUNCTION claim_work_items(p_kinds text[], p_worker text, p_lease_seconds integer, p_limit integer)
RETURNS SETOF work_items
LANGUAGE sql VOLATILE SECURITY INVOKER SET search_path = public, pg_temp AS $$
  UPDATE work_items w
     SET status = 'running', leased_by = p_worker, attempts = w.attempts + 1,
         lease_expires_at = now() + make_interval(secs => p_lease_seconds)
   WHERE w.id IN (
     SELECT c.id FROM work_items c
      WHERE c.kind = ANY (p_kinds)
        AND ((c.status = 'pending' AND c.run_after <= now())
          OR (c.status = 'running' AND c.lease_expires_at < now()))
      ORDER BY c.run_after, c.created_at
      LIMIT p_limit
      FOR UPDATE SKIP LOCKED)
  RETURNING w.*
$$;

-- Ends an item the caller still holds (same worker, same attempt, lease not taken over):
-- p_outcome 'done' (with p_result), 'retry' (pending again after p_retry_seconds, or 'failed' once
-- max_attempts is reached) or 'failed' (given up, p_error kept). Returns false when the lease was
-- lost: another worker has the item now, and this worker's outcome does not count.
CREATE OR REPLACE FUNCTION finish_work_item(
  p_id uuid, p_worker text, p_attempt integer, p_outcome text,
  p_error text DEFAULT NULL, p_result jsonb DEFAULT NULL, p_retry_seconds integer DEFAULT 0)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, pg_temp AS $$
BEGIN
  IF p_outcome NOT IN ('done', 'retry', 'failed') THEN
    RAISE EXCEPTION 'p_outcome must be done, retry or failed, got %', p_outcome USING ERRCODE = '22023';
  END IF;
  UPDATE work_items w
     SET status = CASE
                    WHEN p_outcome = 'done' THEN 'done'
                    WHEN p_outcome = 'retry' AND w.attempts < w.max_attempts THEN 'pending'
                    ELSE 'failed' END,
         run_after = CASE WHEN p_outcome = 'retry' THEN now() + make_interval(secs => p_retry_seconds) ELSE w.run_after END,
         last_error = CASE WHEN p_outcome = 'done' THEN w.last_error ELSE left(p_error, 2000) END,
         result = coalesce(p_result, w.result),
         leased_by = NULL, lease_expires_at = NULL,
         finished_at = CASE WHEN p_outcome = 'retry' AND w.attempts < w.max_attempts THEN NULL ELSE now() END
   WHERE w.id = p_id AND w.status = 'running' AND w.leased_by = p_worker AND w.attempts = p_attempt;
  RETURN FOUND;
END $$;

REVOKE ALL ON FUNCTION claim_work_items(text[], text, integer, integer) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION finish_work_item(uuid, text, integer, text, text, jsonb, integer) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION claim_work_items(text[], text, integer, integer) TO service_role;
GRANT EXECUTE ON FUNCTION finish_work_item(uuid, text, integer, text, text, jsonb, integer) TO service_role;

COMMENT ON TABLE work_items IS 'Durable work any worker may do (leased, retried with backoff, fenced by attempt number)';
