//! Frames of a report (`func+0x8e/0x120`) to file:line against the vmlinux of the boot that printed
//! them, with the functions inlined at that address, as the kernel's decode_stacktrace.sh shows
//! them. The symbol table gives the function's address (its size tells two static functions of
//! one name apart); the DWARF (the debug flavour's) gives the line.

use super::parse::RawFrame;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One symbolized frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// `luo_session_release+0x8e/0x120`, as printed.
    pub frame: String,
    /// Where the address is, innermost first: the function inlined there (if any), then the one
    /// it was inlined into, each with `file:line` relative to the kernel tree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub at: Vec<Call>,
    /// The kernel address it stands for, where the symbol table has the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Printed with `? `: not necessarily a caller.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unreliable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub function: String,
    pub location: String,
}

impl Frame {
    /// `luo_session_release+0x8e/0x120 (kernel/liveupdate/luo_session.c:262)`, with what was
    /// inlined there before it.
    pub fn render(&self) -> String {
        let mark = if self.unreliable { "? " } else { "" };
        match self.at.split_last() {
            None => match &self.address {
                Some(a) => format!("{mark}{} [{a}]", self.frame),
                None => format!("{mark}{}", self.frame),
            },
            Some((outer, inner)) => {
                let mut s = format!("{mark}{} ({})", self.frame, outer.location);
                for c in inner.iter().rev() {
                    s.push_str(&format!(" -> inlined {} ({})", c.function, c.location));
                }
                s
            }
        }
    }
}

/// A vmlinux opened for symbolizing, or why it cannot be.
pub struct Symbolizer {
    symbols: HashMap<String, Vec<(u64, u64)>>,
    lines: Option<addr2line::Loader>,
    /// The tree prefix of the file names in the DWARF, removed.
    root: Option<String>,
    /// Why frames come out without file:line (no vmlinux, no DWARF in it).
    pub missing: Option<String>,
}

impl Symbolizer {
    /// `vmlinux` (None: the kernel came without one); `root` is the tree it was built from.
    pub fn open(vmlinux: Option<&Path>, root: Option<&str>) -> Symbolizer {
        let mut s = Symbolizer {
            symbols: HashMap::new(),
            lines: None,
            root: root
                .filter(|r| !r.is_empty())
                .map(|r| format!("{}/", r.trim_end_matches('/'))),
            missing: None,
        };
        let Some(path) = vmlinux else {
            s.missing = Some("the kernel came without a vmlinux: frames are not symbolized".into());
            return s;
        };
        match read_symbols(path) {
            Ok((symbols, has_dwarf)) => {
                s.symbols = symbols;
                if !has_dwarf {
                    s.missing = Some(format!(
                        "{} has no debug information (a debug flavour has: --debug): frames keep their addresses",
                        path.display()
                    ));
                    return s;
                }
            }
            Err(e) => {
                s.missing = Some(format!(
                    "{}: {e}: frames are not symbolized",
                    path.display()
                ));
                return s;
            }
        }
        match addr2line::Loader::new(path) {
            Ok(l) => s.lines = Some(l),
            Err(e) => s.missing = Some(format!("{}: reading its DWARF: {e}", path.display())),
        }
        s
    }

    /// The function's address: the symbol of that name whose size the frame gives, else the only
    /// one of that name.
    fn address(&self, f: &RawFrame) -> Option<u64> {
        let candidates = self.symbols.get(&f.function)?;
        candidates
            .iter()
            .find(|(_, size)| *size == f.size)
            .or_else(|| (candidates.len() == 1).then(|| &candidates[0]))
            .map(|(addr, _)| addr + f.offset)
    }

    pub fn frame(&self, f: &RawFrame) -> Frame {
        let address = self.address(f);
        let mut at = Vec::new();
        if let (Some(lines), Some(pc)) = (&self.lines, address) {
            // A return address points after the call; the call's line is one byte back.
            let probe = if f.exact { pc } else { pc.saturating_sub(1) };
            if let Ok(mut frames) = lines.find_frames(probe) {
                while let Ok(Some(fr)) = frames.next() {
                    let function = fr
                        .function
                        .as_ref()
                        .and_then(|n| n.raw_name().ok().map(|c| c.into_owned()))
                        .unwrap_or_else(|| "??".into());
                    let location = match fr.location {
                        Some(l) => format!(
                            "{}:{}",
                            self.relative(l.file.unwrap_or("??")),
                            l.line.unwrap_or(0)
                        ),
                        None => "??".into(),
                    };
                    at.push(Call { function, location });
                }
            }
        }
        let module = f
            .module
            .as_ref()
            .map(|m| format!(" [{m}]"))
            .unwrap_or_default();
        Frame {
            frame: format!("{}+{:#x}/{:#x}{module}", f.function, f.offset, f.size),
            at,
            address: address.map(|a| format!("{a:#x}")),
            unreliable: f.unreliable,
        }
    }

