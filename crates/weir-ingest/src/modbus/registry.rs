//! The device registry: devices and their tags (docs/design.md, "Data model",
//! device registry), loaded behind [`RegistryLoader`] — a TOML file for the
//! embedded default ([`TomlRegistry`]) and PostgreSQL in production
//! ([`super::registry_pg::PostgresRegistry`], the seed's `devices`/`tags`
//! tables). Both go through the same validation.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ModbusError;
use super::registers::{DataType, WordOrder};

/// The Modbus read function a tag uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    /// FC 1, one bit per address.
    Coils,
    /// FC 2, one bit per address.
    DiscreteInputs,
    /// FC 3.
    HoldingRegisters,
    /// FC 4.
    InputRegisters,
}

impl Function {
    pub fn code(self) -> u8 {
        match self {
            Function::Coils => 1,
            Function::DiscreteInputs => 2,
            Function::HoldingRegisters => 3,
            Function::InputRegisters => 4,
        }
    }
    pub fn is_bits(self) -> bool {
        matches!(self, Function::Coils | Function::DiscreteInputs)
    }
    /// Most addresses one request may read (Modbus application protocol
    /// v1.1b3: 125 registers, 2000 bits).
    pub fn max_quantity(self) -> u16 {
        if self.is_bits() { 2000 } else { 125 }
    }
    fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "coil" | "coils" | "co" | "1" => Ok(Function::Coils),
            "discrete" | "discrete_input" | "discrete_inputs" | "di" | "2" => {
                Ok(Function::DiscreteInputs)
            }
            "holding" | "holding_register" | "holding_registers" | "hr" | "3" => {
                Ok(Function::HoldingRegisters)
            }
            "input" | "input_register" | "input_registers" | "ir" | "4" => {
                Ok(Function::InputRegisters)
            }
            _ => Err(format!(
                "unknown function `{s}` (expected holding, input, coil or discrete)"
            )),
        }
    }
}

/// Parses a tag address: `hr:100`, `ir:0`, `co:5`, `di:7` (0-based), a
/// Modicon reference (`40001` = holding 0, `30001` input, `10001` discrete,
/// `00001` coil; 5 or 6 digits), or a bare 0-based number with the tag's
/// `function` (default holding).
pub fn parse_address(s: &str, function: Option<&str>) -> Result<(Function, u16), String> {
    let s = s.trim();
    if let Some((f, a)) = s.split_once(':') {
        let f = Function::parse(f)?;
        let a = a
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("bad address `{s}`"))?;
        return Ok((f, a));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) || s.is_empty() {
        return Err(format!("bad address `{s}`"));
    }
    if function.is_none() && (s.len() == 5 || s.len() == 6) {
        let (kind, rest) = s.split_at(1);
        let f = match kind {
            "0" => Function::Coils,
            "1" => Function::DiscreteInputs,
            "3" => Function::InputRegisters,
            "4" => Function::HoldingRegisters,
            _ => return Err(format!("bad Modicon address `{s}`")),
        };
        let n: u32 = rest.parse().map_err(|_| format!("bad address `{s}`"))?;
        if n == 0 || n > 65536 {
            return Err(format!("Modicon address `{s}` out of range"));
        }
        return Ok((f, (n - 1) as u16));
    }
    let f = match function {
        Some(f) => Function::parse(f)?,
        None => Function::HoldingRegisters,
    };
    let a = s.parse::<u16>().map_err(|_| format!("bad address `{s}`"))?;
    Ok((f, a))
}

/// One tag of a device, validated.
#[derive(Debug, Clone)]
pub struct Tag {
    pub name: String,
    pub function: Function,
    pub address: u16,
    pub data_type: DataType,
    pub order: WordOrder,
    pub unit: Option<String>,
    pub scaling: f64,
    pub offset: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub deadband: Option<f64>,
    pub scan_rate: Duration,
}

impl Tag {
    /// Addresses (registers or bits) the tag spans.
    pub fn span(&self) -> u16 {
        if self.function.is_bits() {
            1
        } else {
            self.data_type.words()
        }
    }
}

/// One device, validated.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub name: String,
    /// `host:port`.
    pub endpoint: String,
    pub unit_id: u8,
    pub location: Option<String>,
    pub timeout: Option<Duration>,
    pub tags: Vec<Tag>,
}

/// Where devices come from.
#[async_trait::async_trait]
pub trait RegistryLoader: Send + Sync {
    /// Every enabled Modbus TCP device with its enabled tags.
    async fn load(&self) -> Result<Vec<Device>, ModbusError>;

