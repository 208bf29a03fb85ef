-- Registered upstream MCP servers ("gateways" in the public API).
CREATE TABLE gateways (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL UNIQUE,
    slug          TEXT NOT NULL UNIQUE,
    url           TEXT NOT NULL,
    transport     TEXT NOT NULL,
    description   TEXT,
    tags          TEXT NOT NULL DEFAULT '[]',
    enabled       INTEGER NOT NULL DEFAULT 1,
    reachable     INTEGER NOT NULL DEFAULT 1,
    capabilities  TEXT NOT NULL DEFAULT '{}',
    server_info   TEXT NOT NULL DEFAULT '{}',
    protocol_version TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    last_seen     TEXT,
    last_error    TEXT
);

-- Tools discovered on a gateway. `definition` is the upstream's tool object
-- verbatim, so fields we do not model still reach clients.
CREATE TABLE tools (
    id            TEXT PRIMARY KEY NOT NULL,
    gateway_id    TEXT NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,
    original_name TEXT NOT NULL,
    definition    TEXT NOT NULL,
    enabled       INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (gateway_id, original_name)
);

-- Virtual servers: a named subset of tools with its own MCP endpoint.
CREATE TABLE servers (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL UNIQUE,
    description   TEXT,
    icon          TEXT,
    tags          TEXT NOT NULL DEFAULT '[]',
    enabled       INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE server_tools (
    server_id     TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    tool_id       TEXT NOT NULL REFERENCES tools(id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    PRIMARY KEY (server_id, tool_id)
);
