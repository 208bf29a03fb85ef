-- Downstream request headers forwarded to a gateway: a JSON array of
-- lower-case header names, or NULL for the gateway-wide default
-- (--passthrough-headers). Applied per request, so it is not part of how the
-- gateway connects: changing it leaves live upstream sessions alone.
ALTER TABLE gateways ADD COLUMN passthrough_headers TEXT;
