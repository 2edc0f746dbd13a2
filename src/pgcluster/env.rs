//! Host environment helpers for [`super::TempCluster`]: locating the
//! PostgreSQL binaries, choosing an unprivileged user when running as root,
//! and owning a temporary directory.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::ClusterError;

fn has_server_binaries(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// Finds the directory holding `initdb` and `postgres`.
///
/// Order: `$PG_BINDIR`, `pg_config --bindir`, `$PATH`, then the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps the server binaries off PATH).
pub(super) fn find_bindir() -> Result<PathBuf, ClusterError> {
    let mut searched = Vec::new();

    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
        // An explicit setting that is wrong should fail loudly, not be
        // silently replaced by some other installation.
        return Err(ClusterError::BinariesNotFound {
            searched: format!("PG_BINDIR={} has no initdb/postgres", dir.display()),
        });
    }
    searched.push("PG_BINDIR (unset)".to_string());

    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_server_binaries(&dir) {
                return Ok(dir);
            }
            searched.push(format!("pg_config --bindir ({})", dir.display()));
        }
    } else {
        searched.push("pg_config (not found)".to_string());
    }

    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_server_binaries(d)) {
            return Ok(dir);
        }
    }
    searched.push("PATH".to_string());

    let mut versions: Vec<(Vec<u64>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name
                .split('.')
                .map(|p| p.parse::<u64>().ok())
                .collect::<Option<Vec<_>>>()?;
            let bin = entry.path().join("bin");
            has_server_binaries(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    searched.push("/usr/lib/postgresql/*/bin".to_string());

    Err(ClusterError::BinariesNotFound {
        searched: searched.join(", "),
    })
}

/// The user a root process hands the cluster to; PostgreSQL refuses to run
/// as root.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// `None` when not root (children run as ourselves), else the `postgres`
/// user if it exists, else `nobody`.
pub(super) fn run_as() -> Result<Option<RunAs>, ClusterError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Some(user) = lookup_user(name) {
            return Ok(Some(user));
        }
    }
    Err(ClusterError::NoUnprivilegedUser)
}

fn lookup_user(name: &str) -> Option<RunAs> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain old data; getpwnam_r fills it, pointing its
    // string fields into `buf`, which outlives every read below.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the lengths given; the reentrant
    // variant avoids getpwnam's shared static buffer.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(RunAs {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}

/// A directory removed (recursively) on drop.
#[derive(Debug)]
pub(super) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh 0700 directory. When handing it to `owner`, every
    /// ancestor must be searchable by that user, so a private `$TMPDIR` falls
    /// back to `/tmp`. Names stay short because unix socket paths are limited
    /// to ~100 bytes and the socket lives in this directory.
    pub(super) fn new(owner: Option<RunAs>) -> Result<TempDir, ClusterError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut base = std::env::temp_dir();
        if owner.is_some_and(|o| !searchable_by(&base, o)) {
            base = PathBuf::from("/tmp");
        }
        for _ in 0..100 {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = base.join(format!(
                "tenantpool-pg-{}-{}-{:x}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed),
                nanos & 0xfffff
            ));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    let dir = TempDir { path };
                    if let Some(o) = owner {
                        chown(&dir.path, o)?;
                    }
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(ClusterError::io(format!("creating {}", path.display()), e)),
            }
        }
        Err(ClusterError::io(
            format!("creating a temp dir under {}", base.display()),
            io::Error::from(io::ErrorKind::AlreadyExists),
        ))
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove temp dir");
        }
    }
}

fn searchable_by(dir: &Path, who: RunAs) -> bool {
    dir.ancestors().all(|d| match fs::metadata(d) {
        Ok(m) => {
            let mode = m.permissions().mode();
            (m.uid() == who.uid && mode & 0o100 != 0)
                || (m.gid() == who.gid && mode & 0o010 != 0)
                || mode & 0o001 != 0
        }
        Err(_) => false,
    })
}

pub(super) fn chown(path: &Path, who: RunAs) -> Result<(), ClusterError> {
    std::os::unix::fs::chown(path, Some(who.uid), Some(who.gid))
        .map_err(|e| ClusterError::io(format!("chown {}", path.display()), e))
}

/// 32 hex characters from the kernel's CSPRNG, for the superuser password.
pub(super) fn random_hex() -> Result<String, ClusterError> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| ClusterError::io("reading /dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Percent-encodes everything except RFC 3986 unreserved characters, so any
/// user name or password is safe inside a URL's userinfo or path.
pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Quotes a value for a psql `\set` meta-command argument.
pub(super) fn psql_meta_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Whether a libpq/psql environment variable would leak into our children
/// (e.g. `PGSSLMODE=require` or `PGOPTIONS` from the caller's shell).
pub(super) fn is_pg_env(key: &OsStr) -> bool {
    key.to_str().is_some_and(|k| k.starts_with("PG"))
}
