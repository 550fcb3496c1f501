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

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, Result};

/// Files up to this size are written with one PUT; larger ones as multipart
/// uploads in parts of this size.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one file uploaded at once.
const PART_CONCURRENCY: usize = 8;

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

/// The Iceberg [`StorageFactory`] of a lakehouse: every `FileIO` the catalog
/// builds reads and writes through the lakehouse's [`ObjectStores`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectStoreFactory {
    s3: S3Options,
    #[serde(skip)]
    stores: Arc<OnceLock<Arc<ObjectStores>>>,
}

impl ObjectStoreFactory {
    pub fn new(stores: Arc<ObjectStores>) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(stores.clone());
        Self {
            s3: stores.s3_options().clone(),
            stores: Arc::new(cell),
        }
    }

    fn stores(&self) -> Arc<ObjectStores> {
        // A deserialized factory (never done by Weir itself) builds its own.
        self.stores
            .get_or_init(|| Arc::new(ObjectStores::new(self.s3.clone())))
            .clone()
    }
}

#[typetag::serde(name = "WeirObjectStoreFactory")]
impl StorageFactory for ObjectStoreFactory {
    fn build(&self, _config: &StorageConfig) -> iceberg::Result<Arc<dyn Storage>> {
        Ok(Arc::new(ObjectStoreStorage {
            s3: self.s3.clone(),
            stores: Arc::new(OnceLock::from(self.stores())),
        }))
    }
}

/// Iceberg [`Storage`] over [`ObjectStores`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectStoreStorage {
    s3: S3Options,
    #[serde(skip)]
    stores: Arc<OnceLock<Arc<ObjectStores>>>,
}

fn ice(location: &str, e: impl std::fmt::Display) -> iceberg::Error {
    iceberg::Error::new(
        iceberg::ErrorKind::Unexpected,
        format!("object store {location}: {e}"),
    )
}

fn os_err(location: &str, e: object_store::Error) -> iceberg::Error {
    let retryable = matches!(e, object_store::Error::Generic { .. });
    iceberg::Error::new(
        iceberg::ErrorKind::Unexpected,
        format!("object store {location}: {e}"),
    )
    .with_retryable(retryable)
}

impl ObjectStoreStorage {
    fn stores(&self) -> Arc<ObjectStores> {
        self.stores
            .get_or_init(|| Arc::new(ObjectStores::new(self.s3.clone())))
            .clone()
    }

    fn target(&self, location: &str) -> iceberg::Result<(Arc<dyn ObjectStore>, StoreLocation)> {
        self.stores()
            .resolve(location)
            .map_err(|e| ice(location, e))
    }
}

