//! Files the gateway writes for its operator: tokens and keys.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with a new file created with mode 0600. Removing first
/// means an existing file's looser mode, or a planted symlink, is not reused.
pub fn write_owner_only(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
