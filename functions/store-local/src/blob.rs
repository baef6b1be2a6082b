//! The blob store port on the filesystem. A key maps to a path under the
//! root. A put writes a temporary file in `.tmp/`, fsyncs it, renames it into
//! place and fsyncs the directory, so a reader (or a restart after a crash)
//! sees the whole object or nothing. A directory the put creates is
//! made durable in its parent first.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use stratus_core::ids::{BlobKey, random_hex};
use stratus_core::ports::{BlobMeta, BlobStore, StoreError, StoreResult};

use crate::small::{DB_FILE, SMALL_MAX, SmallObjects};

const TMP: &str = ".tmp";
/// Temporary files older than this belong to a writer that crashed.
const STALE_TMP: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
    dirs: Arc<DurableDirs>,
    /// Objects up to [`SMALL_MAX`] bytes; bigger ones are files.
    small: SmallObjects,
}

/// Directories whose entry in their parent is known durable; past
/// [`MAX_DURABLE_DIRS`] the set starts again (keys start with a time
/// prefix, so old directories go cold).
#[derive(Debug, Default)]
struct DurableDirs(Mutex<HashSet<PathBuf>>);

const MAX_DURABLE_DIRS: usize = 10_000;

impl DurableDirs {
    fn lock(&self) -> MutexGuard<'_, HashSet<PathBuf>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Disk trouble (a full disk, I/O errors, permissions an operator can fix)
/// is worth retrying; only a request that can never succeed is permanent.
fn io_err(op: &'static str, e: io::Error) -> StoreError {
    match e.kind() {
        ErrorKind::InvalidInput | ErrorKind::InvalidFilename | ErrorKind::FileTooLarge => {
            StoreError::permanent(op, e)
        }
        _ => StoreError::retryable(op, e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl FsBlobStore {
    pub fn open(root: &Path) -> StoreResult<Self> {
        let op = "open blob store";
        fs::create_dir_all(root.join(TMP))
            .map_err(|e| StoreError::permanent(op, format!("{}: {e}", root.display())))?;
        let store = FsBlobStore {
            root: root.to_path_buf(),
            dirs: Arc::default(),
            small: SmallObjects::open(&root.join(DB_FILE))?,
        };
        store.remove_stale_tmp();
        Ok(store)
    }

    fn path(&self, key: &BlobKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn remove_stale_tmp(&self) {
        let Ok(entries) = fs::read_dir(self.root.join(TMP)) else {
            return;
        };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STALE_TMP);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn put_blocking(&self, key: &BlobKey, body: &[u8]) -> io::Result<()> {
        let tmp = self.root.join(TMP).join(random_hex(16));
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            file.write_all(body)?;
            file.sync_all()?;
            drop(file);
            let target = self.path(key);
            let parent = target.parent().unwrap_or(&self.root);
            self.create_dirs(parent)?;
            fs::rename(&tmp, &target)?;
            sync_dir(parent)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Creates `dir` and any missing parents under the root, and makes
    /// each durable in its parent before anything is renamed into it: also
    /// a directory another put has just created, or one from before a
    /// restart, the first time this process uses it.
    fn create_dirs(&self, dir: &Path) -> io::Result<()> {
        if dir == self.root || self.dirs.lock().contains(dir) {
            return Ok(());
        }
        let parent = dir.parent().unwrap_or(&self.root);
        self.create_dirs(parent)?;
        match fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        sync_dir(parent)?;
        let mut durable = self.dirs.lock();
        if durable.len() >= MAX_DURABLE_DIRS {
            durable.clear();
        }
        durable.insert(dir.to_path_buf());
        Ok(())
    }

    fn list_blocking(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> io::Result<Vec<BlobMeta>> {
        // Walk only the deepest directory the prefix names in full.
        let base = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let mut found = Vec::new();
        let mut stack = vec![self.root.join(base)];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let Some(rel) = rel.to_str() else { continue };
                if rel == TMP {
                    continue;
                }
                let file_type = entry.file_type()?;
                if file_type.is_dir() {
                    let with_slash = format!("{rel}/");
                    if with_slash.starts_with(prefix) || prefix.starts_with(&with_slash) {
                        stack.push(path);
                    }
                } else if rel.starts_with(prefix)
                    && start_after.is_none_or(|after| rel > after)
                    && let Ok(key) = BlobKey::parse(rel)
                {
                    found.push(BlobMeta {
                        key,
                        size: entry.metadata()?.len(),
                    });
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        found.truncate(limit);
        Ok(found)
    }
}

/// Reads a blob (or `range` of it) on the calling thread when that cannot
/// wait for the disk: the path resolves from the kernel's lookup cache
/// (`openat2` with `RESOLVE_CACHED`) and every byte is in the page cache
/// (`preadv2` with `RWF_NOWAIT`). That is the usual case for mail just
/// delivered or read, and it saves the hop to a blocking thread, which
/// costs more than the read. `None` means the read would wait (or the
/// kernel lacks these calls): read on a blocking thread instead.
fn read_cached(path: &Path, range: Option<Range<u64>>) -> Option<io::Result<Option<Bytes>>> {
    use rustix::fs::{CWD, Mode, OFlags, ResolveFlags, openat2};
    use rustix::io::{Errno, ReadWriteFlags, preadv2};

    let flags = OFlags::RDONLY | OFlags::CLOEXEC;
    let fd = match openat2(CWD, path, flags, Mode::empty(), ResolveFlags::CACHED) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Some(Ok(None)),
        Err(_) => return None,
    };
    let size = rustix::fs::fstat(&fd).ok()?.st_size as u64;
    let Range { start, end } = range.unwrap_or(0..size);
    let end = end.min(size);
    if start >= end {
        return Some(Ok(Some(Bytes::new())));
    }
    let mut buf = vec![0u8; (end - start) as usize];
    let mut done = 0;
    while done < buf.len() {
        let mut slice = [io::IoSliceMut::new(&mut buf[done..])];
        match preadv2(&fd, &mut slice, start + done as u64, ReadWriteFlags::NOWAIT) {
            Ok(n) if n > 0 => done += n,
            // Not (all) cached, unsupported, or the file shrank: let the
            // blocking read decide.
            _ => return None,
        }
    }
    Some(Ok(Some(Bytes::from(buf))))
}

async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::retryable(op, format!("worker thread failed: {e}")))?
        .map_err(|e| io_err(op, e))
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, key: &BlobKey, body: Bytes) -> StoreResult<()> {
        if body.len() <= SMALL_MAX {
            // A file left by an earlier, bigger version is shadowed (reads
            // look here first) until the key is deleted.
            return self.small.put(key, body).await;
        }
        let (this, k) = (self.clone(), key.clone());
        blocking("blob put", move || this.put_blocking(&k, &body)).await?;
        // An earlier, smaller version would shadow the file.
        if self.small.head(key).await?.is_some() {
            self.small.delete(key).await?;
        }
        Ok(())
    }

    async fn get(&self, key: &BlobKey, range: Option<Range<u64>>) -> StoreResult<Option<Bytes>> {
        if let Some(body) = self
            .small
            .get(key, range.as_ref().map(|r| (r.start, r.end)))
            .await?
        {
            return Ok(Some(body));
        }
        let path = self.path(key);
        if let Some(read) = read_cached(&path, range.clone()) {
            return read.map_err(|e| io_err("blob get", e));
        }
        blocking("blob get", move || {
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let size = file.metadata()?.len();
            let Range { start, end } = range.unwrap_or(0..size);
            let end = end.min(size);
            if start >= end {
                return Ok(Some(Bytes::new()));
            }
            file.seek(SeekFrom::Start(start))?;
            let mut buf = vec![0u8; (end - start) as usize];
            file.read_exact(&mut buf)?;
            Ok(Some(Bytes::from(buf)))
        })
        .await
    }

    async fn head(&self, key: &BlobKey) -> StoreResult<Option<u64>> {
        if let Some(size) = self.small.head(key).await? {
            return Ok(Some(size));
        }
        let path = self.path(key);
        blocking("blob head", move || match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn delete(&self, key: &BlobKey) -> StoreResult<()> {
        self.small.delete(key).await?;
        let path = self.path(key);
        blocking("blob delete", move || match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&BlobKey>,
        limit: usize,
    ) -> StoreResult<Vec<BlobMeta>> {
        let (this, prefix, after) = (
            self.clone(),
            prefix.to_string(),
            start_after.map(|k| k.as_str().to_string()),
        );
        let small = self.small.list(&prefix, after.as_deref(), limit).await?;
        let files = blocking("blob list", move || {
            this.list_blocking(&prefix, after.as_deref(), limit)
        })
        .await?;
        // Both in key order: merge, a key in both once (the table's).
        let mut out: Vec<BlobMeta> = small.into_iter().chain(files).collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.dedup_by(|later, first| later.key == first.key);
        out.truncate(limit);
        Ok(out)
    }

    async fn reclaim(&self) -> StoreResult<()> {
        self.small.reclaim().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of the small-object database and its WAL.
    fn db_bytes(root: &Path) -> u64 {
        ["", "-wal"]
            .iter()
            .filter_map(|suffix| std::fs::metadata(root.join(format!("{DB_FILE}{suffix}"))).ok())
            .map(|m| m.len())
            .sum()
    }

    #[tokio::test]
    async fn reclaim_gives_deleted_objects_space_back() {
        let root = std::env::temp_dir().join(format!("stratus-blob-{}", random_hex(8)));
        let store = FsBlobStore::open(&root).unwrap();
        let keys: Vec<BlobKey> = (0..300)
            .map(|i| BlobKey::parse(&format!("msg/ab/{i}")).unwrap())
            .collect();
        for key in &keys {
            store
                .put(key, Bytes::from(vec![7u8; 10_000]))
                .await
                .unwrap();
        }
        store.reclaim().await.unwrap();
        let full = db_bytes(&root);
        assert!(full > 3_000_000, "{full}");
        for key in &keys[..290] {
            store.delete(key).await.unwrap();
        }
        store.reclaim().await.unwrap();
        let after = db_bytes(&root);
        assert!(after < full / 5, "{full} bytes before, {after} after");
        assert_eq!(store.list("msg/", None, 1000).await.unwrap().len(), 10);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[tokio::test]
    async fn a_cached_read_gives_what_was_written() {
        let root = std::env::temp_dir().join(format!("stratus-blob-{}", random_hex(8)));
        let store = FsBlobStore::open(&root).unwrap();
        let key = BlobKey::parse("msg/ab/cached").unwrap();
        // Bigger than SMALL_MAX, so it is a file.
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        store.put(&key, Bytes::from(body.clone())).await.unwrap();
        // Just written, so its path and pages are cached: served inline.
        let path = store.path(&key);
        let whole = read_cached(&path, None).expect("cached").unwrap();
        assert_eq!(whole.as_deref(), Some(&body[..]));
        let part = read_cached(&path, Some(99_990..200_000))
            .expect("cached")
            .unwrap();
        assert_eq!(part.as_deref(), Some(&body[99_990..]));
        // The directories the put created are remembered as durable.
        assert!(store.dirs.lock().contains(&root.join("msg/ab")));
        assert!(store.dirs.lock().contains(&root.join("msg")));
        let empty = read_cached(&path, Some(5..5)).expect("cached").unwrap();
        assert_eq!(empty.as_deref(), Some(&[][..]));
        // The port's get agrees, for present and missing blobs.
        assert_eq!(
            store.get(&key, Some(10..20)).await.unwrap().as_deref(),
            Some(&body[10..20])
        );
        let missing = BlobKey::parse("msg/ab/missing").unwrap();
        assert_eq!(store.get(&missing, None).await.unwrap(), None);
        std::fs::remove_dir_all(root).unwrap();
    }
}

#[cfg(test)]
mod mixed {
    use super::*;

    #[tokio::test]
    async fn small_objects_and_files_behave_as_one_store() {
        let root = std::env::temp_dir().join(format!("stratus-blob-{}", random_hex(8)));
        let store = FsBlobStore::open(&root).unwrap();
        let key = |k: &str| BlobKey::parse(k).unwrap();
        let big = Bytes::from(vec![b'b'; SMALL_MAX + 1]);
        store
            .put(&key("m/a"), Bytes::from_static(b"small a"))
            .await
            .unwrap();
        store.put(&key("m/b"), big.clone()).await.unwrap();
        store
            .put(&key("m/c"), Bytes::from_static(b"small c"))
            .await
            .unwrap();
        store
            .put(&key("n/d"), Bytes::from_static(b"other"))
            .await
            .unwrap();
        // Where each one lives.
        assert!(
            !store.path(&key("m/a")).exists(),
            "a small object is not a file"
        );
        assert!(store.path(&key("m/b")).exists(), "a big object is a file");

        let listed = |v: Vec<BlobMeta>| {
            v.into_iter()
                .map(|m| (m.key.as_str().to_string(), m.size))
                .collect::<Vec<_>>()
        };
        let all = listed(store.list("m/", None, 10).await.unwrap());
        assert_eq!(
            all,
            [
                ("m/a".to_string(), 7),
                ("m/b".to_string(), big.len() as u64),
                ("m/c".to_string(), 7)
            ]
        );
        let page = listed(store.list("m/", Some(&key("m/a")), 1).await.unwrap());
        assert_eq!(page, [("m/b".to_string(), big.len() as u64)]);

        // Ranges over a small object follow the port's clamping.
        assert_eq!(
            store
                .get(&key("m/a"), Some(2..100))
                .await
                .unwrap()
                .as_deref(),
            Some(&b"all a"[..])
        );
        assert_eq!(
            store.get(&key("m/a"), Some(7..9)).await.unwrap().as_deref(),
            Some(&b""[..])
        );
        assert_eq!(store.head(&key("m/c")).await.unwrap(), Some(7));

        // A key that grows past the limit moves to a file, and back.
        store.put(&key("m/a"), big.clone()).await.unwrap();
        assert_eq!(
            store.get(&key("m/a"), None).await.unwrap(),
            Some(big.clone())
        );
        assert_eq!(
            store.list("m/", None, 10).await.unwrap().len(),
            3,
            "listed once"
        );
        store
            .put(&key("m/a"), Bytes::from_static(b"again"))
            .await
            .unwrap();
        assert_eq!(
            store.get(&key("m/a"), None).await.unwrap().as_deref(),
            Some(&b"again"[..])
        );

        // Delete removes both forms.
        store.delete(&key("m/a")).await.unwrap();
        assert_eq!(store.get(&key("m/a"), None).await.unwrap(), None);
        assert_eq!(store.head(&key("m/a")).await.unwrap(), None);
        store.delete(&key("m/b")).await.unwrap();
        assert_eq!(
            listed(store.list("", None, 10).await.unwrap()),
            [("m/c".to_string(), 7), ("n/d".to_string(), 5)]
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
