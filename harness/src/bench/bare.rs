//! The same VM without the runner: virtiofsd and QEMU started directly with the runner's own
//! command line, timed to the agent's hello. `Vm::boot` minus this is what the runner costs.

use crate::vm::{VmConfig, process::Child, virtiofsd};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

/// Boots once and returns the time from nothing (no sockets, no processes) to the hello line.
/// Powers the guest off afterwards (not timed).
pub async fn boot_to_hello(cfg: &VmConfig) -> Result<Duration, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let share = dir.path().join("share");
    std::fs::create_dir(&share).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let spec = cfg.qemu_spec(dir.path()).map_err(|e| e.to_string())?;
    let agent = UnixListener::bind(&spec.agent_socket).map_err(|e| e.to_string())?;
    let qmp = UnixListener::bind(&spec.qmp_socket).map_err(|e| e.to_string())?;
    let (vfs_sock, _) = spec
        .virtiofs
        .as_ref()
        .ok_or("the round trip needs virtiofs")?;
    let vfs = std::os::unix::net::UnixListener::bind(vfs_sock).map_err(|e| e.to_string())?;
    let _virtiofsd = virtiofsd::spawn(&vfs, &share, &dir.path().join("virtiofsd.log"))
        .map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(&spec.binary);
    cmd.args(spec.args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut qemu = Child::spawn(cmd, "qemu").map_err(|e| e.to_string())?;
    let deadline = cfg.boot_timeout;
    let run = async {
        let ((agent, _), _qmp) = tokio::try_join!(agent.accept(), qmp.accept())?;
        let (r, mut w) = agent.into_split();
        let mut hello = String::new();
        BufReader::new(r).read_line(&mut hello).await?;
        let took = t0.elapsed();
        let off = luo_protocol::to_line(&luo_protocol::Envelope {
            id: 1,
            request: luo_protocol::Request::PowerOff,
        });
        w.write_all(off.as_bytes()).await?;
        Ok::<_, std::io::Error>((took, _qmp))
    };
    let (took, _qmp) = tokio::time::timeout(deadline, run)
        .await
        .map_err(|_| format!("bare QEMU: no hello within {deadline:?}"))?
        .map_err(|e| format!("bare QEMU: {e}"))?;
    let _ = tokio::time::timeout(deadline, qemu.wait()).await;
    Ok(took)
}
