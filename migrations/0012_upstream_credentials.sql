-- Upstream credentials and TLS per gateway. `secrets` is AES-256-GCM
-- ciphertext (see src/secrets.rs) of a JSON object holding the credentials,
-- the mTLS client key and the STDIO environment; NULL when there are none.
-- Certificates are public and stored as PEM text.
ALTER TABLE gateways ADD COLUMN secrets TEXT;
ALTER TABLE gateways ADD COLUMN ca_certificate TEXT;
ALTER TABLE gateways ADD COLUMN client_cert TEXT;
