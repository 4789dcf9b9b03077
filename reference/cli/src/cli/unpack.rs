//! Unpacking a folder backup's tar stream into a directory, refusing every entry that could
//! write or point outside it.
//!
//! The tar came out of an authenticated backup, but whoever made the backup may not be the
//! one who opens it (a backup shared, or made by a hostile tool): its entries are untrusted
//! names. An entry is refused (`malformed`, naming it) when its path is absolute or has a
//! `..`; when it is a symbolic link whose target is absolute, has `..` after a name, or climbs
//! above DIR; when it is a hard link to anything but a regular file already unpacked inside
//! DIR; when it is a device, FIFO or other special file; or when its path was unpacked
//! already (a second entry could otherwise replace a directory by a link).

use super::failure::{CliResult, Failure};
use coffer::ErrorClass;
use std::collections::HashSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use tar::EntryType;

/// Unpacks `tar` into the existing, empty directory `dir`; returns the entries unpacked.
pub(super) fn unpack(tar: impl Read, dir: &Path) -> CliResult<u64> {
    let root = dir
        .canonicalize()
        .map_err(|e| Failure::io(format!("cannot resolve {}", dir.display()), e))?;
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(false);
    let mut seen = HashSet::new();
    let mut count = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| Failure::io("cannot read the tar stream", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("a tar entry cannot be read: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| bad(format!("a tar entry's name cannot be read: {e}")))?
            .into_owned();
        let Some(path) = inside(&raw) else {
            return Err(bad(format!(
                "{} would land outside the directory",
                raw.display()
            )));
        };
        if path.as_os_str().is_empty() {
            continue; // "./" itself
        }
        let kind = entry.header().entry_type();
        if !seen.insert(path.clone()) && kind != EntryType::Directory {
            return Err(bad(format!("{} appears twice", raw.display())));
        }
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
            EntryType::Symlink => {
                let target = link_name(&entry, &raw)?;
                if !link_stays_inside(&root, &path, &target) {
                    return Err(bad(format!(
                        "{} links to {}, outside the directory",
                        raw.display(),
                        target.display()
                    )));
                }
            }
            EntryType::Link => {
                let target = link_name(&entry, &raw)?;
                let linked = inside(&target).map(|t| root.join(t));
                let regular_inside = linked
                    .as_ref()
                    .and_then(|t| t.canonicalize().ok())
                    .is_some_and(|t| t.starts_with(&root) && t.is_file());
                if !regular_inside {
                    return Err(bad(format!(
                        "{} is a hard link to {}, not a file unpacked inside the directory",
                        raw.display(),
                        target.display()
                    )));
                }
            }
            other => {
                return Err(Failure::new(
                    ErrorClass::Unsupported,
                    format!(
                        "{} is a {other:?} entry; only files, directories and links are unpacked",
                        raw.display()
                    ),
                ))
            }
        }
        // unpack_in also refuses a parent that resolves outside `root`.
        let unpacked = entry
            .unpack_in(&root)
            .map_err(|e| Failure::io(format!("cannot unpack {}", raw.display()), e))?;
        if !unpacked {
            return Err(bad(format!(
                "{} would land outside the directory",
                raw.display()
            )));
        }
        count += 1;
    }
    Ok(count)
}

fn bad(message: String) -> Failure {
    Failure::new(ErrorClass::Malformed, message)
}

/// A link entry's target.
fn link_name<R: Read>(entry: &tar::Entry<'_, R>, raw: &Path) -> CliResult<PathBuf> {
    entry
        .link_name()
        .map_err(|e| bad(format!("{}: link target unreadable: {e}", raw.display())))?
        .map(|t| t.into_owned())
        .ok_or_else(|| bad(format!("{}: a link without a target", raw.display())))
}

