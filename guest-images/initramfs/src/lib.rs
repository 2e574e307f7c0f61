//! A deterministic initramfs (newc cpio) writer.
//!
//! The same entries give byte-identical archives whatever order they were added in and whatever the
//! files' times and owners on the host: entries are sorted by path, parent directories are implied,
//! and mtime/uid/gid/inode numbers are fixed. That makes an image cacheable by its bytes' hash.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("invalid archive path {0:?}: must be relative, without '..' or empty components")]
    BadPath(String),
    #[error("writing the archive: {0}")]
    Write(#[from] io::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
    CharDev { major: u32, minor: u32 },
}

/// An initramfs under construction. Paths are relative ("init", "bin/luo-agent").
#[derive(Debug, Default, Clone)]
pub struct Initramfs {
    entries: BTreeMap<String, Entry>,
}

impl Initramfs {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn dir(&mut self, path: &str) -> Result<&mut Self, InitramfsError> {
        self.insert(path, Entry::Dir)
    }

    pub fn file(
        &mut self,
        path: &str,
        mode: u32,
        data: Vec<u8>,
    ) -> Result<&mut Self, InitramfsError> {
        self.insert(
            path,
            Entry::File {
                mode: mode & 0o7777,
                data,
            },
        )
    }

    pub fn file_from_host(
        &mut self,
        path: &str,
        mode: u32,
        host: &Path,
    ) -> Result<&mut Self, InitramfsError> {
        let data = std::fs::read(host).map_err(|source| InitramfsError::Read {
            path: host.display().to_string(),
            source,
        })?;
        self.file(path, mode, data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self, InitramfsError> {
        self.insert(
            path,
            Entry::Symlink {
                target: target.to_string(),
            },
        )
    }

    /// A device node, e.g. /dev/console (5:1), so the kernel can open it before devtmpfs is mounted.
    pub fn char_dev(
        &mut self,
        path: &str,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self, InitramfsError> {
        self.insert(path, Entry::CharDev { major, minor })
    }

    fn insert(&mut self, path: &str, entry: Entry) -> Result<&mut Self, InitramfsError> {
        let clean = path.trim_start_matches("./");
        if clean.is_empty()
            || clean.starts_with('/')
            || clean
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(InitramfsError::BadPath(path.to_string()));
        }
        // Parents are implied so the kernel never has to create them with default modes.
        let mut parent = String::new();
        for comp in clean.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(comp);
            self.entries.entry(parent.clone()).or_insert(Entry::Dir);
        }
        self.entries.insert(clean.to_string(), entry);
        Ok(self)
    }

    /// Writes the archive (uncompressed: the guest kernel need not decompress it, which is faster
    /// under TCG than any compressor saves in loading).
    pub fn write_to(&self, out: &mut impl Write) -> Result<u64, InitramfsError> {
        let mut w = CountingWriter {
            inner: out,
            written: 0,
        };
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            let ino = ino as u32 + 1;
            let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match entry {
                Entry::Dir => (0o040755, &[], (0, 0)),
                Entry::File { mode, data } => (0o100000 | mode, data, (0, 0)),
                Entry::Symlink { target } => (0o120777, target.as_bytes(), (0, 0)),
                Entry::CharDev { major, minor } => (0o020600, &[], (*major, *minor)),
            };
            let nlink = if matches!(entry, Entry::Dir) { 2 } else { 1 };
            write_record(&mut w, ino, mode, nlink, rdev, path, data)?;
        }
        write_record(&mut w, 0, 0, 1, (0, 0), "TRAILER!!!", &[])?;
        // Pad to 512 bytes like GNU cpio, so concatenating archives stays valid.
        let pad = (512 - (w.written % 512)) % 512;
        w.write_all(&vec![0; pad as usize])?;
        Ok(w.written)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v).expect("writing to a Vec cannot fail");
        v
    }
}

fn write_record(
    w: &mut CountingWriter<'_, impl Write>,
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) -> io::Result<()> {
    let namesize = name.len() + 1;
    let header = format!(
        "070701{ino:08X}{mode:08X}{uid:08X}{gid:08X}{nlink:08X}{mtime:08X}{size:08X}\
         {devmaj:08X}{devmin:08X}{rmaj:08X}{rmin:08X}{namesize:08X}{check:08X}",
        uid = 0,
        gid = 0,
        mtime = 0,
        size = data.len(),
        devmaj = 0,
        devmin = 0,
        rmaj = rdev.0,
        rmin = rdev.1,
        check = 0,
    );
    w.write_all(header.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    w.pad4()?;
    w.write_all(data)?;
    w.pad4()
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    written: u64,
}

impl<W: Write> CountingWriter<'_, W> {
    fn pad4(&mut self) -> io::Result<()> {
        let pad = (4 - (self.written % 4)) % 4;
        self.write_all(&[0u8; 3][..pad as usize])
    }
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Op = Box<dyn Fn(&mut Initramfs)>;

    fn sample(order_reversed: bool) -> Vec<u8> {
        let mut i = Initramfs::new();
        let mut ops: Vec<Op> = vec![
            Box::new(|i| {
                i.file("init", 0o755, b"#!/bin/agent\n".to_vec()).unwrap();
            }),
            Box::new(|i| {
                i.file("usr/bin/x", 0o644, vec![1, 2, 3]).unwrap();
            }),
            Box::new(|i| {
                i.char_dev("dev/console", 5, 1).unwrap();
            }),
            Box::new(|i| {
                i.symlink("bin", "usr/bin").unwrap();
            }),
        ];
        if order_reversed {
            ops.reverse();
        }
        for op in ops {
            op(&mut i);
        }
        i.to_bytes()
    }

    #[test]
    fn same_inputs_give_identical_bytes_in_any_order() {
        assert_eq!(sample(false), sample(true));
    }

    #[test]
    fn archive_is_valid_newc_with_implied_parents_and_trailer() {
        let bytes = sample(false);
        assert_eq!(bytes.len() % 512, 0);
        // Walk the records and collect names.
        let mut names = Vec::new();
        let mut off = 0usize;
        loop {
            let h = std::str::from_utf8(&bytes[off..off + 110]).unwrap();
            assert_eq!(&h[..6], "070701");
            let field =
                |i: usize| u32::from_str_radix(&h[6 + i * 8..14 + i * 8], 16).unwrap() as usize;
            let (filesize, namesize) = (field(6), field(11));
            assert_eq!(field(5), 0, "mtime must be fixed");
            let name = std::str::from_utf8(&bytes[off + 110..off + 110 + namesize - 1])
                .unwrap()
                .to_string();
            off = (off + 110 + namesize).next_multiple_of(4);
            off = (off + filesize).next_multiple_of(4);
            if name == "TRAILER!!!" {
                break;
            }
            names.push(name);
        }
        assert_eq!(
            names,
            [
                "bin",
                "dev",
                "dev/console",
                "init",
                "usr",
                "usr/bin",
                "usr/bin/x"
            ]
        );
    }

    #[test]
    fn rejects_escaping_paths() {
        let mut i = Initramfs::new();
        assert!(matches!(
            i.file("../etc/passwd", 0o644, vec![]),
            Err(InitramfsError::BadPath(_))
        ));
        assert!(matches!(
            i.file("/abs", 0o644, vec![]),
            Err(InitramfsError::BadPath(_))
        ));
        assert!(matches!(
            i.file("a//b", 0o644, vec![]),
            Err(InitramfsError::BadPath(_))
        ));
    }
}
