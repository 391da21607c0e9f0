//! Objects in batches: everything the store (and the worktrees that share its object database)
//! writes between two ref updates is held in memory and written to disk as **one pack**, just
//! before the ref update that makes it reachable.
//!
//! Why: libgit2 writes each loose object as a new file, and on a real disk a new file (a new
//! inode) costs far more than the bytes in it: about 0.4 ms each on the ext4 of the machine the
//! benchmarks ran on, against 10 µs to rewrite an existing file. An iteration writes some twenty
//! objects (the snapshot's blobs and trees, the commit, two notes with their trees and commits,
//! the checkpoints); as three packs they are six files.
//!
//! How: [`ObjectBatch`] is an object-database backend (libgit2's `git_odb_backend`, written
//! here in Rust) with the highest priority, so that every object written through the database
//! lands in its map, and every read looks there first. [`ObjectBatch::flush`] writes the map as
//! a version-2 pack without deltas (each object zlib-compressed on its own) and its version-2
//! index, then tells the database to look for new packs and empties the map. libgit2's own
//! in-memory backend (`mempack`) cannot serve: it cannot list its objects, and its dump runs a
//! delta search that costs more than the files it saves.
//!
//! Crash safety is unchanged: the store flushes before every ref update, so objects are on
//! disk, synced, before any ref points at them. A kill before the flush loses only objects
//! nothing refers to.
//!
//! Small packs do not pile up: after [`MERGE_AFTER`] flushes and when a run finishes, the store
//! folds the packs it wrote into one ([`merge_packs`]): their entries are copied as they are
//! (no inflating, no hashing of contents), the merged pack is synced before any small one is
//! deleted, so a concurrent reader always finds every object. Deltas are left to git's own
//! `gc`.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Mutex;

use git2::{Oid, Repository};
use libgit2_sys as raw;
use sha1::{Digest, Sha1};

/// A store merges the packs it wrote once there are this many.
pub const MERGE_AFTER: usize = 32;

/// [`tidy`] merges the small packs in mmm's format once there are more than this many.
const TIDY_AFTER: usize = 8;

/// Packs at least this large are left to git's own maintenance.
const SMALL_PACK: u64 = 16 << 20;

/// Pack entry types (the 3 bits after the continuation bit of an entry's first byte).
const OBJ_COMMIT: u8 = 1;
const OBJ_TREE: u8 = 2;
const OBJ_BLOB: u8 = 3;
const OBJ_TAG: u8 = 4;

/// One object held in memory.
struct Held {
    kind: raw::git_object_t,
    data: Box<[u8]>,
}

/// The backend as libgit2 sees it: its vtable first, then our state.
#[repr(C)]
struct Backend {
    parent: raw::git_odb_backend,
    objects: Mutex<HashMap<Oid, Held>>,
    /// Whether packs are synced to the disk before they are renamed into place.
    sync: bool,
}

impl Backend {
    fn objects(&self) -> std::sync::MutexGuard<'_, HashMap<Oid, Held>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the objects held as one pack (and its index) into `repo`'s `objects/pack/`,
    /// synced, then forgets them. `None` when nothing was pending; on an error the objects stay.
    fn flush(&self, repo: &Repository) -> Result<Option<PathBuf>, git2::Error> {
        // The map is not locked while libgit2 runs (its callbacks lock it too).
        let (pack, ids) = {
            let objects = self.objects();
            if objects.is_empty() {
                return Ok(None);
            }
            let mut ids: Vec<Oid> = objects.keys().copied().collect();
            ids.sort();
            let mut pack = PackWriter::new(ids.len());
            for id in &ids {
                let held = &objects[id];
                pack.add(*id, pack_type(held.kind)?, &held.data)?;
            }
            (pack, ids)
        };
        let path = pack.finish(&pack_dir(repo), self.sync)?;
        // The pack backend lists packs when asked; ask before the objects leave memory.
        repo.odb()?.refresh()?;
        let mut objects = self.objects();
        for id in ids {
            objects.remove(&id);
        }
        Ok(Some(path))
    }
}

/// The addresses of the live backends made by [`ObjectBatch::attach`].
static OURS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn ours() -> std::sync::MutexGuard<'static, Vec<usize>> {
    OURS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes to disk the objects held in memory by the batch attached to `repo`'s object
