//! The session messages of `Flight.proto` (SetSessionOptions,
//! GetSessionOptions, CloseSession). arrow-flight 58 does not generate them,
//! so they are declared here with prost's derive, field for field as in the
//! upstream `.proto` (tags and types must match; see the unit tests).
//!
//! TODO(issue 7): use arrow-flight's types once it ships them.

use std::collections::HashMap;

/// Action type names (as in `Flight.proto`).
pub(crate) const SET_SESSION_OPTIONS: &str = "SetSessionOptions";
pub(crate) const GET_SESSION_OPTIONS: &str = "GetSessionOptions";
pub(crate) const CLOSE_SESSION: &str = "CloseSession";
pub(crate) const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SessionOptionValue {
    #[prost(oneof = "OptionValue", tags = "1, 2, 3, 4, 5")]
    pub option_value: Option<OptionValue>,
}

// Variant names follow the .proto's field names.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum OptionValue {
    #[prost(string, tag = "1")]
    StringValue(String),
    #[prost(bool, tag = "2")]
    BoolValue(bool),
    #[prost(sfixed64, tag = "3")]
    Int64Value(i64),
    #[prost(double, tag = "4")]
    DoubleValue(f64),
    #[prost(message, tag = "5")]
    StringListValue(StringListValue),
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StringListValue {
    #[prost(string, repeated, tag = "1")]
    pub values: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SetSessionOptionsRequest {
    #[prost(map = "string, message", tag = "1")]
    pub session_options: HashMap<String, SessionOptionValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub errors: HashMap<String, SetSessionOptionsError>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SetSessionOptionsError {
    #[prost(enumeration = "SetSessionOptionsErrorValue", tag = "1")]
    pub value: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum SetSessionOptionsErrorValue {
    Unspecified = 0,
    InvalidName = 1,
    InvalidValue = 2,
    Error = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GetSessionOptionsRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub session_options: HashMap<String, SessionOptionValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CloseSessionRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CloseSessionResult {
    #[prost(enumeration = "CloseSessionStatus", tag = "1")]
    pub status: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum CloseSessionStatus {
    Unspecified = 0,
    Closed = 1,
    Closing = 2,
    NotCloseable = 3,
}

impl SessionOptionValue {
    pub(crate) fn string(s: impl Into<String>) -> Self {
        SessionOptionValue {
            option_value: Some(OptionValue::StringValue(s.into())),
        }
    }

    pub(crate) fn bool(b: bool) -> Self {
        SessionOptionValue {
            option_value: Some(OptionValue::BoolValue(b)),
        }
    }

    /// The value as the text DataFusion's `SET` would take (`None`: unset).
    pub(crate) fn as_text(&self) -> Option<String> {
        Some(match self.option_value.as_ref()? {
            OptionValue::StringValue(s) => s.clone(),
            OptionValue::BoolValue(b) => b.to_string(),
            OptionValue::Int64Value(i) => i.to_string(),
            OptionValue::DoubleValue(d) => d.to_string(),
            OptionValue::StringListValue(l) => l.values.join(","),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn wire_format_matches_flight_proto() {
        // SessionOptionValue{int64_value = 5}: tag 3, wire type 1 (fixed64).
        let v = SessionOptionValue {
            option_value: Some(OptionValue::Int64Value(5)),
        };
        assert_eq!(v.encode_to_vec(), vec![0x19, 5, 0, 0, 0, 0, 0, 0, 0]);
        // CloseSessionResult{status = CLOSED}: tag 1 varint 1.
        let r = CloseSessionResult {
            status: CloseSessionStatus::Closed as i32,
        };
        assert_eq!(r.encode_to_vec(), vec![0x08, 1]);
        let mut req = SetSessionOptionsRequest::default();
        req.session_options
            .insert("schema".into(), SessionOptionValue::string("plant"));
        let back = SetSessionOptionsRequest::decode(req.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, req);
        assert_eq!(
            back.session_options["schema"].as_text().as_deref(),
            Some("plant")
        );
    }
}
