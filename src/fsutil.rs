//! Writing files so that a reader (a web server, a feed reader, a crash)
//! never sees half of one: write a temporary file beside the target, flush
//! it, then rename it over the target.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically. Returns `false` without touching the
/// file when it already holds exactly these bytes.
pub fn write_if_changed(
    path: &Path,
    bytes: &[u8],
    durability: Durability,
) -> std::io::Result<bool> {
    if let Ok(existing) = std::fs::read(path) {
        if existing == bytes {
            return Ok(false);
        }
    }
    write_atomic(path, bytes, durability)?;
    Ok(true)
}

/// Whether a write must reach the disk before the rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the data before the rename: survives a power cut.
    Synced,
    /// Rename only: survives a crash of herald (kill -9), not of the machine.
    ProcessCrash,
}

/// Writes `bytes` to `path` through a temporary file and a rename. The file
/// is readable by everyone (0644), so a web server can serve it.
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, durability, 0o644)
}

/// `write_atomic` with the file's Unix permissions given (0600 for mail).
pub fn write_atomic_mode(
    path: &Path,
    bytes: &[u8],
    durability: Durability,
    mode: u32,
) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    use std::os::unix::fs::PermissionsExt;
    let mut tmp = tempfile::Builder::new()
        .prefix(".herald-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if durability == Durability::Synced {
        tmp.as_file().sync_data()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/feed.xml");
        assert!(write_if_changed(&path, b"one", Durability::Synced).unwrap());
        assert!(!write_if_changed(&path, b"one", Durability::Synced).unwrap());
        assert!(write_if_changed(&path, b"two", Durability::Synced).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path().join("a/b")).unwrap().count(), 1);
        // Published files must be readable by a web server's user.
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
    }
}
