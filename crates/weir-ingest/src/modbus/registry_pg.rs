//! The production device registry: the PostgreSQL `devices` and `tags` tables
//! of the gateway schema (docs/seeds/README.md, sections 2.1
//! devices and 2.2 tags; the DDL Weir uses: `sql/postgres/registry.sql`).
//!
//! Mapping: a device's `name` (unique) is the `device_id` of its points
//! (the UUID `id` is internal to the registry); only enabled `ModbusTcp`
//! devices and enabled tags are polled. Per-device Modbus settings live in
//! the `config` JSONB: `unit_id` (default 1), `timeout_ms`, `order` (byte/
//! word order of the device's tags, default ABCD) and `scan_rate_ms` (for
//! tags whose `scan_rate` is NULL). Tag `address` strings are parsed like the
//! TOML registry's (`40001`, `hr:0`, ...).
//! Status changes are written back: `devices.status` and, when a device
//! comes Online, `last_seen` (the time of that poll).
//! TODO(issue 4): refresh `last_seen` periodically; reload the registry on change.

use std::path::PathBuf;

use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use super::ModbusError;
use super::registry::{
    Device, FileDefaults, FileDevice, FileRegistry, FileTag, RegistryLoader, validate,
};

/// Reads devices and tags from PostgreSQL (`postgres://user@host:port/db`).
#[derive(Clone)]
pub struct PostgresRegistry {
    pub url: String,
    /// The connection status updates reuse (opened on first use).
    status_conn: Arc<Mutex<Option<Client>>>,
}

impl PostgresRegistry {
    pub fn new(url: impl Into<String>) -> Self {
        PostgresRegistry {
            url: url.into(),
            status_conn: Arc::default(),
        }
    }

    fn db_error(&self, source: tokio_postgres::Error) -> ModbusError {
        ModbusError::RegistryDb {
            url: redact(&self.url),
            source,
        }
    }

    async fn connect(&self) -> Result<Client, ModbusError> {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .map_err(|e| self.db_error(e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "registry database connection ended");
            }
        });
        Ok(client)
    }
}

const STATUS: &str = "UPDATE devices SET status = $1::text::device_status, \
     last_seen = CASE WHEN $1 = 'Online' THEN to_timestamp($2::float8 / 1e6) ELSE last_seen END \
     WHERE name = $3";

const DEVICES: &str = "SELECT id::text, name, endpoint, location, config::text \
     FROM devices WHERE enabled AND protocol::text = 'ModbusTcp' ORDER BY name";
const TAGS: &str = "SELECT device_id::text, name, address, data_type::text, access_type::text, \
     unit, scaling, tag_offset, min_value, max_value, deadband, scan_rate \
     FROM tags WHERE enabled ORDER BY device_id, name";

#[async_trait::async_trait]
impl RegistryLoader for PostgresRegistry {
    async fn load(&self) -> Result<Vec<Device>, ModbusError> {
        let db = |e| self.db_error(e);
        let client = self.connect().await?;
        let devices = client.query(DEVICES, &[]).await.map_err(db)?;
        let tags = client.query(TAGS, &[]).await.map_err(db)?;
        drop(client);

        let path = PathBuf::from(redact(&self.url));
        let mut file = FileRegistry {
            defaults: FileDefaults::default(),
            devices: Vec::with_capacity(devices.len()),
        };
        let mut uuids = Vec::with_capacity(devices.len());
        for row in &devices {
            let uuid: String = row.get(0);
            let name: String = row.get(1);
            let config: serde_json::Value =
                serde_json::from_str(&row.get::<_, String>(4)).unwrap_or_default();
            let num = |k: &str| config.get(k).and_then(serde_json::Value::as_u64);
            let unit_id = match num("unit_id") {
                None => 1,
                Some(u) => u8::try_from(u).map_err(|_| ModbusError::RegistryInvalid {
                    path: path.clone(),
                    message: format!("device `{name}`: unit_id {u} is not 0..=255"),
                })?,
            };
            uuids.push(uuid);
            file.devices.push(FileDevice {
                id: name.clone(),
                name: Some(name),
                protocol: "ModbusTcp".into(),
                endpoint: row.get(2),
                unit_id,
                location: row.get(3),
                enabled: true,
                timeout_ms: num("timeout_ms"),
                order: config
                    .get("order")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string),
                scan_rate_ms: num("scan_rate_ms"),
                tags: Vec::new(),
            });
        }
        for row in &tags {
            let device: String = row.get(0);
            let Some(i) = uuids.iter().position(|u| *u == device) else {
                continue; // a tag of a disabled or non-Modbus device
            };
            let scan: Option<i32> = row.get(11);
            file.devices[i].tags.push(FileTag {
                name: row.get(1),
                address: toml::Value::String(row.get(2)),
                function: None,
                data_type: row.get(3),
                order: None,
                access: row.get(4),
                unit: row.get(5),
                scaling: row.get(6),
                offset: row.get(7),
                min: row.get(8),
                max: row.get(9),
                deadband: row.get(10),
                scan_rate_ms: scan.and_then(|s| u64::try_from(s).ok()),
                enabled: true,
            });
        }
        validate(file, &path)
    }

    async fn record_status(
        &self,
        device: &str,
        status: &str,
        ts_micros: i64,
    ) -> Result<(), ModbusError> {
        let mut conn = self.status_conn.lock().await;
        if conn.as_ref().is_none_or(Client::is_closed) {
            *conn = Some(self.connect().await?);
        }
        let client = conn.as_ref().expect("connected above");
        let ts = ts_micros as f64;
        client
            .execute(STATUS, &[&status, &ts, &device])
            .await
            .map_err(|e| self.db_error(e))?;
        Ok(())
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            super::redact("postgres://weir:secret@db:5432/reg"),
            "postgres://weir@db:5432/reg"
        );
        assert_eq!(super::redact("postgres://db/reg"), "postgres://db/reg");
    }
}