    /// Records a device's status change (`status` Online/Offline/Error) at
    /// `ts_micros`, where the registry keeps it; a file registry does not.
    async fn record_status(
        &self,
        _device: &str,
        _status: &str,
        _ts_micros: i64,
    ) -> Result<(), ModbusError> {
        Ok(())
    }
}

/// The embedded default: a TOML file (see `catalog/devices/registry.example.toml`).
#[derive(Debug, Clone)]
pub struct TomlRegistry {
    pub path: PathBuf,
}

#[async_trait::async_trait]
impl RegistryLoader for TomlRegistry {
    async fn load(&self) -> Result<Vec<Device>, ModbusError> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|source| ModbusError::RegistryRead {
                path: self.path.clone(),
                source,
            })?;
        parse_registry(&text, &self.path)
    }
}

/// The registry as written (TOML) or read (PostgreSQL), before validation.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRegistry {
    #[serde(default)]
    pub defaults: FileDefaults,
    #[serde(default)]
    pub devices: Vec<FileDevice>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDefaults {
    pub scan_rate_ms: Option<u64>,
    pub order: Option<String>,
    pub timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDevice {
    pub id: String,
    pub name: Option<String>,
    #[serde(default = "modbus_tcp")]
    pub protocol: String,
    pub endpoint: String,
    #[serde(default = "one")]
    pub unit_id: u8,
    pub location: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub timeout_ms: Option<u64>,
    pub order: Option<String>,
    pub scan_rate_ms: Option<u64>,
    #[serde(default)]
    pub tags: Vec<FileTag>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTag {
    pub name: String,
    pub address: toml::Value,
    pub function: Option<String>,
    pub data_type: String,
    pub order: Option<String>,
    #[serde(default = "read")]
    pub access: String,
    pub unit: Option<String>,
    pub scaling: Option<f64>,
    pub offset: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub deadband: Option<f64>,
    pub scan_rate_ms: Option<u64>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn modbus_tcp() -> String {
    "ModbusTcp".into()
}
fn one() -> u8 {
    1
}
fn yes() -> bool {
    true
}
fn read() -> String {
    "Read".into()
}

/// Parses and validates a TOML registry (`path` only names it in errors).
pub fn parse_registry(text: &str, path: &Path) -> Result<Vec<Device>, ModbusError> {
    let invalid = |message: String| ModbusError::RegistryInvalid {
        path: path.to_path_buf(),
        message,
    };
    let file: FileRegistry = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    validate(file, path)
}

/// Checks a registry and turns it into devices (`path` names it in errors).
pub(super) fn validate(file: FileRegistry, path: &Path) -> Result<Vec<Device>, ModbusError> {
    let invalid = |message: String| ModbusError::RegistryInvalid {
        path: path.to_path_buf(),
        message,
    };
    let mut ids = HashSet::new();
    let mut out = Vec::new();
    for d in file.devices {
        if !d.enabled {
            continue;
        }
        let at = |m: String| invalid(format!("device `{}`: {m}", d.id));
        if d.id.trim().is_empty() {
            return Err(invalid("a device has an empty id".into()));
        }
        if !ids.insert(d.id.clone()) {
            return Err(at("duplicate device id".into()));
        }
        if !d.protocol.eq_ignore_ascii_case("modbustcp") {
            // Other protocols are other sources' devices.
            continue;
        }
        if d.endpoint.trim().is_empty() {
            return Err(at("empty endpoint".into()));
        }
        let defaults = TagDefaults {
            order: d.order.clone().or(file.defaults.order.clone()),
            scan_rate_ms: d
                .scan_rate_ms
                .or(file.defaults.scan_rate_ms)
                .unwrap_or(1000),
        };
        let mut names = HashSet::new();
        let mut tags = Vec::new();
        for t in d.tags {
            if !t.enabled {
                continue;
            }
            if let Some(tag) = validate_tag(t, &mut names, &defaults, &at)? {
                tags.push(tag);
            }
        }
        out.push(Device {
            name: d.name.unwrap_or_else(|| d.id.clone()),
            id: d.id,
            endpoint: d.endpoint,
            unit_id: d.unit_id,
            location: d.location,
            timeout: d
                .timeout_ms
                .or(file.defaults.timeout_ms)
                .map(Duration::from_millis),
            tags,
        });
    }
    Ok(out)
}

/// What a device's tags fall back to: the device's settings, else the
/// registry's defaults.
struct TagDefaults {
    order: Option<String>,
    scan_rate_ms: u64,
}

/// Checks one enabled tag of a device and turns it into a tag, or `None` for
/// a write-only tag; `names` holds the device's tag names seen so far and
/// `at` prefixes errors with the device.
fn validate_tag(
    t: FileTag,
    names: &mut HashSet<String>,
    defaults: &TagDefaults,
    at: &dyn Fn(String) -> ModbusError,
) -> Result<Option<Tag>, ModbusError> {
    let at = |m: String| at(format!("tag `{}`: {m}", t.name));
    if t.name.trim().is_empty() {
        return Err(at("empty tag name".into()));
    }
    if !names.insert(t.name.clone()) {
        return Err(at("duplicate tag name".into()));
    }
    if !t.access.to_ascii_lowercase().contains("read") {
        return Ok(None); // write-only tags are never polled
    }
    let address = match &t.address {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        other => {
            return Err(at(format!(
                "address must be a string or number, not {other}"
            )));
        }
    };
    let (function, address) = parse_address(&address, t.function.as_deref()).map_err(at)?;
    let data_type: DataType = t.data_type.parse().map_err(at)?;
    let order = match t.order.as_ref().or(defaults.order.as_ref()) {
        Some(o) => o.parse().map_err(at)?,
        None => WordOrder::Abcd,
    };
    let scaling = t.scaling.unwrap_or(1.0);
    if !scaling.is_finite() || scaling == 0.0 {
        return Err(at(format!("scaling {scaling} must be finite and non-zero")));
    }
    if let (Some(lo), Some(hi)) = (t.min, t.max)
        && lo > hi
    {
        return Err(at(format!("min {lo} is above max {hi}")));
    }
    if t.deadband.is_some_and(|d| d.is_nan() || d < 0.0) {
        return Err(at("deadband must be >= 0".into()));
    }
    let scan = t.scan_rate_ms.unwrap_or(defaults.scan_rate_ms);
    if scan == 0 {
        return Err(at("scan_rate_ms must be > 0".into()));
    }
    let tag = Tag {
        name: t.name.clone(),
        function,
        address,
        data_type,
        order,
        unit: t.unit,
        scaling,
        offset: t.offset.unwrap_or(0.0),
        min: t.min,
        max: t.max,
        deadband: t.deadband,
        scan_rate: Duration::from_millis(scan),
    };
    if u32::from(tag.address) + u32::from(tag.span()) > 65536 {
        return Err(at("address range runs past 65535".into()));
    }
    Ok(Some(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_every_spelling() {
        assert_eq!(
            parse_address("40001", None),
            Ok((Function::HoldingRegisters, 0))
        );
        assert_eq!(
            parse_address("30010", None),
            Ok((Function::InputRegisters, 9))
        );
        assert_eq!(parse_address("00003", None), Ok((Function::Coils, 2)));
        assert_eq!(
            parse_address("ir:7", None),
            Ok((Function::InputRegisters, 7))
        );
        assert_eq!(
            parse_address("12", Some("discrete")),
            Ok((Function::DiscreteInputs, 12))
        );
        assert_eq!(
            parse_address("12", None),
            Ok((Function::HoldingRegisters, 12))
        );
        assert!(parse_address("hr:70000", None).is_err());
        assert!(parse_address("x12", None).is_err());
        assert!(parse_address("50001", None).is_err());
    }

    #[test]
    fn example_registry_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../catalog/devices/registry.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let devices = parse_registry(&text, &path).unwrap();
        assert!(!devices.is_empty());
        assert!(devices.iter().all(|d| !d.tags.is_empty()));
    }

    #[test]
    fn bad_registries_say_what_is_wrong() {
        let p = Path::new("r.toml");
        let err = |t: &str| parse_registry(t, p).unwrap_err().to_string();
        let dev = "[[devices]]\nid = \"a\"\nendpoint = \"127.0.0.1:502\"\n";
        assert!(
            err(&format!(
                "{dev}[[devices.tags]]\nname = \"t\"\naddress = 1\ndata_type = \"String\"\n"
            ))
            .contains("unsupported data type")
        );
        assert!(err(&format!("{dev}[[devices.tags]]\nname = \"t\"\naddress = 1\ndata_type = \"Int16\"\nscaling = 0.0\n")).contains("scaling"));
        assert!(err(&format!("{dev}{dev}")).contains("duplicate device id"));
        assert!(err("[[devices]]\nid = \"a\"\n").contains("endpoint"));
        assert!(err(&format!("{dev}bogus = 1\n")).contains("bogus"));
    }
}