/// database, if it has one (a worktree given the store's database with `set_odb` shares its
/// batch): what is about to name an object in a file (a worktree's index) calls this first,
/// so that nothing on disk names an object that is not on disk. The pack joins the small
/// packs that `tidy` merges.
pub(crate) fn flush_shared(repo: &Repository) -> Result<Option<PathBuf>, git2::Error> {
    let odb = repo.odb()?;
    let raw_odb = git2::Binding::raw(&odb);
    // SAFETY: `raw_odb` is live while `odb` is; each backend pointer libgit2 hands out is owned
    // by the database, and ours is recognised by its address (in `ours` from `attach` until
    // `free_cb`), so that the cast to `Backend` (whose first field is the vtable) is valid.
    unsafe {
        for i in 0..raw::git_odb_num_backends(raw_odb) {
            let mut b: *mut raw::git_odb_backend = std::ptr::null_mut();
            if raw::git_odb_get_backend(&mut b, raw_odb, i) != 0 || b.is_null() {
                continue;
            }
            if ours().contains(&(b as usize)) {
                let backend = &*b.cast::<Backend>();
                return backend.flush(repo);
            }
        }
    }
    Ok(None)
}

/// The in-memory backend attached to one repository's object database.
pub(crate) struct ObjectBatch {
    /// A reference to the object database the backend belongs to (released on drop), so that
    /// the backend lives as long as this batch whatever happens to the repository.
    odb: NonNull<raw::git_odb>,
    /// Owned by the object database, which frees it (through `free_cb`) when it is freed.
    backend: NonNull<Backend>,
}

impl Drop for ObjectBatch {
    fn drop(&mut self) {
        // SAFETY: `odb` is the reference `attach` took with `git_repository_odb`; released once.
        unsafe { raw::git_odb_free(self.odb.as_ptr()) }
    }
}

// SAFETY: the batch holds a reference to the object database that owns the backend; libgit2's
// databases are reference-counted atomically and safe to use from any thread, and the
// backend's map is behind a mutex.
unsafe impl Send for ObjectBatch {}

impl ObjectBatch {
    /// Puts an in-memory backend in front of `repo`'s object database: from now on, objects
    /// written through `repo` (or through any repository given the same database) stay in
    /// memory until [`ObjectBatch::flush`].
    pub(crate) fn attach(repo: &Repository, sync: bool) -> Result<ObjectBatch, git2::Error> {
        let mut odb_raw: *mut raw::git_odb = std::ptr::null_mut();
        // SAFETY: `git_repository_odb` hands out a new reference to the repository's database,
        // which this batch releases in `Drop`.
        check(unsafe { raw::git_repository_odb(&mut odb_raw, git2::Binding::raw(repo)) })?;
        let odb =
            NonNull::new(odb_raw).ok_or_else(|| git2::Error::from_str("no object database"))?;
        // From here on `batch` owns the reference: an early return releases it.
        let mut batch = ObjectBatch {
            odb,
            backend: NonNull::dangling(),
        };
        // SAFETY: a zeroed vtable is valid (every callback is an `Option` of a function
        // pointer, the rest are integers and a null pointer), and `git_odb_init_backend` fills
        // in the version as libgit2 expects.
        let mut parent: raw::git_odb_backend = unsafe { std::mem::zeroed() };
        check(unsafe { raw::git_odb_init_backend(&mut parent, raw::GIT_ODB_BACKEND_VERSION) })?;
        parent.read = Some(read_cb);
        parent.read_header = Some(read_header_cb);
        parent.write = Some(write_cb);
        parent.exists = Some(exists_cb);
        parent.free = Some(free_cb);
        let backend = Box::into_raw(Box::new(Backend {
            parent,
            objects: Mutex::new(HashMap::new()),
            sync,
        }));
        // SAFETY: `backend` points at a live `Backend` whose first field is the vtable, so it
        // is also a valid `git_odb_backend` pointer. On success the database owns it and frees
        // it through `free_cb`; on failure we still own it and free it here. Priority 1000
        // puts it before the loose (1) and pack (2) backends, for writes and for reads.
        let code = unsafe {
            raw::git_odb_add_backend(
                batch.odb.as_ptr(),
                backend.cast::<raw::git_odb_backend>(),
                1000 as c_int,
            )
        };
        if let Err(e) = check(code) {
            drop(unsafe { Box::from_raw(backend) });
            return Err(e);
        }
        ours().push(backend as usize);
        batch.backend = NonNull::new(backend).ok_or_else(|| git2::Error::from_str("no backend"))?;
        Ok(batch)
    }

