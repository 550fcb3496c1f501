-- The alert registry of the gateway scenario (docs/seeds/README.md,
-- section 2.3, alert management: `alert_rules`, `alert_history`),
-- as Weir reads and writes it: `weir serve|ingest --alert-rules
-- postgres://…` evaluates the enabled `alert_rules` (joined with the
-- `devices` and `tags` of registry.sql) and mirrors every transition into
-- `alert_history` (id = Weir's alert id). Needs registry.sql first.
CREATE TYPE compare_op AS ENUM ('GT', 'LT', 'GTE', 'LTE', 'EQ', 'NE', 'BETWEEN', 'NOT_BETWEEN');
CREATE TYPE alert_level AS ENUM ('INFO', 'WARNING', 'CRITICAL', 'FATAL');
CREATE TYPE alert_status AS ENUM ('ACTIVE', 'ACKNOWLEDGED', 'RESOLVED', 'SUPPRESSED');
CREATE TABLE alert_rules (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL UNIQUE,
    description TEXT,
    device_id UUID REFERENCES devices(id) ON DELETE CASCADE,
    tag_id UUID REFERENCES tags(id) ON DELETE CASCADE,
    condition_expression TEXT NOT NULL,
    op compare_op NOT NULL,
    threshold_value DOUBLE PRECISION,
    threshold_high DOUBLE PRECISION,
    threshold_low DOUBLE PRECISION,
    level alert_level NOT NULL,
    eval_interval INTERVAL NOT NULL DEFAULT '1 minute',
    eval_duration INTERVAL,
    cooldown_duration INTERVAL DEFAULT '5 minutes',
    enabled BOOLEAN NOT NULL DEFAULT true,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    created_by VARCHAR(255),
    CONSTRAINT alert_rules_name_not_empty CHECK (LENGTH(TRIM(name)) > 0),
    CONSTRAINT alert_rules_threshold_check CHECK (
        (op IN ('BETWEEN', 'NOT_BETWEEN') AND threshold_high IS NOT NULL AND threshold_low IS NOT NULL) OR
        (op NOT IN ('BETWEEN', 'NOT_BETWEEN') AND threshold_value IS NOT NULL)
    )
);
CREATE TABLE alert_history (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    rule_id UUID NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    device_id UUID REFERENCES devices(id),
    tag_id UUID REFERENCES tags(id),
    fired_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    resolved_at TIMESTAMPTZ,
    acknowledged_at TIMESTAMPTZ,
    acknowledged_by VARCHAR(255),
    triggered_value DOUBLE PRECISION,
    threshold_value DOUBLE PRECISION,
    level alert_level NOT NULL,
    status alert_status NOT NULL DEFAULT 'ACTIVE',
    message TEXT NOT NULL,
    details JSONB DEFAULT '{}',
    duration INTERVAL,
    CONSTRAINT alert_history_resolved_after_fired CHECK (resolved_at IS NULL OR resolved_at >= fired_at),
    CONSTRAINT alert_history_ack_after_fired CHECK (acknowledged_at IS NULL OR acknowledged_at >= fired_at)
);
CREATE INDEX idx_alert_rules_enabled ON alert_rules(enabled);
CREATE INDEX idx_alert_history_rule_id ON alert_history(rule_id);
CREATE INDEX idx_alert_history_fired_at ON alert_history(fired_at);
CREATE INDEX idx_alert_history_status ON alert_history(status);
