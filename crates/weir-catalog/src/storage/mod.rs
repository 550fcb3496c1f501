//! Where table files live: local files or an S3-compatible object store,
//! through one `object_store` client stack.
//!
//! iceberg-rust 0.10.1 takes its file IO from a pluggable [`StorageFactory`];
//! upstream's object_store-backed storage (`iceberg-storage-object_store`) is
//! not released for 0.10.1 and the released `iceberg-storage-opendal` would
//! bring a second HTTP/S3 client (OpenDAL + reqsign) configured separately.
//! So Weir implements the `Storage` trait over `object_store` here: the
//! Iceberg writers and readers, DataFusion's Parquet scan and maintenance's
//! listing all use the same [`ObjectStores`] — one S3 client per bucket, the
//! same options and credentials, one connection pool.
//!
//! Table metadata files (`*.metadata.json`, the files a catalog row points
//! at) are written conditionally (`If-None-Match: *`) where the store
//! supports it, so a committed metadata file is never replaced: every commit
//! attempt names a fresh one, so a refused write means a bug or a foreign
//! writer, never a lost race. Manifests and manifest lists are not: a retried
//! iceberg-rust transaction rewrites its uncommitted manifests under the same
//! names (`<commit-uuid>-m0.avro`).

mod file_io;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

pub use file_io::{ObjectStoreFactory, ObjectStoreStorage};

use crate::error::{CatalogError, Result};

/// Options of the S3-compatible store (`--s3-*`, `WEIR_S3_*`). Unset values
/// fall back to the standard `AWS_*` environment variables.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Options {
    /// Endpoint URL of an S3-compatible server (`http://127.0.0.1:8333`);
    /// unset = AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    /// Never serialized (nor printed: see the `Debug` impl).
    #[serde(skip_serializing, default)]
    pub secret_access_key: Option<String>,
    #[serde(skip_serializing, default)]
    pub session_token: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`, what MinIO, SeaweedFS and
    /// most S3-compatible servers want); false = virtual-hosted style.
    pub path_style: bool,
    /// Plain HTTP to the endpoint; default: when the endpoint is `http://`.
    pub allow_http: Option<bool>,
    /// Conditional writes (`If-None-Match`/`If-Match`); turn off for stores
    /// that reject them.
    pub conditional_writes: bool,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            path_style: true,
            allow_http: None,
            conditional_writes: true,
        }
    }
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("path_style", &self.path_style)
            .field("allow_http", &self.allow_http)
            .field("conditional_writes", &self.conditional_writes)
            .finish()
    }
}

impl S3Options {
    fn allow_http(&self) -> bool {
        self.allow_http.unwrap_or_else(|| {
            self.endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"))
        })
    }

    /// An S3 client for `bucket`: `AWS_*` variables first, then these options.
    pub fn build(&self, bucket: &str) -> object_store::Result<Arc<dyn ObjectStore>> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(!self.path_style)
            .with_allow_http(self.allow_http())
            .with_conditional_put(if self.conditional_writes {
                S3ConditionalPut::ETagMatch
            } else {
                S3ConditionalPut::Disabled
            });
        if let Some(v) = &self.endpoint {
            b = b.with_endpoint(v);
        }
        if let Some(v) = &self.region {
            b = b.with_region(v);
        }
        if let Some(v) = &self.access_key_id {
            b = b.with_access_key_id(v);
        }
        if let Some(v) = &self.secret_access_key {
            b = b.with_secret_access_key(v);
        }
        if let Some(v) = &self.session_token {
            b = b.with_token(v);
        }
        Ok(Arc::new(b.build()?))
    }
}

/// A location split into its store and the key inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLocation {
    /// `s3://bucket` or `file://`: the store's URL (DataFusion registers
    /// stores by it); `root + "/" + key` is the location again.
    pub root: String,
    /// The key inside the store (no leading `/`).
    pub key: String,
    /// The bucket, for S3.
    pub bucket: Option<String>,
}

impl StoreLocation {
    /// Splits `s3://bucket/key`, `s3a://…`, `file:///path` or `/path`.
    // TODO(issue 7): gs:// and az:// (object_store's gcp/azure features).
    pub fn parse(location: &str) -> Result<Self> {
        let bad = |reason: &str| CatalogError::StorageLocation {
            location: location.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = location
            .strip_prefix("s3://")
            .or_else(|| location.strip_prefix("s3a://"))
        {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket"));
            }
            return Ok(Self {
                root: format!("s3://{bucket}"),
                key: key.trim_matches('/').to_string(),
                bucket: Some(bucket.to_string()),
            });
        }
        let path = location
            .strip_prefix("file://")
            .or_else(|| location.strip_prefix("file:"))
            .unwrap_or(location);
        if location.contains("://") && !location.starts_with("file://") {
            return Err(bad("unsupported scheme (use file:// or s3://)"));
        }
        if !path.starts_with('/') {
            return Err(bad("not an absolute path"));
        }
        Ok(Self {
            root: "file://".to_string(),
            key: path.trim_start_matches('/').to_string(),
            bucket: None,
        })
    }