    #[cfg(test)]
    fn objects(&self) -> std::sync::MutexGuard<'_, HashMap<Oid, Held>> {
        // SAFETY: see the field's comment: the backend lives as long as this batch.
        unsafe { self.backend.as_ref() }.objects()
    }

    /// How many objects wait in memory.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.objects().len()
    }

    /// Writes the objects held in memory as one pack (and its index) into the repository's
    /// `objects/pack/`, synced, then empties the memory. Returns the `.pack` path, or `None`
    /// when nothing was pending. On an error the objects stay in memory.
    pub(crate) fn flush(&self, repo: &Repository) -> Result<Option<PathBuf>, git2::Error> {
        // SAFETY: see the field's comment: the backend lives as long as this batch.
        unsafe { self.backend.as_ref() }.flush(repo)
    }
}

/// Builds a pack and its index in memory, entry by entry.
struct PackWriter {
    bytes: Vec<u8>,
    /// (id, offset, crc32) of each entry.
    entries: Vec<(Oid, u64, u32)>,
}

impl PackWriter {
    fn new(count: usize) -> PackWriter {
        let mut bytes = Vec::with_capacity(4096);
        bytes.extend_from_slice(b"PACK");
        bytes.extend_from_slice(&2u32.to_be_bytes());
        bytes.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_be_bytes());
        PackWriter {
            bytes,
            entries: Vec::with_capacity(count),
        }
    }

    /// Appends an object: its type-and-size header, then its zlib-compressed content.
    fn add(&mut self, id: Oid, kind: u8, data: &[u8]) -> Result<(), git2::Error> {
        let start = self.bytes.len();
        let mut size = data.len() as u64;
        let mut byte = (kind << 4) | (size & 0x0f) as u8;
        size >>= 4;
        while size > 0 {
            self.bytes.push(byte | 0x80);
            byte = (size & 0x7f) as u8;
            size >>= 7;
        }
        self.bytes.push(byte);
        let mut z = flate2::write::ZlibEncoder::new(&mut self.bytes, flate2::Compression::fast());
        z.write_all(data)
            .and_then(|()| z.finish().map(drop))
            .map_err(|e| git2::Error::from_str(&format!("compress object {id}: {e}")))?;
        let crc = crc32fast::hash(&self.bytes[start..]);
        self.entries.push((id, start as u64, crc));
        Ok(())
    }

    /// Adds an entry copied from another pack (its header and compressed content as they are).
    fn add_raw(&mut self, id: Oid, entry: &[u8], crc: u32) {
        let start = self.bytes.len() as u64;
        self.bytes.extend_from_slice(entry);
        self.entries.push((id, start, crc));
    }

    /// Writes `pack-<checksum>.pack` and `.idx` into `dir`, each synced before it is renamed
    /// into place (the pack first: git only looks at packs that have an index), then syncs the
    /// directory. Returns the `.pack` path.
    fn finish(mut self, dir: &Path, sync: bool) -> Result<PathBuf, git2::Error> {
        let count = u32::try_from(self.entries.len())
            .map_err(|_| git2::Error::from_str("too many objects for one pack"))?;
        self.bytes[8..12].copy_from_slice(&count.to_be_bytes());
        let checksum: [u8; 20] = Sha1::digest(&self.bytes).into();
        self.bytes.extend_from_slice(&checksum);
        self.entries.sort_by_key(|e| e.0);
        let index = build_index(&self.entries, &checksum);
        let name = hex(&checksum);
        let pack_path = dir.join(format!("pack-{name}.pack"));
        let idx_path = dir.join(format!("pack-{name}.idx"));
        let io = |what: &str, e: std::io::Error| {
            git2::Error::from_str(&format!("{what} in {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| io("create the pack directory", e))?;
        write_file(dir, &self.bytes, &pack_path, sync).map_err(|e| io("write a pack", e))?;
        write_file(dir, &index, &idx_path, sync).map_err(|e| io("write a pack index", e))?;
        if sync {
            sync_dir(dir).map_err(|e| io("sync the pack directory", e))?;
        }
        Ok(pack_path)
    }
}

/// A version-2 pack index: magic, version, 256-entry fan-out, sorted ids, CRC32s, 31-bit
/// offsets (with a table of 64-bit ones for entries past 2 GiB), the pack's checksum, and the
/// index's own checksum.
fn build_index(sorted: &[(Oid, u64, u32)], pack_checksum: &[u8; 20]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 1024 + sorted.len() * 28 + 40);
    out.extend_from_slice(&[0xff, b't', b'O', b'c']);
    out.extend_from_slice(&2u32.to_be_bytes());
    let mut fanout = [0u32; 256];
    for (id, _, _) in sorted {
        fanout[id.as_bytes()[0] as usize] += 1;
    }
    let mut total = 0u32;
    for n in fanout {
        total += n;
        out.extend_from_slice(&total.to_be_bytes());
    }
    for (id, _, _) in sorted {
        out.extend_from_slice(id.as_bytes());
    }
    for (_, _, crc) in sorted {
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut large = Vec::new();
    for (_, offset, _) in sorted {
        if *offset < 0x8000_0000 {
            out.extend_from_slice(&(*offset as u32).to_be_bytes());
        } else {
            out.extend_from_slice(&(0x8000_0000 | large.len() as u32).to_be_bytes());
            large.push(*offset);
        }
    }
    for offset in large {
        out.extend_from_slice(&offset.to_be_bytes());
    }
    out.extend_from_slice(pack_checksum);
    let own: [u8; 20] = Sha1::digest(&out).into();
    out.extend_from_slice(&own);
    out
}

/// Writes `bytes` to a new temporary file in `dir`, syncs it (with `sync`) and renames it to
/// `to`.
fn write_file(dir: &Path, bytes: &[u8], to: &Path, sync: bool) -> std::io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix("tmp_mmm_pack_")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o444))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if sync {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(to).map_err(|e| e.error)?;
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Folds the packs at `packs` (paths of `.pack` files this process wrote, without deltas) into
/// one, copying their entries as they are, then deletes them. Packs that vanished meanwhile
/// are skipped; a pack that is not one of ours (it holds deltas) is left alone. Returns the
/// merged pack's path (`None` when fewer than two packs could be merged).
pub(crate) fn merge_packs(
    repo: &Repository,
    packs: &[PathBuf],
    sync: bool,
) -> Result<Option<PathBuf>, git2::Error> {
    // A multi-pack index lists packs by name; deleting one it lists is git's business.
    if pack_dir(repo).join("multi-pack-index").exists() {
        return Ok(None);
    }
    let mut sources = Vec::new();
    for pack in packs {
        match read_pack(pack) {
            Ok(Some(entries)) => sources.push((pack.clone(), entries)),
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(git2::Error::from_str(&format!(
                    "read the pack {}: {e}",
                    pack.display()
                )));
            }
        }
    }
    if sources.len() < 2 {
        return Ok(None);
    }
    let mut seen = std::collections::HashSet::new();
    let count = sources.iter().map(|(_, e)| e.entries.len()).sum();
    let mut merged = PackWriter::new(count);
    for (_, pack) in &sources {
        for (id, range, crc) in &pack.entries {
            if seen.insert(*id) {
                merged.add_raw(*id, &pack.bytes[range.clone()], *crc);
            }
        }
    }
    let path = merged.finish(&pack_dir(repo), sync)?;
    repo.odb()?.refresh()?;
    for (pack, _) in &sources {
        if *pack == path {
            continue;
        }
        // The index goes first: git ignores a pack without one.
        for ext in ["idx", "rev", "pack"] {
            match std::fs::remove_file(pack.with_extension(ext)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(git2::Error::from_str(&format!(
                        "remove the merged pack {}: {e}",
                        pack.display()
                    )));
                }
            }
        }
    }
    repo.odb()?.refresh()?;
    Ok(Some(path))
}

