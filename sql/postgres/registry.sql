-- The device registry (devices, tags) of the gateway scenario
-- (docs/design.md, "Data model"; docs/seeds/README.md, sections
-- 2.1 devices and 2.2 tags), as Weir reads it: Modbus polling
-- (`--modbus-registry postgres://…`) and federation (`--postgres-catalog
-- pg=postgres://…`). Used by docker-compose.yml (database `registry`) and
-- the PostgreSQL tests (tests/python/pg_harness.py).
CREATE TYPE protocol_kind AS ENUM ('ModbusTcp', 'ModbusRtu', 'OpcUa', 'Mqtt', 'Custom');
CREATE TYPE device_status AS ENUM ('Online', 'Offline', 'Error', 'Maintenance', 'Unknown');
CREATE TABLE devices (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL UNIQUE,
    description TEXT,
    protocol protocol_kind NOT NULL,
    location VARCHAR(255),
    endpoint VARCHAR(255) NOT NULL,
    config JSONB NOT NULL DEFAULT '{}',
    enabled BOOLEAN NOT NULL DEFAULT true,
    status device_status NOT NULL DEFAULT 'Unknown',
    last_seen TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    created_by VARCHAR(255),
    updated_by VARCHAR(255)
);
CREATE TYPE tag_data_type AS ENUM ('Boolean', 'Int8', 'UInt8', 'Int16', 'UInt16', 'Int32', 'UInt32',
    'Int64', 'UInt64', 'Float', 'Double', 'String', 'DateTime', 'ByteArray');
CREATE TYPE tag_access AS ENUM ('Read', 'Write', 'ReadWrite');
CREATE TABLE tags (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    device_id UUID NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    address VARCHAR(255) NOT NULL,
    data_type tag_data_type NOT NULL,
    access_type tag_access NOT NULL DEFAULT 'Read',
    unit VARCHAR(50),
    scaling DOUBLE PRECISION DEFAULT 1.0,
    tag_offset DOUBLE PRECISION DEFAULT 0.0,
    min_value DOUBLE PRECISION,
    max_value DOUBLE PRECISION,
    deadband DOUBLE PRECISION,
    scan_rate INTEGER,
    enabled BOOLEAN NOT NULL DEFAULT true,
    CONSTRAINT tags_device_name_unique UNIQUE(device_id, name)
);
