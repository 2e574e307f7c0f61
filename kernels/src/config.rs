//! Configuration fragments: what they ask for, and whether the final .config gives it.

use std::collections::BTreeMap;
use std::path::Path;

/// A named fragment (`base.config`) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub name: String,
    pub text: String,
}

/// The fragments shipped in kernels/fragments/, in name order.
pub fn builtin_fragments() -> Vec<Fragment> {
    crate::embedded::FRAGMENTS
        .iter()
        .map(|(n, t)| Fragment {
            name: n.to_string(),
            text: t.to_string(),
        })
        .collect()
}

/// One fragment's requests, in order: (SYMBOL without CONFIG_, value; "n" for `is not set`).
pub fn requests(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if let Some(rest) = l.strip_prefix("# CONFIG_") {
                return Some((
                    rest.strip_suffix(" is not set")?.to_string(),
                    "n".to_string(),
                ));
            }
            let (k, v) = l.strip_prefix("CONFIG_")?.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// A .config as symbol -> value ("n" for `is not set`).
pub fn parse_dot_config(text: &str) -> BTreeMap<String, String> {
    requests(text).into_iter().collect()
}

/// Concatenation of the fragments, later ones overriding earlier ones (Kconfig's own rule).
pub fn merge(fragments: &[Fragment]) -> String {
    let mut out = String::new();
    for f in fragments {
        out.push_str(&format!("# --- {} ---\n", f.name));
        out.push_str(&f.text);
        if !f.text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingOption {
    pub symbol: String,
    pub wanted: String,
    pub got: String,
    pub fragment: String,
    /// What Kconfig says the symbol depends on (its `depends on` lines and enclosing `if`/menu
    /// conditions), where the tree was searched.
    pub depends: Vec<String>,
}

impl std::fmt::Display for MissingOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CONFIG_{}={} (from {}) but the final .config has ",
            self.symbol, self.wanted, self.fragment
        )?;
        if self.got == "n" {
            write!(f, "it not set")?
        } else {
            write!(f, "{}", self.got)?
        }
        if !self.depends.is_empty() {
            write!(f, "; it depends on: {}", self.depends.join("; "))?;
        }
        Ok(())
    }
}

/// Every request of every fragment that the final configuration does not honour (the last fragment
/// to mention a symbol is the one that counts).
pub fn verify(
    fragments: &[Fragment],
    final_config: &BTreeMap<String, String>,
) -> Vec<MissingOption> {
    let mut wanted: BTreeMap<String, (String, String)> = BTreeMap::new();
    for f in fragments {
        for (sym, val) in requests(&f.text) {
            wanted.insert(sym, (val, f.name.clone()));
        }
    }
    wanted
        .into_iter()
        .filter_map(|(symbol, (wanted, fragment))| {
            let got = final_config
                .get(&symbol)
                .cloned()
                .unwrap_or_else(|| "n".into());
            (got != wanted).then_some(MissingOption {
                symbol,
                wanted,
                got,
                fragment,
                depends: vec![],
            })
        })
        .collect()
}

/// Fills `depends` of each missing option from the tree's Kconfig files.
pub fn explain(missing: &mut [MissingOption], tree: &Path) {
    if missing.is_empty() {
        return;
    }
    let mut files = Vec::new();
    collect_kconfig_files(tree, &mut files);
    for m in missing.iter_mut() {
        for f in &files {
            if let Ok(text) = std::fs::read_to_string(f) {
                let deps = dependencies_in(&text, &m.symbol);
                if !deps.is_empty() || text.lines().any(|l| is_config_line(l, &m.symbol)) {
                    let rel = f.strip_prefix(tree).unwrap_or(f).display().to_string();
                    m.depends
                        .extend(deps.into_iter().map(|d| format!("{d} ({rel})")));
                }
            }
        }
        if m.depends.is_empty() && !files.is_empty() {
            m.depends
                .push("no such symbol in this tree's Kconfig files".into());
        }
    }
}

fn collect_kconfig_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if p.is_dir() {
            if !name.starts_with('.') && name != "Documentation" && name != "tools" {
                collect_kconfig_files(&p, out);
            }
        } else if name.starts_with("Kconfig") {
            out.push(p);
        }
    }
}

/// `endif`, `endif # FOO`, ...
fn is_keyword_line(line: &str, kw: &str) -> bool {
    line.strip_prefix(kw)
        .is_some_and(|rest| rest.trim().is_empty() || rest.trim_start().starts_with('#'))
}

fn is_config_line(line: &str, sym: &str) -> bool {
    let mut w = line.split_whitespace();
    matches!(w.next(), Some("config") | Some("menuconfig"))
        && w.next() == Some(sym)
        && w.next().is_none()
}

