-- After the session: each client's own switches (webhook, memory, redaction), and leases that let
-- one worker at a time do a platform-wide chore (the retention sweep). Service role only.

-- What a client chose for its sessions' aftermath; the worker validates it key by key
-- (src/tenancy/client-settings.ts) and never fails a session over it.
ALTER TABLE clients ADD COLUMN IF NOT EXISTS settings jsonb NOT NULL DEFAULT '{}';
DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_constraint WHERE conrelid = 'clients'::regclass AND conname = 'clients_settings_object'
  ) THEN
    ALTER TABLE clients ADD CONSTRAINT clients_settings_object CHECK (jsonb_typeof(settings) = 'object');
  END IF;
END $$;
COMMENT ON COLUMN clients.settings IS 'Per-client switches: webhook_url, webhook_transcript, memory, redaction, phone_region';

-- A named lease: at most one holder until it expires (its holder died) or is released. A released
-- lease remembers when its work last finished, so that a chore every worker schedules runs once
-- per interval, not once per worker.
CREATE TABLE IF NOT EXISTS platform_leases (
  name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_:-]{0,99}$'),
  holder text,
  expires_at timestamptz,
  last_finished_at timestamptz,
  last_result jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

DROP TRIGGER IF EXISTS platform_leases_updated_at ON platform_leases;
CREATE TRIGGER platform_leases_updated_at BEFORE UPDATE ON platform_leases
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();

ALTER TABLE platform_leases ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON platform_leases FROM PUBLIC, anon, authenticated;
GRANT ALL ON platform_leases TO service_role;

-- Takes (or renews) the lease for p_seconds. Refused (false) while another holder's lease runs, or,
-- with p_min_interval_seconds, while the last release is more recent than that. The row lock makes
-- two takers serialize: the second sees the first's lease.
CREATE OR REPLACE FUNCTION take_lease(
  p_name text, p_holder text, p_seconds integer, p_min_interval_seconds integer DEFAULT 0)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, pg_temp AS $$
BEGIN
  IF p_holder IS NULL OR p_holder = '' OR p_seconds IS NULL OR p_seconds < 1 THEN
    RAISE EXCEPTION 'take_lease needs a holder and p_seconds >= 1' USING ERRCODE = '22023';
  END IF;
  INSERT INTO platform_leases (name) VALUES (p_name) ON CONFLICT (name) DO NOTHING;
  UPDATE platform_leases l
     SET holder = p_holder, expires_at = now() + make_interval(secs => p_seconds)
   WHERE l.name = p_name
     AND (l.holder IS NULL OR l.holder = p_holder OR l.expires_at < now())
     AND (l.holder = p_holder OR l.last_finished_at IS NULL
          OR l.last_finished_at <= now() - make_interval(secs => coalesce(p_min_interval_seconds, 0)));
  RETURN FOUND;
END $$;

-- Ends the caller's lease, keeping what the work did. false: the lease was not the caller's
-- (it expired and another holder took it).
CREATE OR REPLACE FUNCTION release_lease(p_name text, p_holder text, p_result jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, pg_temp AS $$
BEGIN
  UPDATE platform_leases l
     SET holder = NULL, expires_at = NULL, last_finished_at = now(), last_result = coalesce(p_result, l.last_result)
   WHERE l.name = p_name AND l.holder = p_holder;
  RETURN FOUND;
END $$;

REVOKE ALL ON FUNCTION take_lease(text, text, integer, integer) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION release_lease(text, text, jsonb) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION take_lease(text, text, integer, integer) TO service_role;
GRANT EXECUTE ON FUNCTION release_lease(text, text, jsonb) TO service_role;

-- Erasure finds a user's pending work by the payload's user_id.
CREATE INDEX IF NOT EXISTS idx_work_items_client_user ON work_items (client_id, (payload ->> 'user_id'));

COMMENT ON TABLE platform_leases IS 'Named leases: one holder at a time for platform-wide chores (the retention sweep)';
