-- Prompts, resources and resource templates discovered on a gateway, each
-- kept verbatim like tools. `key` is the name (prompt), URI (resource) or URI
-- template (template) the upstream knows it by.
CREATE TABLE gateway_items (
    id            TEXT PRIMARY KEY NOT NULL,
    gateway_id    TEXT NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('prompt', 'resource', 'template')),
    key           TEXT NOT NULL,
    definition    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (gateway_id, kind, key)
);

CREATE TABLE server_items (
    server_id     TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    item_id       TEXT NOT NULL REFERENCES gateway_items(id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    PRIMARY KEY (server_id, item_id)
);

-- A passthrough server exposes names and URIs unchanged; with `gateway_id`
-- set it exposes everything that gateway offers, now and after refreshes.
ALTER TABLE servers ADD COLUMN passthrough INTEGER NOT NULL DEFAULT 0;
ALTER TABLE servers ADD COLUMN gateway_id TEXT REFERENCES gateways(id) ON DELETE CASCADE;
