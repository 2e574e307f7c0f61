//! Configuration fragments: what they ask for, and whether the final .config gives it.

use std::collections::BTreeMap;
use std::path::Path;

/// A named fragment (`base.config`) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub name: String,
    pub text: String,
}

impl Fragment {
    /// Whether this fragment applies to a tree of `version` (major, minor). A fragment whose first
    /// line is `# luo-harness: linux < 7.3` (or `<=`, `>=`, `>`, `==`) applies only to those
    /// versions: that is how a fragment asks for what an older kernel calls an option.
    pub fn applies_to(&self, version: (u32, u32)) -> bool {
        let Some(cond) = self
            .text
            .lines()
            .next()
            .and_then(|l| l.trim().strip_prefix("# luo-harness: linux "))
        else {
            return true;
        };
        let mut w = cond.split_whitespace();
        let (Some(op), Some(v)) = (w.next(), w.next()) else {
            return true;
        };
        let Some(want) = v
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        else {
            return true;
        };
        match op {
            "<" => version < want,
            "<=" => version <= want,
            ">" => version > want,
            ">=" => version >= want,
            "==" => version == want,
            _ => true,
        }
    }
}

/// The fragment that makes a kernel boot the systemd image: left out where there is no such image
/// (its network, 9p and overlayfs options cost an arm64 build about a fifth of its time).
const SYSTEMD_FRAGMENT: &str = "systemd.config";

/// The fragments shipped in kernels/fragments/, in name order, then the architecture's own
/// (fragments/aarch64/ for arm64), which come last so that they can say what of the shared ones
/// the architecture does not have.
pub fn builtin_fragments(arch: crate::Arch) -> Vec<Fragment> {
    let own: &[(&str, &str)] = match arch {
        crate::Arch::X86_64 => &[],
        crate::Arch::Aarch64 => crate::embedded::AARCH64_FRAGMENTS,
    };
    crate::embedded::FRAGMENTS
        .iter()
        .filter(|(n, _)| *n != SYSTEMD_FRAGMENT || arch.has_systemd_image())
        .map(|(n, t)| Fragment {
            name: n.to_string(),
            text: t.to_string(),
        })
        .chain(own.iter().map(|(n, t)| Fragment {
            name: format!("{}/{n}", arch.name()),
            text: t.to_string(),
        }))
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
    /// The symbol exists but has no prompt in this tree: only these options can turn it on.
    pub selected_by: Option<Vec<String>>,
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
        if let Some(by) = &self.selected_by {
            if by.is_empty() {
                write!(f, "; it has no prompt in this tree and nothing selects it")?;
            } else {
                write!(
                    f,
                    "; it has no prompt in this tree (a hidden option), selected by {}: ask for {} instead",
                    by.join(", "),
                    by.iter()
                        .map(|b| format!("CONFIG_{b}=y"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                )?;
            }
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
                selected_by: None,
            })
        })
        .collect()
}

/// Fills `depends` of each missing option from the tree's Kconfig files, each condition with the
/// values its symbols have in `final_config`: `depends on !A || B (A=y, B=n)` says what forbids it.
pub fn explain(
    missing: &mut [MissingOption],
    tree: &Path,
    final_config: &BTreeMap<String, String>,
) {
    if missing.is_empty() {
        return;
    }
    let mut files = Vec::new();
    collect_kconfig_files(tree, &mut files);
    let texts: Vec<(String, String)> = files
        .iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(tree).unwrap_or(f).display().to_string();
            Some((rel, std::fs::read_to_string(f).ok()?))
        })
        .collect();
    for m in missing.iter_mut() {
        let (mut defined, mut prompted) = (false, false);
        for (rel, text) in &texts {
            let deps = dependencies_in(text, &m.symbol);
            if text.lines().any(|l| is_config_line(l, &m.symbol)) {
                defined = true;
                prompted |= has_prompt(text, &m.symbol);
            }
            m.depends.extend(
                deps.into_iter()
                    .map(|d| format!("{} ({rel})", with_values(&d, final_config))),
            );
        }
        if !defined && !texts.is_empty() {
            m.depends
                .push("no such symbol in this tree's Kconfig files".into());
        } else if defined && !prompted && m.wanted != "n" {
            let mut by: Vec<String> = texts
                .iter()
                .flat_map(|(_, t)| selectors(t, &m.symbol))
                .collect();
            by.sort();
            by.dedup();
            m.selected_by = Some(by);
        }
    }
}

/// A condition with the values of its symbols: `depends on !A || B` -> `depends on !A || B [A=y,
/// B=n]` (`n` for a symbol the configuration does not set). Symbols are the words in capitals.
fn with_values(condition: &str, config: &BTreeMap<String, String>) -> String {
    let mut symbols: Vec<&str> = condition
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            w.len() > 1
                && w.chars().any(|c| c.is_ascii_uppercase())
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    symbols.dedup();
    if symbols.is_empty() {
        return condition.to_string();
    }
    let values: Vec<String> = symbols
        .iter()
        .map(|s| format!("{s}={}", config.get(*s).map_or("n", String::as_str)))
        .collect();
    format!("{condition} [{}]", values.join(", "))
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

/// The lines of each `config SYM` block in one Kconfig file (help text included).
fn blocks<'a>(text: &'a str, sym: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if is_config_line(line, sym) {
            let mut block = Vec::new();
            while let Some(next) = lines.peek() {
                let starts = next.split_whitespace().next().unwrap_or("");
                if !next.starts_with(char::is_whitespace)
                    && matches!(
                        starts,
                        "config"
                            | "menuconfig"
                            | "endmenu"
                            | "endif"
                            | "if"
                            | "menu"
                            | "source"
                            | "choice"
                            | "endchoice"
                            | "comment"
                    )
                {
                    break;
                }
                block.push(lines.next().unwrap());
            }
            out.push(block);
        }
    }
    out
}

