//! The agent as a systemd service (the systemd image): the system's state through systemctl and
//! journalctl, units started and stopped for the host, and a kexec through `systemctl kexec`, so
//! that systemd's own shutdown path is what serialises the fd stores into LUO.

use luo_protocol::{AgentError, ErrorKind, Reply, SystemFacts, UnitAction, UnitState};
use std::process::Command;

/// Whether the agent runs under a service manager rather than as PID 1.
pub fn under_systemd() -> bool {
    std::process::id() != 1
}

/// Output of a command, or what went wrong running it.
fn run(program: &str, args: &[&str]) -> Result<String, AgentError> {
    let shown = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| AgentError::new(ErrorKind::Syscall, &shown, e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(AgentError::new(
            ErrorKind::Mismatch,
            &shown,
            format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                stdout.trim()
            ),
        ))
    }
}

/// Waits for start-up to finish and reports the system as systemd sees it.
pub fn facts() -> SystemFacts {
    // Exits non-zero for `degraded`, which is still an answer.
    let state = Command::new("systemctl")
        .args(["is-system-running", "--wait"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("systemctl: {e}"));
    let version = run("systemctl", &["--version"])
        .ok()
        .and_then(|v| v.lines().next().map(str::to_string))
        .unwrap_or_default();
    let failed = run(
        "systemctl",
        &["list-units", "--failed", "--plain", "--no-legend"],
    )
    .unwrap_or_default()
    .lines()
    .filter_map(|l| l.split_whitespace().next().map(str::to_string))
    .collect();
    SystemFacts {
        version,
        state,
        failed,
        units: scenario_units()
            .iter()
            .filter_map(|u| unit_state(u).ok())
            .collect(),
        luo_journal: luo_journal(),
    }
}

/// The units the first stage installed from the share.
fn scenario_units() -> Vec<String> {
    let list = std::fs::read_to_string(crate::rootfs::SCENARIO_UNITS_PATH).unwrap_or_default();
    let mut v: Vec<String> = list.lines().map(str::to_string).collect();
    v.sort();
    v
}

const PROPERTIES: &str = "ActiveState,SubState,Result,NFileDescriptorStore,ExecMainStatus";

pub fn unit_state(unit: &str) -> Result<UnitState, AgentError> {
    let text = run("systemctl", &["show", unit, "-p", PROPERTIES])?;
    Ok(parse_show(unit, &text))
}

/// `systemctl show -p ...` output (`Key=value` lines) as a [`UnitState`].
pub fn parse_show(unit: &str, text: &str) -> UnitState {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
            .to_string()
    };
    UnitState {
        unit: unit.to_string(),
        active: get("ActiveState"),
        sub: get("SubState"),
        result: get("Result"),
        fd_store: get("NFileDescriptorStore").parse().unwrap_or(0),
        exit_status: get("ExecMainStatus").parse().unwrap_or(0),
    }
}

/// `systemctl <verb> UNIT` (which waits for the job), then the unit's state. A failed start is
/// an answer too: the state says how it failed.
pub fn unit(unit: &str, action: UnitAction) -> Result<Reply, AgentError> {
    let ran = action.verb().map(|verb| run("systemctl", &[verb, unit]));
    let state = unit_state(unit)?;
    match ran {
        Some(Err(e)) if state.active != "failed" => Err(e),
        _ => Ok(Reply::Unit(state)),
    }
}

/// This boot's journal, of one unit if named, one message per line.
pub fn journal(unit: Option<&str>) -> Result<Reply, AgentError> {
    let mut args = vec!["-b", "-o", "cat", "--no-pager", "-q"];
    if let Some(u) = unit {
        args.extend(["-u", u]);
    }
    let text = run("journalctl", &args)?;
    Ok(Reply::Log {
        lines: text.lines().map(str::to_string).collect(),
    })
}

/// What systemd itself logged about LUO this boot, as `identifier: message`.
fn luo_journal() -> Vec<String> {
    let Ok(text) = run("journalctl", &["-b", "-o", "json", "--no-pager", "-q"]) else {
        return vec![];
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let who = v.get("SYSLOG_IDENTIFIER")?.as_str()?.to_string();
            let msg = v.get("MESSAGE")?.as_str()?.to_string();
            // Job lines ("Starting x.service - <its description>") quote the units' own words.
            let job = v.get("JOB_TYPE").is_some();
            (who.starts_with("systemd") && !job && msg.contains("LUO"))
                .then(|| format!("{who}: {msg}"))
        })
        .collect()
}

/// `systemctl kexec`: systemd stops every service (this one too), hands the fd stores to
/// systemd-shutdown, which preserves them in LUO and kexecs into the kernel loaded before. Returns
/// only if systemctl refused.
pub fn kexec() -> AgentError {
    let _ = std::fs::write("/proc/sys/kernel/printk", "7");
    let _ = std::fs::write("/dev/kmsg", format!("{}\n", luo_protocol::KEXEC_MARK));
    match run("systemctl", &["kexec"]) {
        Ok(_) => loop {
            // systemd stops the agent from here on.
            std::thread::sleep(std::time::Duration::from_secs(60));
        },
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_show_output_becomes_a_unit_state() {
        let text = "ActiveState=inactive\nSubState=dead\nResult=success\n\
                    NFileDescriptorStore=2\nExecMainStatus=0\n";
        let s = parse_show("a.service", text);
        assert_eq!(
            (s.active.as_str(), s.sub.as_str(), s.result.as_str()),
            ("inactive", "dead", "success")
        );
        assert_eq!((s.fd_store, s.exit_status), (2, 0));
        let missing = parse_show("b.service", "");
        assert_eq!((missing.fd_store, missing.active.as_str()), (0, ""));
    }
}