    /// A DWARF file name relative to the kernel tree.
    fn relative(&self, file: &str) -> String {
        let p = Path::new(file);
        let stripped = self
            .root
            .as_deref()
            .and_then(|r| file.strip_prefix(r))
            .map(PathBuf::from)
            .unwrap_or_else(|| normalize(p));
        stripped.display().to_string()
    }
}

/// `a/b/../c` -> `a/c` (out-of-tree builds name sources through the build directory).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

type Symbols = HashMap<String, Vec<(u64, u64)>>;

/// The function symbols of an ELF file, by name, and whether it carries DWARF.
fn read_symbols(path: &Path) -> Result<(Symbols, bool), String> {
    use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // SAFETY: the cache publishes kernels by rename and never writes a published file again.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?;
    let elf = object::File::parse(&*map).map_err(|e| format!("not an ELF file ({e})"))?;
    let mut symbols: Symbols = HashMap::new();
    for sym in elf.symbols() {
        if sym.kind() != SymbolKind::Text {
            continue;
        }
        if let Ok(name) = sym.name() {
            symbols
                .entry(name.to_string())
                .or_default()
                .push((sym.address(), sym.size()));
        }
    }
    let has_dwarf = elf
        .section_by_name(".debug_info")
        .is_some_and(|s| s.size() > 0);
    Ok((symbols, has_dwarf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_render_like_decode_stacktrace() {
        let f = Frame {
            frame: "luo_session_release+0x8e/0x120".into(),
            at: vec![
                Call {
                    function: "luo_session_free".into(),
                    location: "kernel/liveupdate/luo_session.c:168".into(),
                },
                Call {
                    function: "luo_session_release".into(),
                    location: "kernel/liveupdate/luo_session.c:262".into(),
                },
            ],
            address: Some("0xffffffff81234567".into()),
            unreliable: false,
        };
        assert_eq!(
            f.render(),
            "luo_session_release+0x8e/0x120 (kernel/liveupdate/luo_session.c:262) -> inlined luo_session_free (kernel/liveupdate/luo_session.c:168)"
        );
        let bare = Frame {
            at: vec![],
            unreliable: true,
            ..f
        };
        assert_eq!(
            bare.render(),
            "? luo_session_release+0x8e/0x120 [0xffffffff81234567]"
        );
    }

    #[test]
    fn a_missing_vmlinux_or_one_without_dwarf_is_said() {
        let s = Symbolizer::open(None, None);
        assert!(s.missing.as_deref().unwrap().contains("without a vmlinux"));
        // This test binary is an ELF file: its symbols are read, whatever its debug info.
        let exe = std::env::current_exe().unwrap();
        let s = Symbolizer::open(Some(&exe), None);
        assert!(!s.symbols.is_empty());
        let d = tempfile::tempdir().unwrap();
        let junk = d.path().join("vmlinux");
        std::fs::write(&junk, b"not elf").unwrap();
        let s = Symbolizer::open(Some(&junk), None);
        assert!(
            s.missing.as_deref().unwrap().contains("not an ELF file"),
            "{:?}",
            s.missing
        );
    }

    #[test]
    fn paths_are_made_relative_to_the_tree() {
        let s = Symbolizer {
            symbols: HashMap::new(),
            lines: None,
            root: Some("/c/staging/linux-7.3/src/".into()),
            missing: None,
        };
        assert_eq!(
            s.relative("/c/staging/linux-7.3/src/kernel/liveupdate/luo_session.c"),
            "kernel/liveupdate/luo_session.c"
        );
        assert_eq!(
            s.relative("/b/../include/linux/list.h"),
            "/include/linux/list.h"
        );
    }
}
