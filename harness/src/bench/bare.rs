//! The same VM without the guest layer: the VM layer starts virtiofsd and QEMU, and the hello is
//! read raw from the agent's connection. `Guest::boot` minus this is what the guest layer costs.

use super::BenchError;
use crate::vm::{Vm, VmConfig};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Boots once and returns the time from nothing (no sockets, no processes) to the hello line.
/// Powers the guest off afterwards (not timed).
pub async fn boot_to_hello(cfg: &VmConfig) -> Result<Duration, BenchError> {
    let t0 = Instant::now();
    let mut vm = Vm::start(cfg.clone()).await?;
    let agent = vm
        .take_agent()
        .expect("a fresh VM has its agent connection");
    let (r, mut w) = agent.into_split();
    let deadline = cfg.timeouts.boot;
    let mut hello = String::new();
    tokio::time::timeout(deadline, BufReader::new(r).read_line(&mut hello))
        .await
        .map_err(|_| BenchError::Flow(format!("bare VM: no hello within {deadline:?}")))?
        .map_err(|e| BenchError::Flow(format!("bare VM: {e}")))?;
    let took = t0.elapsed();
    let off = luo_protocol::to_line(&luo_protocol::Envelope {
        id: 1,
        request: luo_protocol::Request::PowerOff,
    });
    w.write_all(off.as_bytes())
        .await
        .map_err(|e| BenchError::Flow(format!("bare VM: {e}")))?;
    let _ = vm.ended_within(deadline).await;
    Ok(took)
}
