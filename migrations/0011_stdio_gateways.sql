-- STDIO gateways: the program, its arguments and extra environment
-- (JSON list / object). NULL command for HTTP transports.
ALTER TABLE gateways ADD COLUMN command TEXT;
ALTER TABLE gateways ADD COLUMN args TEXT NOT NULL DEFAULT '[]';
ALTER TABLE gateways ADD COLUMN env TEXT NOT NULL DEFAULT '{}';