    /// The object-store path of the key.
    pub fn path(&self) -> Path {
        // Keys are written by Iceberg (and read back) as they are; `parse`
        // rejects a few forms (`a//b`, `.`), which `from` encodes instead.
        Path::parse(&self.key).unwrap_or_else(|_| Path::from(self.key.as_str()))
    }

    /// The full location of a key of the same store.
    pub fn url_of(&self, key: &str) -> String {
        format!("{}/{}", self.root, key)
    }
}

/// The object stores of a lakehouse, one per bucket (and one for local
/// files), shared by Iceberg file IO, DataFusion scans and maintenance.
#[derive(Debug, Default)]
pub struct ObjectStores {
    s3: S3Options,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl ObjectStores {
    pub fn new(s3: S3Options) -> Self {
        Self {
            s3,
            stores: Mutex::default(),
        }
    }

    pub fn s3_options(&self) -> &S3Options {
        &self.s3
    }

    /// The store holding `location` and the location's key in it.
    pub fn resolve(&self, location: &str) -> Result<(Arc<dyn ObjectStore>, StoreLocation)> {
        let loc = StoreLocation::parse(location)?;
        Ok((self.store(&loc)?, loc))
    }

    /// The store of a parsed location (built on first use).
    pub fn store(&self, loc: &StoreLocation) -> Result<Arc<dyn ObjectStore>> {
        let mut stores = self.stores.lock().expect("object store cache lock");
        if let Some(store) = stores.get(&loc.root) {
            return Ok(store.clone());
        }
        let store: Arc<dyn ObjectStore> = match &loc.bucket {
            Some(bucket) => self
                .s3
                .build(bucket)
                .map_err(|source| CatalogError::Storage {
                    location: loc.root.clone(),
                    source,
                })?,
            None => Arc::new(LocalFileSystem::new()),
        };
        stores.insert(loc.root.clone(), store.clone());
        Ok(store)
    }

    /// Whether whole-object writes to this location may be conditional.
    fn conditional(&self, loc: &StoreLocation) -> bool {
        loc.bucket.is_none() || self.s3.conditional_writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_split_into_store_and_key() {
        let s3 = StoreLocation::parse("s3://test/wh/silver/points/data/a.parquet").unwrap();
        assert_eq!(s3.root, "s3://test");
        assert_eq!(s3.bucket.as_deref(), Some("test"));
        assert_eq!(s3.key, "wh/silver/points/data/a.parquet");
        assert_eq!(
            s3.url_of(&s3.key),
            "s3://test/wh/silver/points/data/a.parquet"
        );
        assert_eq!(StoreLocation::parse("s3a://b/k").unwrap().root, "s3://b");
        assert_eq!(StoreLocation::parse("s3://b").unwrap().key, "");

        let local = StoreLocation::parse("file:///tmp/w/a.parquet").unwrap();
        assert_eq!(
            (local.root.as_str(), local.key.as_str()),
            ("file://", "tmp/w/a.parquet")
        );
        assert_eq!(local.url_of(&local.key), "file:///tmp/w/a.parquet");
        assert_eq!(StoreLocation::parse("/tmp/w").unwrap().key, "tmp/w");
        assert_eq!(StoreLocation::parse("file:/tmp/w").unwrap().key, "tmp/w");

        assert!(StoreLocation::parse("gs://b/k").is_err());
        assert!(StoreLocation::parse("s3:///k").is_err());
        assert!(StoreLocation::parse("relative/path").is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_and_serde() {
        let opts = S3Options {
            access_key_id: Some("AKID".into()),
            secret_access_key: Some("very-secret".into()),
            session_token: Some("tok-secret".into()),
            ..Default::default()
        };
        let debug = format!("{opts:?}");
        assert!(debug.contains("AKID") && debug.contains("<redacted>"));
        assert!(!debug.contains("very-secret") && !debug.contains("tok-secret"));
        let json = serde_json::to_string(&opts).unwrap();
        assert!(!json.contains("very-secret") && !json.contains("tok-secret"));
    }

    #[test]
    fn http_follows_the_endpoint_unless_set() {
        let mut opts = S3Options {
            endpoint: Some("http://127.0.0.1:8333".into()),
            ..Default::default()
        };
        assert!(opts.allow_http());
        opts.allow_http = Some(false);
        assert!(!opts.allow_http());
        opts.endpoint = Some("https://s3.example".into());
        opts.allow_http = None;
        assert!(!opts.allow_http());
    }
}
