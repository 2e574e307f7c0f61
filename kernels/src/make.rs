//! Running kbuild out of tree: the command line, the build log, progress from make's output, and
//! ccache for incremental builds.

use crate::Arch;
use crate::cache::Cache;
use crate::error::{IoContext, KernelError};
use crate::hosttools;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One `make O=` invocation context: the staged tree, the build directory and its log.
pub(crate) struct Make {
    pub tree: PathBuf,
    pub build_dir: PathBuf,
    env: Vec<(String, String)>,
    log: std::fs::File,
    pub log_path: PathBuf,
    arch: Arch,
}

impl Make {
    pub fn new(
        cache: &Cache,
        arch: Arch,
        tree: &Path,
        build_dir: &Path,
    ) -> Result<Make, KernelError> {
        std::fs::create_dir_all(build_dir).at(build_dir)?;
        let log_path = build_dir.join("build.log");
        let log = std::fs::File::create(&log_path).at(&log_path)?;
        Ok(Make {
            tree: tree.to_path_buf(),
            build_dir: build_dir.to_path_buf(),
            env: ccache_env(cache)?,
            log,
            log_path,
            arch,
        })
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("make");
        c.current_dir(&self.tree)
            .args(self.arch.make_args())
            .arg(format!("O={}", self.build_dir.display()))
            .args(args)
            .envs(self.env.iter().cloned());
        c
    }

    /// Runs `make args`, logged; `on_line` sees every line of output.
    pub fn run(&mut self, args: &[&str], on_line: &mut dyn FnMut(&str)) -> Result<(), KernelError> {
        let cmd = self.command(args);
        run_logged(cmd, &mut self.log, &self.log_path, on_line)
    }

    pub fn flush(&mut self) -> Result<(), KernelError> {
        self.log.flush().at(&self.log_path)
    }
}

/// ccache for every build, in direct mode with preprocessor mode behind it. A variant's patch, or
/// a second source of the same family, makes make recompile everything that includes a touched
/// file although most of it did not change. Direct mode keys an object by the bytes of its source
/// and headers: a hit costs no preprocessor run, as long as the headers are the bytes a build saw
/// before (magic-unique re-patches magic.h to magic-shared's bytes). Where they are new, ccache
/// falls back to keying by the preprocessed output, which leaves out `#define`s and blank lines:
/// magic-shared's new `LUO_SESSION_MAGIC` line in include/uapi/linux/magic.h changes no file's
/// output except the ones that use it, so all the others are hits. Depend mode has no such
/// fallback and missed on all of them. The stock build has to go through ccache too, or there is
/// nothing to hit; `CCACHE_NOCPP2` compiles the output ccache already preprocessed instead of
/// preprocessing twice (the first attempt, without it, cost a cold build 454 s instead of 300).
/// Measured by ci/bench-kernel (2026-12-03, one run each): depend mode cold 250.7 s, variants
/// 132.9 s (magic-shared 105.5, magic-unique 13.8); preprocessor mode only 264.5 s, 105.9 s (50.8,
/// 43.7); direct + preprocessor 266.6 s, 79.8 s (52.3, 17.7). Masquerade mode (a `gcc` link first
/// in PATH) keeps the compiler command kbuild records `gcc` either way. ccache only decides
/// whether gcc runs, so it is not part of the key.
fn ccache_env(cache: &Cache) -> Result<Vec<(String, String)>, KernelError> {
    let Some(ccache) = hosttools::which("ccache") else {
        return Ok(vec![]);
    };
    let bin = cache.root().join("ccache-bin");
    std::fs::create_dir_all(&bin).at(&bin)?;
    // Every architecture's compiler: kbuild calls the cross compiler by its CROSS_COMPILE name.
    for arch in crate::arch::ALL {
        let gcc = bin.join(arch.gcc());
        if std::fs::read_link(&gcc).ok().as_deref() != Some(ccache.as_path()) {
            let _ = std::fs::remove_file(&gcc);
            std::os::unix::fs::symlink(&ccache, &gcc).at(&gcc)?;
        }
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Ok(vec![
        ("PATH".into(), path),
        (
            "CCACHE_DIR".into(),
            cache.root().join("ccache").display().to_string(),
        ),
        ("CCACHE_MAXSIZE".into(), "4G".into()),
        ("CCACHE_NOCPP2".into(), "1".into()),
    ])
}

/// `  CC      kernel/liveupdate/luo_session.o` -> Some("CC kernel/liveupdate/luo_session.o").
pub(crate) fn build_step(line: &str) -> Option<String> {
    let mut w = line.split_whitespace();
    let tag = w.next()?;
    let what = w.next()?;
    let is_tag = line.starts_with("  ")
        && tag.len() <= 8
        && tag.chars().all(|c| {
            c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '[' || c == ']'
        });
    is_tag.then(|| format!("{tag} {what}"))
}

/// Runs a command with stdout and stderr merged into the log, calling `on_line` for each line. On
/// failure the error carries the log's last 40 lines.
pub(crate) fn run_logged(
    mut cmd: Command,
    log: &mut std::fs::File,
    log_path: &Path,
    on_line: &mut dyn FnMut(&str),
) -> Result<(), KernelError> {
    let (reader, writer) = std::io::pipe().at(log_path)?;
    let writer2 = writer.try_clone().at(log_path)?;
    let _ = writeln!(log, "$ {cmd:?}");
    tracing::debug!(?cmd, "running");
    let mut child = cmd
        .stdout(writer)
        .stderr(writer2)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| KernelError::Command {
            command: format!("{cmd:?}"),
            status: e.to_string(),
            output: String::new(),
        })?;
    drop(cmd); // closes our copies of the pipe's write end, so EOF arrives when make exits
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(log, "{line}");
        on_line(&line);
    }
    let status = child.wait().at(log_path)?;
    if status.success() {
        return Ok(());
    }
    let _ = log.flush();
    let text = std::fs::read_to_string(log_path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    Err(KernelError::BuildFailed {
        log: log_path.to_path_buf(),
        tail,
    })
}

#[cfg(test)]
mod tests {
    use super::build_step;
    #[test]
    fn recognises_build_steps_only() {
        assert_eq!(
            build_step("  CC      kernel/liveupdate/luo_session.o").as_deref(),
            Some("CC kernel/liveupdate/luo_session.o")
        );
        assert_eq!(build_step("  LD [M]  foo.ko").as_deref(), Some("LD [M]"));
        assert_eq!(build_step("make[1]: Entering directory '/x'"), None);
        assert_eq!(build_step("kernel/x.c:1:2: warning: unused"), None);
    }
}
