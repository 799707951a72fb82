//! The path rules of the served directory, the same for TFTP and HTTP: what `--root` must be,
//! and how a requested name resolves inside it.

use std::{
    io,
    path::{Component, Path, PathBuf},
};

use crate::tftp::packet::ErrorCode;

/// The directory an origin serves, resolved. Errors name the path: missing, or not a directory.
pub fn served_root(root: &Path) -> io::Result<PathBuf> {
    let real = root
        .canonicalize()
        .map_err(|e| io::Error::new(e.kind(), format!("--root {}: {e}", root.display())))?;
    if !real.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("--root {}: not a directory", root.display()),
        ));
    }
    Ok(real)
}

/// Resolves a requested name inside `root` (already canonical). Leading slashes name the
/// root; `..` anywhere is refused, before and after the slashes are taken off.
pub fn resolve(root: &Path, requested: &str) -> Result<PathBuf, (ErrorCode, String)> {
    let relative = requested.trim_start_matches('/');
    let rel = Path::new(relative);
    let escapes = rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if relative.is_empty() || escapes {
        return Err((
            ErrorCode::AccessViolation,
            format!("{requested:?}: empty names and .. are refused"),
        ));
    }
    let full = root.join(rel);
    let real = full.canonicalize().map_err(|_| {
        (
            ErrorCode::FileNotFound,
            format!("{requested}: file not found"),
        )
    })?;
    if !real.starts_with(root) {
        return Err((
            ErrorCode::AccessViolation,
            format!("{requested}: resolves outside the served directory"),
        ));
    }
    if !real.is_file() {
        return Err((ErrorCode::FileNotFound, format!("{requested}: not a file")));
    }
    Ok(real)
}
