-- Gateways declared in the config file are kept in step with it on reload
-- (added, updated, removed); gateways registered through the API are not.
ALTER TABLE gateways ADD COLUMN declared INTEGER NOT NULL DEFAULT 0;