/// Merges the repository's small packs in mmm's format (no deltas) when there are more than
/// [`TIDY_AFTER`] of them: one per run and any a killed run left would otherwise pile up until
/// git's `gc --auto` repacked everything at once. Packs git marks as special (kept, promisor,
/// cruft, with a bitmap) are left alone, and so is everything when a multi-pack index lists
/// the packs.
pub(crate) fn tidy(repo: &Repository, sync: bool) -> Result<(), git2::Error> {
    let dir = pack_dir(repo);
    if dir.join("multi-pack-index").exists() {
        return Ok(());
    }
    // One tidy at a time: another mmm process tidying now does the work for this one.
    let lock_path = repo.commondir().join("mmm").join("tidy.lock");
    let _ = std::fs::create_dir_all(lock_path.parent().unwrap_or(&dir));
    let lock = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock_path)
    {
        Ok(_) => TidyLock(lock_path),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // A lock left by a killed process goes after a minute.
            let stale = std::fs::metadata(&lock_path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 60));
            if stale {
                let _ = std::fs::remove_file(&lock_path);
            }
            return Ok(());
        }
        Err(_) => return Ok(()),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut small = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "pack") {
            continue;
        }
        let special = ["keep", "promisor", "mtimes", "bitmap"]
            .iter()
            .any(|ext| path.with_extension(ext).exists());
        let size = entry.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        if !special && size < SMALL_PACK && path.with_extension("idx").exists() {
            small.push((size, path));
        }
    }
    if small.len() <= TIDY_AFTER {
        return Ok(());
    }
    // Geometrically, as `git repack --geometric=2` does: the smallest packs, and each larger
    // one only while it is at most twice all the smaller ones together. Pack sizes then grow
    // by doubling, so a pack's bytes are copied a logarithmic number of times, not once per
    // run.
    small.sort();
    let mut total = 0;
    let mut chosen = Vec::new();
    for (size, path) in small {
        if chosen.len() >= 2 && size > 2 * total {
            break;
        }
        total += size;
        chosen.push(path);
    }
    let merged = merge_packs(repo, &chosen, sync).map(drop);
    drop(lock);
    merged
}