/// `path` as a relative path of plain names (`./` dropped), or None when it is absolute or
/// has `..`.
fn inside(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether a symbolic link at `path` (relative to `root`) with `target` resolves inside
/// `root`: the target is relative, any `..` comes before its first name (so that it climbs
/// the real, already-resolved directories and nothing else), and it does not climb above
/// `root`. Every link is checked so, so a path through links stays inside too.
fn link_stays_inside(root: &Path, path: &Path, target: &Path) -> bool {
    let mut depth = path.components().count().saturating_sub(1);
    let mut named = false;
    for component in target.components() {
        match component {
            Component::ParentDir if !named => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            Component::Normal(_) => named = true,
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    // The link's directory must itself be a real directory inside root (no link on the way).
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => root
            .join(parent)
            .canonicalize()
            .is_ok_and(|p| p == root.join(parent)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry: its name, its kind, and its body (files) or target (links).
    type Spec<'a> = (&'a str, EntryType, &'a str);

    fn tar_of(entries: &[Spec<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, target_or_body) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            match kind {
                EntryType::Symlink | EntryType::Link => {
                    header.set_size(0);
                    builder
                        .append_link(&mut header, name, target_or_body)
                        .unwrap();
                }
                _ => {
                    header.set_size(target_or_body.len() as u64);
                    // Raw names: the builder's own checks would refuse `..`.
                    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    header.set_cksum();
                    builder.append(&header, target_or_body.as_bytes()).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    fn unpack_into(entries: &[Spec<'_>]) -> (tempfile::TempDir, CliResult<u64>) {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("out");
        std::fs::create_dir(&dir).unwrap();
        let result = unpack(&tar_of(entries)[..], &dir);
        (outer, result)
    }

    #[test]
    fn files_directories_and_inner_links_are_unpacked() {
        let (outer, result) = unpack_into(&[
            ("a/", EntryType::Directory, ""),
            ("a/b.txt", EntryType::Regular, "hello"),
            ("a/c", EntryType::Symlink, "b.txt"),
            ("d", EntryType::Symlink, "a/b.txt"),
            ("a/e", EntryType::Symlink, "../d"),
            ("f", EntryType::Link, "a/b.txt"),
        ]);
        assert_eq!(result.unwrap(), 6);
        let out = outer.path().join("out");
        assert_eq!(std::fs::read_to_string(out.join("a/c")).unwrap(), "hello");
        assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "hello");
    }

    #[test]
    fn every_way_out_is_refused_by_name() {
        let cases: &[(&[Spec<'_>], &str)] = &[
            (
                &[("../evil", EntryType::Regular, "x")],
                "../evil would land outside",
            ),
            (
                &[("a/../../evil", EntryType::Regular, "x")],
                "would land outside",
            ),
            (
                &[("l", EntryType::Symlink, "/etc")],
                "links to /etc, outside",
            ),
            (&[("l", EntryType::Symlink, "..")], "links to .., outside"),
            (
                &[
                    ("a/", EntryType::Directory, ""),
                    ("a/l", EntryType::Symlink, "../.."),
                ],
                "outside",
            ),
            (&[("l", EntryType::Symlink, "x/../../y")], "outside"),
            (
                &[("h", EntryType::Link, "/etc/passwd")],
                "hard link to /etc/passwd",
            ),
            (
                &[("h", EntryType::Link, "missing")],
                "not a file unpacked inside",
            ),
            (
                &[
                    ("f", EntryType::Regular, "1"),
                    ("f", EntryType::Symlink, "g"),
                ],
                "f appears twice",
            ),
            (
                &[
                    ("l", EntryType::Symlink, "."),
                    ("l/m", EntryType::Symlink, "../x"),
                ],
                "outside",
            ),
        ];
        for (entries, why) in cases {
            let (outer, result) = unpack_into(entries);
            let failure = result.expect_err(why);
            assert_eq!(
                failure.class,
                ErrorClass::Malformed,
                "{why}: {}",
                failure.message
            );
            assert!(failure.message.contains(why), "{why}: {}", failure.message);
            // Nothing was written outside the directory.
            let outside: Vec<_> = std::fs::read_dir(outer.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(outside, vec![std::ffi::OsString::from("out")], "{why}");
        }
    }

    #[test]
    fn devices_and_fifos_are_unsupported() {
        let (_outer, result) = unpack_into(&[("p", EntryType::Fifo, "")]);
        assert_eq!(result.unwrap_err().class, ErrorClass::Unsupported);
    }
}
