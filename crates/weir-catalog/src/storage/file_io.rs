//! Iceberg file IO ([`Storage`], [`StorageFactory`]) over [`ObjectStores`].

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};

use super::{ObjectStores, S3Options, StoreLocation};

/// Files up to this size are written with one PUT; larger ones as multipart
/// uploads in parts of this size.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one file uploaded at once.
const PART_CONCURRENCY: usize = 8;

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