/// Whether `config SYM` in this file has a prompt (a type with a quoted text, or `prompt`), so a
/// configuration can ask for it.
fn has_prompt(text: &str, sym: &str) -> bool {
    blocks(text, sym).iter().flatten().any(|l| {
        let mut w = l.trim().splitn(2, char::is_whitespace);
        let kw = w.next().unwrap_or("");
        let rest = w.next().unwrap_or("").trim();
        (matches!(kw, "bool" | "tristate" | "string" | "int" | "hex") && rest.starts_with('"'))
            || kw == "prompt"
    })
}

/// The options whose `config` blocks in this file `select SYM`.
fn selectors(text: &str, sym: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<&str> = None;
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next()) {
            (Some("config" | "menuconfig"), Some(name))
                if !line.starts_with(char::is_whitespace) =>
            {
                current = Some(name)
            }
            (Some("select"), Some(s)) if s == sym => {
                if let Some(c) = current {
                    out.push(c.to_string());
                }
            }
            _ => {}
        }
    }
    out
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
    fn a_hidden_symbol_names_what_selects_it() {
        let init = "config SYSCTL\n\tbool\n\nconfig OTHER\n\tbool \"x\"\n";
        let proc = "config PROC_SYSCTL\n\tbool \"Sysctl support (/proc/sys)\" if EXPERT\n\tdepends on PROC_FS\n\tselect SYSCTL\n\tdefault y\n";
        assert!(
            !has_prompt(init, "SYSCTL")
                && has_prompt(proc, "PROC_SYSCTL")
                && has_prompt(init, "OTHER")
        );
        assert_eq!(selectors(proc, "SYSCTL"), ["PROC_SYSCTL"]);
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("fs/proc")).unwrap();
        std::fs::write(d.path().join("Kconfig"), init).unwrap();
        std::fs::write(d.path().join("fs/proc/Kconfig"), proc).unwrap();
        let mut missing = verify(
            &[frag("lean.config", "CONFIG_SYSCTL=y\nCONFIG_NOPE=y\n")],
            &parse_dot_config(""),
        );
        explain(
            &mut missing,
            d.path(),
            &parse_dot_config("CONFIG_PROC_FS=y\n"),
        );
        let text: Vec<String> = missing.iter().map(|m| m.to_string()).collect();
        assert!(text[0].contains("no such symbol"), "{}", text[0]);
        assert!(
            text[1].contains("no prompt in this tree (a hidden option), selected by PROC_SYSCTL: ask for CONFIG_PROC_SYSCTL=y instead"),
            "{}",
            text[1]
        );
    }

    #[test]
    fn a_condition_says_what_its_symbols_are() {
        let cfg = parse_dot_config("CONFIG_VMAP_STACK=y\n# CONFIG_KASAN_VMALLOC is not set\n");
        assert_eq!(
            with_values("depends on !VMAP_STACK || KASAN_VMALLOC", &cfg),
            "depends on !VMAP_STACK || KASAN_VMALLOC [VMAP_STACK=y, KASAN_VMALLOC=n]"
        );
        assert_eq!(
            with_values("depends on 64BIT", &cfg),
            "depends on 64BIT [64BIT=n]"
        );
        assert_eq!(
            with_values("inside `if NET`", &cfg),
            "inside `if NET` [NET=n]"
        );
        assert_eq!(
            with_values("depends on $(cc-option,-gz)", &cfg),
            "depends on $(cc-option,-gz)"
        );
    }

    #[test]
    fn fragments_can_apply_to_some_versions_only() {
        let old = frag(
            "compat-7.2.config",
            "# luo-harness: linux < 7.3\nCONFIG_PROC_SYSCTL=y\n",
        );
        assert!(old.applies_to((7, 2)) && old.applies_to((6, 19)) && !old.applies_to((7, 3)));
        assert!(frag("lean.config", "# a comment\nCONFIG_X=y\n").applies_to((7, 3)));
        assert!(frag("new.config", "# luo-harness: linux >= 7.3\n").applies_to((8, 0)));
    }

    #[test]
    fn merge_keeps_order_and_names() {
        let m = merge(&[frag("a", "CONFIG_A=y"), frag("b", "CONFIG_A=n\n")]);
        assert_eq!(m, "# --- a ---\nCONFIG_A=y\n# --- b ---\nCONFIG_A=n\n");
    }

    #[test]
    fn the_systemd_fragment_goes_only_where_the_systemd_image_is() {
        let names = |arch| -> Vec<String> {
            builtin_fragments(arch)
                .into_iter()
                .map(|f| f.name)
                .collect()
        };
        let x86 = names(crate::Arch::X86_64);
        let arm = names(crate::Arch::Aarch64);
        assert!(x86.iter().any(|n| n == SYSTEMD_FRAGMENT));
        assert!(!arm.iter().any(|n| n == SYSTEMD_FRAGMENT));
        // arm64 has the other shared fragments, in the same order, then its own.
        let shared: Vec<_> = x86.iter().filter(|n| *n != SYSTEMD_FRAGMENT).collect();
        assert_eq!(arm.iter().take(shared.len()).collect::<Vec<_>>(), shared);
        assert_eq!(arm.last().map(String::as_str), Some("aarch64/virt.config"));
    }
}