/// Removes the tidy lock file when dropped.
struct TidyLock(PathBuf);

impl Drop for TidyLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A pack read back: its bytes and, per entry, the id, the byte range and the CRC32.
struct ReadPack {
    bytes: Vec<u8>,
    entries: Vec<(Oid, std::ops::Range<usize>, u32)>,
}

/// Reads a pack and its index. `Ok(None)` when an entry is a delta (not a pack we wrote).
fn read_pack(pack: &Path) -> std::io::Result<Option<ReadPack>> {
    let idx = std::fs::read(pack.with_extension("idx"))?;
    let bytes = std::fs::read(pack)?;
    let bad = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{what} ({})", pack.display()),
        )
    };
    if idx.len() < 8 + 1024 + 40 || idx[..8] != [0xff, b't', b'O', b'c', 0, 0, 0, 2] {
        return Err(bad("not a version 2 pack index"));
    }
    let be32 = |at: usize| u32::from_be_bytes([idx[at], idx[at + 1], idx[at + 2], idx[at + 3]]);
    let n = be32(8 + 255 * 4) as usize;
    let ids_at = 8 + 1024;
    let crcs_at = ids_at + n * 20;
    let offsets_at = crcs_at + n * 4;
    let large_at = offsets_at + n * 4;
    if idx.len() < large_at + 40 || bytes.len() < 12 + 20 {
        return Err(bad("pack index shorter than its object count"));
    }
    let mut entries = Vec::with_capacity(n);
    for i in 0..n {
        let id = Oid::from_bytes(&idx[ids_at + i * 20..ids_at + i * 20 + 20])
            .map_err(|e| bad(&e.to_string()))?;
        let crc = be32(crcs_at + i * 4);
        let small = be32(offsets_at + i * 4);
        let offset = if small & 0x8000_0000 == 0 {
            small as usize
        } else {
            let at = large_at + (small & 0x7fff_ffff) as usize * 8;
            let raw: [u8; 8] = idx
                .get(at..at + 8)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| bad("pack index offset table cut short"))?;
            usize::try_from(u64::from_be_bytes(raw)).map_err(|_| bad("offset too large"))?
        };
        entries.push((id, offset, crc));
    }
    let mut by_offset: Vec<usize> = (0..n).collect();
    by_offset.sort_by_key(|&i| entries[i].1);
    let end_of_entries = bytes.len() - 20;
    let mut out = Vec::with_capacity(n);
    for (k, &i) in by_offset.iter().enumerate() {
        let (id, start, crc) = entries[i];
        let end = by_offset
            .get(k + 1)
            .map_or(end_of_entries, |&j| entries[j].1);
        if start >= end || end > end_of_entries {
            return Err(bad("pack entry outside the pack"));
        }
        let kind = (bytes[start] >> 4) & 0x07;
        if !matches!(kind, OBJ_COMMIT | OBJ_TREE | OBJ_BLOB | OBJ_TAG) {
            return Ok(None);
        }
        out.push((id, start..end, crc));
    }
    Ok(Some(ReadPack {
        bytes,
        entries: out,
    }))
}