/// The `depends on` of `config SYM` in one Kconfig file, plus the `if` and `menu ... depends on`
/// blocks that enclose it in that file.
pub fn dependencies_in(text: &str, sym: &str) -> Vec<String> {
    let mut enclosing: Vec<Option<String>> = Vec::new();
    let mut menu_depends_pending = false;
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim();
        // Block keywords stand at the start of a line; help text is indented and may begin with
        // the same words.
        if let Some(cond) = line.strip_prefix("if ") {
            enclosing.push(Some(format!("inside `if {}`", cond.trim())));
        } else if is_keyword_line(line, "endif") || is_keyword_line(line, "endmenu") {
            enclosing.pop();
        } else if line.starts_with("menu ") {
            enclosing.push(None);
            menu_depends_pending = true;
            continue;
        } else if menu_depends_pending && t.starts_with("depends on ") {
            if let Some(top) = enclosing.last_mut() {
                *top = Some(format!("inside a menu that {}", t));
            }
            continue;
        } else if is_config_line(line, sym) {
            out.extend(enclosing.iter().flatten().cloned());
            while let Some(next) = lines.peek() {
                let n = next.trim();
                if n.starts_with("config ")
                    || n.starts_with("menuconfig ")
                    || n.starts_with("endmenu")
                    || n.starts_with("endif")
                    || n.starts_with("if ")
                    || n.starts_with("menu ")
                    || n.starts_with("source ")
                    || n.starts_with("choice")
                    || n.starts_with("comment ")
                {
                    break;
                }
                lines.next();
                if let Some(d) = n.strip_prefix("depends on ") {
                    // Kconfig continues an expression onto the next line with a trailing backslash.
                    let mut expr = d.trim().to_string();
                    while expr.ends_with('\\') {
                        expr.pop();
                        match lines.next() {
                            Some(more) => expr = format!("{} {}", expr.trim_end(), more.trim()),
                            None => break,
                        }
                    }
                    out.push(format!("depends on {}", expr.trim()));
                }
            }
        }
        menu_depends_pending = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(name: &str, text: &str) -> Fragment {
        Fragment {
            name: name.into(),
            text: text.into(),
        }
    }

    #[test]
    fn parses_set_and_unset_options() {
        let r = requests(
            "# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\nCONFIG_D=0x10\n",
        );
        assert_eq!(
            r,
            [("A", "y"), ("B", "n"), ("C", "\"x y\""), ("D", "0x10")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn verify_lists_every_unmet_request_with_its_fragment() {
        let frags = [
            frag(
                "base.config",
                "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n",
            ),
            frag("extra.config", "CONFIG_B=m\nCONFIG_D=y\n"),
        ];
        let cfg = parse_dot_config("CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=y\n");
        let missing = verify(&frags, &cfg);
        let summary: Vec<_> = missing
            .iter()
            .map(|m| {
                (
                    m.symbol.as_str(),
                    m.wanted.as_str(),
                    m.got.as_str(),
                    m.fragment.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("B", "m", "y", "extra.config"),
                ("C", "n", "y", "base.config"),
                ("D", "y", "n", "extra.config")
            ]
        );
    }

    #[test]
    fn satisfied_fragments_give_nothing() {
        let frags = [frag("f", "CONFIG_A=y\n# CONFIG_B is not set\n")];
        assert!(verify(&frags, &parse_dot_config("CONFIG_A=y\n")).is_empty());
    }

    #[test]
    fn dependencies_include_depends_on_and_enclosing_if() {
        let cont = "config KCOV\n\tbool \"x\"\n\tdepends on ARCH_HAS_KCOV\n\tdepends on A || \\\n\t\t   B\n";
        assert_eq!(
            dependencies_in(cont, "KCOV"),
            ["depends on ARCH_HAS_KCOV", "depends on A || B"]
        );
        let kconfig = "menuconfig RUNTIME_TESTING_MENU\n\tbool \"x\"\n\thelp\n\t  if unsure, say N\n\nif DEBUG_INFO\nconfig X\n\tbool\nendif # DEBUG_INFO\n\nif RUNTIME_TESTING_MENU\n\nconfig OTHER\n\tdepends on FOO\n\nconfig LIVEUPDATE_TEST\n\tbool \"Live Update Kernel Test\"\n\tdefault n\n\tdepends on LIVEUPDATE\n\thelp\n\t  text\n\nendif\n";
        assert_eq!(
            dependencies_in(kconfig, "LIVEUPDATE_TEST"),
            ["inside `if RUNTIME_TESTING_MENU`", "depends on LIVEUPDATE"]
        );
        assert!(dependencies_in(kconfig, "NOPE").is_empty());
    }

    #[test]
    fn merge_keeps_order_and_names() {
        let m = merge(&[frag("a", "CONFIG_A=y"), frag("b", "CONFIG_A=n\n")]);
        assert_eq!(m, "# --- a ---\nCONFIG_A=y\n# --- b ---\nCONFIG_A=n\n");
    }
}
