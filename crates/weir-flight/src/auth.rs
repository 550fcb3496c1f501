//! Authentication hook. Today every client is accepted: Basic credentials in
//! the handshake are decoded (any user/password) and answered with a random
//! Bearer token; later calls may carry that token or nothing. Enforcement
//! belongs in [`Authenticator::authorize`] / [`Authenticator::authenticate_basic`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tonic::Status;
use tonic::metadata::MetadataMap;

pub(crate) const AUTHORIZATION: &str = "authorization";

/// Who is calling, as far as we know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    Anonymous,
    User(String),
    Token,
}

#[derive(Debug, Default)]
pub(crate) struct Authenticator;

impl Authenticator {
    /// Handshake: decodes `authorization: Basic <base64(user:password)>` if
    /// present. Every user/password is accepted for now.
    pub fn authenticate_basic(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        let Some(value) = header(metadata)? else {
            return Ok(Caller::Anonymous);
        };
        let Some(encoded) = strip_scheme(value, "Basic") else {
            // A Bearer token (or another scheme) on the handshake: accepted.
            return Ok(Caller::Token);
        };
        let decoded = BASE64.decode(encoded.trim()).map_err(|_| {
            Status::invalid_argument("authorization: Basic credentials are not base64")
        })?;
        let decoded = String::from_utf8(decoded).map_err(|_| {
            Status::invalid_argument("authorization: Basic credentials are not UTF-8")
        })?;
        let user = decoded.split_once(':').map_or(decoded.as_str(), |(u, _)| u);
        Ok(Caller::User(user.to_string()))
    }

    /// A new random session token.
    pub fn issue_token(&self) -> String {
        format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        )
    }

    /// Every other call: accepts no header or any Bearer token for now.
    pub fn authorize(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        match header(metadata)? {
            None => Ok(Caller::Anonymous),
            Some(value) if strip_scheme(value, "Bearer").is_some() => Ok(Caller::Token),
            Some(_) => self.authenticate_basic(metadata),
        }
    }
}

fn header(metadata: &MetadataMap) -> Result<Option<&str>, Status> {
    match metadata.get(AUTHORIZATION) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| Status::invalid_argument("authorization header is not ASCII")),
    }
}

/// `"<scheme> <rest>"` → `rest` (scheme compared case-insensitively).
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.trim().split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert(AUTHORIZATION, value.parse().unwrap());
        m
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let auth = Authenticator;
        let value = format!("Basic {}", BASE64.encode("alice:secret"));
        assert_eq!(
            auth.authenticate_basic(&metadata(&value)).unwrap(),
            Caller::User("alice".into())
        );
        assert_eq!(
            auth.authenticate_basic(&MetadataMap::new()).unwrap(),
            Caller::Anonymous
        );
        assert!(auth.authenticate_basic(&metadata("Basic !!!")).is_err());
    }

    #[test]
    fn bearer_or_nothing_is_accepted() {
        let auth = Authenticator;
        assert_eq!(
            auth.authorize(&metadata("Bearer abc")).unwrap(),
            Caller::Token
        );
        assert_eq!(
            auth.authorize(&MetadataMap::new()).unwrap(),
            Caller::Anonymous
        );
        let t1 = auth.issue_token();
        assert_eq!(t1.len(), 64);
        assert_ne!(t1, auth.issue_token());
    }
}