#[typetag::serde(name = "WeirObjectStoreStorage")]
#[async_trait]
impl Storage for ObjectStoreStorage {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        let (store, loc) = self.target(path)?;
        match store.head(&loc.path()).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(os_err(path, e)),
        }
    }

    async fn metadata(&self, path: &str) -> iceberg::Result<FileMetadata> {
        let (store, loc) = self.target(path)?;
        let meta = store.head(&loc.path()).await.map_err(|e| os_err(path, e))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> iceberg::Result<Bytes> {
        let (store, loc) = self.target(path)?;
        let got = store.get(&loc.path()).await.map_err(|e| os_err(path, e))?;
        got.bytes().await.map_err(|e| os_err(path, e))
    }

    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn FileRead>> {
        let (store, loc) = self.target(path)?;
        Ok(Box::new(ObjectReader {
            store,
            path: loc.path(),
            location: path.to_string(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> iceberg::Result<()> {
        let (store, loc) = self.target(path)?;
        let conditional = self.stores().conditional(&loc) && is_metadata_file(path);
        put_whole(&store, &loc.path(), path, bs, conditional).await
    }

    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn FileWrite>> {
        let (store, loc) = self.target(path)?;
        let conditional = self.stores().conditional(&loc) && is_metadata_file(path);
        Ok(Box::new(ObjectWriter {
            store,
            path: loc.path(),
            location: path.to_string(),
            conditional,
            buffer: BytesMut::new(),
            upload: None,
            closed: false,
        }))
    }

    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        let (store, loc) = self.target(path)?;
        match store.delete(&loc.path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(os_err(path, e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        let (store, loc) = self.target(path)?;
        let prefix = loc.path();
        let listed = store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
        store
            .delete_stream(listed)
            .try_for_each(|_| async { Ok(()) })
            .await
            .map_err(|e| os_err(path, e))
    }

    async fn delete_stream(&self, paths: BoxStream<'static, String>) -> iceberg::Result<()> {
        let mut chunks = paths.chunks(256);
        while let Some(chunk) = chunks.next().await {
            // One batch per store (bucket), deleted with its bulk API.
            let mut batches: HashMap<String, (Arc<dyn ObjectStore>, Vec<Path>)> = HashMap::new();
            for path in chunk {
                let (store, loc) = self.target(&path)?;
                batches
                    .entry(loc.root.clone())
                    .or_insert_with(|| (store, Vec::new()))
                    .1
                    .push(loc.path());
            }
            for (root, (store, paths)) in batches {
                let stream = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
                store
                    .delete_stream(stream)
                    .try_for_each(|_| async { Ok(()) })
                    .await
                    .or_else(|e| match e {
                        object_store::Error::NotFound { .. } => Ok(()),
                        e => Err(os_err(&root, e)),
                    })?;
            }
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> iceberg::Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> iceberg::Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

/// A table metadata file: written once under a fresh name per commit attempt.
fn is_metadata_file(path: &str) -> bool {
    path.ends_with(".metadata.json")
}

async fn put_whole(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    location: &str,
    bs: Bytes,
    conditional: bool,
) -> iceberg::Result<()> {
    let opts = PutOptions {
        mode: if conditional {
            PutMode::Create
        } else {
            PutMode::Overwrite
        },
        ..Default::default()
    };
    match store.put_opts(path, PutPayload::from_bytes(bs), opts).await {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => Err(iceberg::Error::new(
            iceberg::ErrorKind::PreconditionFailed,
            format!("refusing to overwrite {location}: the file exists"),
        )),
        Err(e) => Err(os_err(location, e)),
    }
}

struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    location: String,
}

#[async_trait]
impl FileRead for ObjectReader {
    async fn read(&self, range: Range<u64>) -> iceberg::Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        self.store
            .get_range(&self.path, range)
            .await
            .map_err(|e| os_err(&self.location, e))
    }
}

/// Buffers up to one part; a file that stays smaller is one (conditional)
/// PUT, a larger one becomes a multipart upload (`WriteMultipart` keeps
/// `PART_CONCURRENCY` parts in flight).
struct ObjectWriter {
    store: Arc<dyn ObjectStore>,
    path: Path,
    location: String,
    conditional: bool,
    buffer: BytesMut,
    upload: Option<WriteMultipart>,
    closed: bool,
}

#[async_trait]
impl FileWrite for ObjectWriter {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        if self.closed {
            return Err(ice(&self.location, "write after close"));
        }
        if let Some(upload) = self.upload.as_mut() {
            upload
                .wait_for_capacity(PART_CONCURRENCY)
                .await
                .map_err(|e| os_err(&self.location, e))?;
            upload.put(bs);
            return Ok(());
        }
        self.buffer.extend_from_slice(&bs);
        if self.buffer.len() >= PART_SIZE {
            let multipart = self
                .store
                .put_multipart(&self.path)
                .await
                .map_err(|e| os_err(&self.location, e))?;
            let mut upload = WriteMultipart::new_with_chunk_size(multipart, PART_SIZE);
            upload.put(self.buffer.split().freeze());
            self.upload = Some(upload);
        }
        Ok(())
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        if self.closed {
            return Err(ice(&self.location, "file closed twice"));
        }
        self.closed = true;
        match self.upload.take() {
            Some(upload) => {
                upload
                    .finish()
                    .await
                    .map_err(|e| os_err(&self.location, e))?;
                Ok(())
            }
            None => {
                let bytes = self.buffer.split().freeze();
                put_whole(
                    &self.store,
                    &self.path,
                    &self.location,
                    bytes,
                    self.conditional,
                )
                .await
            }
        }
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

    #[tokio::test]
    async fn iceberg_file_io_round_trips_on_local_files() {
        let dir = tempfile::tempdir().unwrap();
        let stores = Arc::new(ObjectStores::new(S3Options::default()));
        let io = iceberg::io::FileIOBuilder::new(Arc::new(ObjectStoreFactory::new(stores))).build();
        let small = format!("file://{}/m/v1.metadata.json", dir.path().display());
        let out = io.new_output(&small).unwrap();
        out.write(Bytes::from_static(b"{}")).await.unwrap();
        // A metadata file is never replaced; a manifest may be rewritten (a
        // retried transaction reuses its names).
        let manifest = format!("file://{}/m/c-m0.avro", dir.path().display());
        for body in [&b"a"[..], &b"b"[..]] {
            let out = io.new_output(&manifest).unwrap();
            out.write(Bytes::from_static(body)).await.unwrap();
        }
        assert_eq!(io.new_input(&manifest).unwrap().read().await.unwrap(), "b");
        let again = io.new_output(&small).unwrap();
        let refused = again.write(Bytes::from_static(b"[]")).await.unwrap_err();
        assert!(refused.to_string().contains("refusing to overwrite"));
        assert_eq!(io.new_input(&small).unwrap().read().await.unwrap(), "{}");

        // A file larger than one part goes up as a multipart upload.
        let big = format!("file://{}/d/a.parquet", dir.path().display());
        let mut w = io.new_output(&big).unwrap().writer().await.unwrap();
        let chunk = Bytes::from(vec![7u8; 3 * 1024 * 1024]);
        for _ in 0..4 {
            w.write(chunk.clone()).await.unwrap();
        }
        w.close().await.unwrap();
        let input = io.new_input(&big).unwrap();
        assert_eq!(input.metadata().await.unwrap().size, 12 * 1024 * 1024);
        let r = input.reader().await.unwrap();
        assert_eq!(r.read(5..9).await.unwrap().as_ref(), &[7u8; 4]);

        io.delete_prefix(format!("file://{}/d", dir.path().display()))
            .await
            .unwrap();
        assert!(!io.exists(&big).await.unwrap());
        assert!(io.exists(&small).await.unwrap());
    }
}