/// The repository's pack directory (`objects/pack`, shared by all worktrees).
fn pack_dir(repo: &Repository) -> PathBuf {
    repo.commondir().join("objects").join("pack")
}

fn pack_type(kind: raw::git_object_t) -> Result<u8, git2::Error> {
    match kind {
        raw::GIT_OBJECT_COMMIT => Ok(OBJ_COMMIT),
        raw::GIT_OBJECT_TREE => Ok(OBJ_TREE),
        raw::GIT_OBJECT_BLOB => Ok(OBJ_BLOB),
        raw::GIT_OBJECT_TAG => Ok(OBJ_TAG),
        other => Err(git2::Error::from_str(&format!(
            "cannot pack an object of type {other}"
        ))),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check(code: c_int) -> Result<(), git2::Error> {
    if code < 0 {
        Err(git2::Error::last_error(code))
    } else {
        Ok(())
    }
}

// The callbacks libgit2 calls. They must not unwind: nothing in them panics (the mutex is
// taken even when poisoned, allocations failing abort), and every pointer comes from libgit2.

/// # Safety
/// `backend` is a `Backend` this module allocated; `oid` is a valid id.
unsafe fn with_objects<T>(
    backend: *mut raw::git_odb_backend,
    f: impl FnOnce(&mut HashMap<Oid, Held>) -> T,
) -> T {
    // SAFETY: the vtable is the first field of `Backend` (`repr(C)`), so the pointer libgit2
    // hands back is the `Backend` we gave it.
    let backend = unsafe { &*backend.cast::<Backend>() };
    let mut objects = backend.objects.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut objects)
}

/// # Safety
/// `oid` points at a valid `git_oid`.
unsafe fn oid_of(oid: *const raw::git_oid) -> Oid {
    // SAFETY: libgit2 passes a valid id.
    unsafe { <Oid as git2::Binding>::from_raw(oid) }
}

extern "C" fn read_cb(
    buffer: *mut *mut c_void,
    len: *mut usize,
    kind: *mut raw::git_object_t,
    backend: *mut raw::git_odb_backend,
    oid: *const raw::git_oid,
) -> c_int {
    // SAFETY: libgit2 passes valid out-pointers, our backend and a valid id; the buffer comes
    // from `git_odb_backend_data_alloc`, which libgit2 frees.
    unsafe {
        let id = oid_of(oid);
        with_objects(backend, |objects| match objects.get(&id) {
            None => raw::GIT_ENOTFOUND,
            Some(held) => {
                let out = raw::git_odb_backend_data_alloc(backend, held.data.len());
                if out.is_null() {
                    return -1;
                }
                std::ptr::copy_nonoverlapping(
                    held.data.as_ptr(),
                    out.cast::<u8>(),
                    held.data.len(),
                );
                *buffer = out;
                *len = held.data.len();
                *kind = held.kind;
                0
            }
        })
    }
}

extern "C" fn read_header_cb(
    len: *mut usize,
    kind: *mut raw::git_object_t,
    backend: *mut raw::git_odb_backend,
    oid: *const raw::git_oid,
) -> c_int {
    // SAFETY: as in `read_cb`.
    unsafe {
        let id = oid_of(oid);
        with_objects(backend, |objects| match objects.get(&id) {
            None => raw::GIT_ENOTFOUND,
            Some(held) => {
                *len = held.data.len();
                *kind = held.kind;
                0
            }
        })
    }
}

extern "C" fn write_cb(
    backend: *mut raw::git_odb_backend,
    oid: *const raw::git_oid,
    data: *const c_void,
    len: usize,
    kind: raw::git_object_t,
) -> c_int {
    // SAFETY: libgit2 passes our backend, the object's id and `len` readable bytes.
    unsafe {
        let id = oid_of(oid);
        let bytes: Box<[u8]> = if len == 0 {
            Box::new([])
        } else {
            std::slice::from_raw_parts(data.cast::<u8>(), len).into()
        };
        with_objects(backend, |objects| {
            objects.entry(id).or_insert(Held { kind, data: bytes });
        });
    }
    0
}

extern "C" fn exists_cb(backend: *mut raw::git_odb_backend, oid: *const raw::git_oid) -> c_int {
    // SAFETY: as in `read_cb`.
    unsafe {
        let id = oid_of(oid);
        with_objects(backend, |objects| c_int::from(objects.contains_key(&id)))
    }
}

extern "C" fn free_cb(backend: *mut raw::git_odb_backend) {
    ours().retain(|&b| b != backend as usize);
    // SAFETY: libgit2 calls this once, when the database that owns the backend is freed; the
    // pointer is the `Box<Backend>` leaked in `attach`.
    drop(unsafe { Box::from_raw(backend.cast::<Backend>()) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn packs(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(".git/objects/pack"))
            .map(|d| d.map(|e| e.expect("entry").path()).collect())
            .unwrap_or_default();
        v.retain(|p| p.extension().is_some_and(|e| e == "pack"));
        v.sort();
        v
    }

    fn loose_objects(dir: &Path) -> usize {
        let out = git(dir, &["count-objects", "-v"]);
        out.lines()
            .find_map(|l| l.strip_prefix("count: "))
            .expect("count line")
            .parse()
            .expect("number")
    }

    /// A repository with an in-memory batch and an initial commit made through it.
    fn setup() -> (tempfile::TempDir, Repository, ObjectBatch) {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init(dir.path()).expect("init");
        let batch = ObjectBatch::attach(&repo, true).expect("attach");
        (dir, repo, batch)
    }

    #[test]
    fn objects_wait_in_memory_and_reach_git_as_one_pack() {
        let (dir, repo, batch) = setup();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let blob = repo.blob(b"hello\n").expect("blob");
        let binary = repo.blob(&big).expect("big blob");
        let empty = repo.blob(b"").expect("empty blob");
        let mut tb = repo.treebuilder(None).expect("treebuilder");
        tb.insert("hello.txt", blob, 0o100644).expect("insert");
        tb.insert("big.bin", binary, 0o100644).expect("insert");
        tb.insert("empty", empty, 0o100644).expect("insert");
        let tree = repo
            .find_tree(tb.write().expect("tree"))
            .expect("read tree");
        let sig = git2::Signature::now("t", "t@example.com").expect("sig");
        let commit = repo
            .commit(None, &sig, &sig, "one\n", &tree, &[])
            .expect("commit");
        // Readable through libgit2 before the flush, invisible to git.
        assert_eq!(repo.find_blob(blob).expect("read").content(), b"hello\n");
        assert_eq!(batch.pending(), 5);
        assert!(packs(dir.path()).is_empty());
        assert_eq!(loose_objects(dir.path()), 0);

        let pack = batch.flush(&repo).expect("flush").expect("a pack");
        assert_eq!(batch.pending(), 0);
        assert_eq!(packs(dir.path()), vec![pack.clone()]);
        assert_eq!(loose_objects(dir.path()), 0, "no loose object was written");
        // Readable through libgit2 after the flush, and by git.
        assert_eq!(repo.find_blob(binary).expect("read").content(), &big[..]);
        repo.reference("refs/heads/main", commit, true, "test")
            .expect("ref");
        assert_eq!(
            git(dir.path(), &["cat-file", "-p", &format!("{blob}")]),
            "hello\n"
        );
        assert_eq!(
            git(dir.path(), &["ls-tree", "--name-only", "main"]),
            "big.bin\nempty\nhello.txt\n"
        );
        let verified = git(
            dir.path(),
            &[
                "verify-pack",
                "-v",
                pack.with_extension("idx").to_str().expect("utf-8"),
            ],
        );
        assert!(verified.contains("non delta: 5 objects"), "{verified}");
        git(dir.path(), &["fsck", "--strict", "--full"]);
        // Nothing pending: no pack.
        assert_eq!(batch.flush(&repo).expect("flush"), None);
    }

    #[test]
    fn merged_packs_hold_every_object_and_replace_the_small_ones() {
        let (dir, repo, batch) = setup();
        let sig = git2::Signature::now("t", "t@example.com").expect("sig");
        let mut small = Vec::new();
        let mut parent: Option<Oid> = None;
        let mut blobs = Vec::new();
        for i in 0..5 {
            let blob = repo.blob(format!("file {i}\n").as_bytes()).expect("blob");
            blobs.push(blob);
            let mut tb = repo.treebuilder(None).expect("treebuilder");
            tb.insert("f.txt", blob, 0o100644).expect("insert");
            let tree = repo.find_tree(tb.write().expect("tree")).expect("tree");
            let parents: Vec<git2::Commit<'_>> = parent
                .iter()
                .map(|p| repo.find_commit(*p).expect("parent"))
                .collect();
            let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
            let c = repo
                .commit(None, &sig, &sig, &format!("c{i}\n"), &tree, &parents)
                .expect("commit");
            parent = Some(c);
            small.push(batch.flush(&repo).expect("flush").expect("pack"));
        }
        assert_eq!(packs(dir.path()).len(), 5);
        let merged = merge_packs(&repo, &small, true)
            .expect("merge")
            .expect("a merged pack");
        assert_eq!(packs(dir.path()), vec![merged]);
        // Every object is still readable, by libgit2 (which had the small packs open) and git.
        for b in &blobs {
            repo.find_blob(*b).expect("blob after the merge");
        }
        let tip = parent.expect("commits");
        repo.reference("refs/heads/main", tip, true, "test")
            .expect("ref");
        assert_eq!(
            git(dir.path(), &["rev-list", "--count", "main"]).trim(),
            "5"
        );
        git(dir.path(), &["fsck", "--strict", "--full"]);
        // A single pack is left alone.
        let one = packs(dir.path());
        assert_eq!(merge_packs(&repo, &one, true).expect("merge"), None);
    }

    #[test]
    fn a_pack_with_deltas_is_not_merged() {
        let (dir, repo, batch) = setup();
        let ours = {
            repo.blob(b"ours\n").expect("blob");
            batch.flush(&repo).expect("flush").expect("pack")
        };
        // git's own pack, with a delta between two similar blobs.
        let text: String = (0..200).map(|i| format!("line {i}\n")).collect();
        std::fs::write(dir.path().join("a"), &text).expect("write");
        std::fs::write(dir.path().join("b"), format!("{text}one more\n")).expect("write");
        let a = git(dir.path(), &["hash-object", "-w", "a"]);
        let b = git(dir.path(), &["hash-object", "-w", "b"]);
        let out = Command::new("git")
            .args(["pack-objects", "-q", ".git/objects/pack/pack"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(format!("{a}{b}").as_bytes())?;
                child.wait_with_output()
            })
            .expect("pack-objects");
        assert!(out.status.success());
        let theirs = dir.path().join(".git/objects/pack").join(format!(
            "pack-{}.pack",
            String::from_utf8_lossy(&out.stdout).trim()
        ));
        assert!(theirs.exists());
        let theirs_idx = theirs.with_extension("idx");
        let listing = git(
            dir.path(),
            &["verify-pack", "-v", theirs_idx.to_str().expect("utf-8")],
        );
        assert!(
            listing.contains("chain length = 1"),
            "git made a delta: {listing}"
        );
        assert_eq!(
            merge_packs(&repo, &[ours.clone(), theirs.clone()], true).expect("merge"),
            None
        );
        assert!(
            ours.exists() && theirs.exists(),
            "both packs are left as they were"
        );
    }

    #[test]
    fn tidy_merges_many_small_packs_but_not_kept_ones() {
        let (dir, repo, batch) = setup();
        let mut written = Vec::new();
        for i in 0..TIDY_AFTER + 2 {
            let blob = repo.blob(format!("run {i}\n").as_bytes()).expect("blob");
            written.push((blob, batch.flush(&repo).expect("flush").expect("pack")));
        }
        // One pack is kept by git's rules: it stays as it is.
        let kept = written[0].1.clone();
        std::fs::write(kept.with_extension("keep"), "").expect("keep");
        tidy(&repo, true).expect("tidy");
        let left = packs(dir.path());
        assert_eq!(left.len(), 2, "the kept pack and the merged one: {left:?}");
        assert!(left.contains(&kept));
        for (blob, _) in &written {
            assert_eq!(
                git(dir.path(), &["cat-file", "-t", &blob.to_string()]),
                "blob\n"
            );
        }
        // Few packs: nothing to do.
        tidy(&repo, true).expect("tidy");
        assert_eq!(packs(dir.path()), left);
    }
}
