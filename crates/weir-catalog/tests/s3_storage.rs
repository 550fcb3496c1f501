//! Iceberg file IO over the S3 object store against a real S3-compatible
//! server: SeaweedFS on free loopback ports, started (and installed when
//! missing) by the project's `tests/scripts/s3-server.sh`.

#![allow(clippy::unwrap_used)] // test helpers: a failure may panic

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use iceberg::io::FileIOBuilder;
use weir_catalog::storage::ObjectStoreFactory;
use weir_catalog::{ObjectStores, S3Options};

/// A SeaweedFS server, killed on drop.
struct Seaweed {
    dir: tempfile::TempDir,
    port: u16,
}

/// A free port whose +10000 gRPC twin is free too.
fn free_port(taken: &[u16]) -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port > 55_000 || taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl Seaweed {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut ports = Vec::new();
        for _ in 0..5 {
            let p = free_port(&ports);
            ports.push(p);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/scripts/s3-server.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg("start")
            .env("S3_DIR", dir.path())
            .env("S3_PORT", ports[0].to_string())
            .env("S3_FILER_PORT", ports[1].to_string())
            .env("S3_MASTER_PORT", ports[2].to_string())
            .env("S3_VOLUME_PORT", ports[3].to_string())
            .env("S3_ADMIN_PORT", ports[4].to_string())
            .output()
            .expect("running tests/scripts/s3-server.sh");
        assert!(
            out.status.success(),
            "s3-server.sh failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Seaweed {
            dir,
            port: ports[0],
        }
    }

    fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(format!("http://127.0.0.1:{}", self.port)),
            region: Some("us-east-1".into()),
            access_key_id: Some("testkey".into()),
            secret_access_key: Some("testsecret".into()),
            ..Default::default()
        }
    }
}

impl Drop for Seaweed {
    /// SIGTERM, then SIGKILL after 5 s: `weed mini` shutting down gracefully
    /// can outlive the test process (a server was left running after a CI
    /// run).
    fn drop(&mut self) {
        let pid: PathBuf = self.dir.path().join("weed.pid");
        let Ok(pid) = std::fs::read_to_string(pid) else {
            return;
        };
        let pid = pid.trim();
        let signal = |args: &[&str]| {
            Command::new("kill")
                .args(args)
                .arg(pid)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        signal(&[]);
        for _ in 0..50 {
            if !signal(&["-0"]) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        signal(&["-9"]);
    }
}

#[tokio::test]
async fn file_io_on_s3_writes_reads_refuses_overwrites_and_deletes() {
    let server = Seaweed::start();
    let stores = Arc::new(ObjectStores::new(server.options()));
    let io = FileIOBuilder::new(Arc::new(ObjectStoreFactory::new(stores.clone()))).build();
    let root = format!("s3://test/it-{}", uuid::Uuid::new_v4());

    // A whole-object write, then a conditional overwrite the server refuses.
    let meta = format!("{root}/metadata/00000-a.metadata.json");
    // (Manifests may be rewritten by a retried transaction.)
    let manifest = format!("{root}/metadata/c-m0.avro");
    for body in [&b"a"[..], &b"b"[..]] {
        let out = io.new_output(&manifest).unwrap();
        out.write(Bytes::from_static(body)).await.unwrap();
    }
    io.new_output(&meta)
        .unwrap()
        .write(Bytes::from_static(b"{\"v\":1}"))
        .await
        .unwrap();
    let again = io.new_output(&meta).unwrap();
    let refused = again.write(Bytes::from_static(b"{}")).await.unwrap_err();
    assert!(
        refused.to_string().contains("refusing to overwrite"),
        "{refused}"
    );
    assert_eq!(
        io.new_input(&meta).unwrap().read().await.unwrap(),
        "{\"v\":1}"
    );

    // A file over one part goes up as a multipart upload; ranged reads.
    let data = format!("{root}/data/a.parquet");
    let mut w = io.new_output(&data).unwrap().writer().await.unwrap();
    for i in 0..5u8 {
        w.write(Bytes::from(vec![i; 4 * 1024 * 1024]))
            .await
            .unwrap();
    }
    w.close().await.unwrap();
    let input = io.new_input(&data).unwrap();
    assert_eq!(input.metadata().await.unwrap().size, 20 * 1024 * 1024);
    let r = input.reader().await.unwrap();
    let at = 9 * 1024 * 1024;
    assert_eq!(r.read(at..at + 3).await.unwrap().as_ref(), &[2u8, 2, 2]);

    // The same client the DataFusion scans and maintenance use sees the files.
    let (store, loc) = stores.resolve(&root).unwrap();
    use futures::TryStreamExt;
    let listed: Vec<_> = store.list(Some(&loc.path())).try_collect().await.unwrap();
    assert_eq!(listed.len(), 3);

    io.delete_prefix(format!("{root}/data")).await.unwrap();
    assert!(!io.exists(&data).await.unwrap());
    assert!(io.exists(&meta).await.unwrap());
    io.delete(&meta).await.unwrap();
    assert!(!io.exists(&meta).await.unwrap());
}
