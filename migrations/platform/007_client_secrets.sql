-- Secrets of each client, encrypted by the worker (AES-256-GCM, src/secrets/keyring.ts) before
-- they are written: the database holds ciphertext only, never a key. `tool` secrets are what a
-- client's tools and MCP servers send in a header (named by tools_config, never copied into it);
-- the one `signing` secret per client keys the signature every call to its endpoints carries.
-- `key_id` names the key a row was encrypted with, so rows of an older key still decrypt while
-- the key is being rotated. Service role only, like every platform table.

CREATE TABLE IF NOT EXISTS client_secrets (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  client_id uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
  kind text NOT NULL DEFAULT 'tool' CHECK (kind IN ('tool', 'signing')),
  name text NOT NULL,
  key_id text NOT NULL CHECK (key_id ~ '^[0-9a-f]{16}$'),
  -- base64: the 12-byte GCM nonce, and the ciphertext followed by its 16-byte tag.
  iv text NOT NULL,
  ciphertext text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT client_secrets_name CHECK (
    (kind = 'signing' AND name = 'signing') OR (kind = 'tool' AND name ~ '^[A-Z][A-Z0-9_]{0,63}$')),
  CONSTRAINT client_secrets_per_client UNIQUE (client_id, name)
);

-- `sidekick secrets rekey` finds the rows of an old key.
CREATE INDEX IF NOT EXISTS idx_client_secrets_key ON client_secrets (key_id);

DROP TRIGGER IF EXISTS client_secrets_updated_at ON client_secrets;
CREATE TRIGGER client_secrets_updated_at BEFORE UPDATE ON client_secrets
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();

ALTER TABLE client_secrets ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON client_secrets FROM PUBLIC, anon, authenticated;
GRANT ALL ON client_secrets TO service_role;

COMMENT ON TABLE client_secrets IS 'Per-client secrets (tool headers, the signing secret), AES-256-GCM ciphertext bound to the client and name';
