-- docker-compose.yml: first start of the PostgreSQL service (run by the
-- image's /docker-entrypoint-initdb.d as the superuser, in database `weir`,
-- which holds the Iceberg catalog; Weir creates its tables).
-- The device registry gets a database of its own, read by `weir ingest`
-- (Modbus polling) and `weir serve` (catalog `registry`).
CREATE DATABASE registry OWNER weir;
\connect registry
SET ROLE weir;
\i /weir-sql/registry.sql
