//! How a guest starts: from a saved VM that booted to its agent's hello (made once per key by a
//! cold boot, vm/saved.rs), or by booting its kernel when the VM cannot be restored or was asked
//! not to be. A restored guest is asked to resume and answers with the hello a boot would send, so
//! what follows is the same either way.

use super::{Guest, GuestError};
use crate::vm::saved::{self, SavedBoots};
use crate::vm::{Vm, VmConfig, VmError};
use std::path::PathBuf;

/// How the first boot of a guest came about, for its boot record and the run's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The kernel booted; why, when the VM could have been restored.
    Cold { reason: &'static str },
    /// Restored from the saved state under this key.
    Restored { key: String },
}

impl std::fmt::Display for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Start::Cold { reason } => write!(f, "cold ({reason})"),
            Start::Restored { key } => write!(f, "restored {key}"),
        }
    }
}

pub(super) async fn boot(cfg: VmConfig) -> Result<Guest, GuestError> {
    if let Some(reason) = cfg.cold_boot_reason() {
        tracing::debug!(reason, "cold boot");
        return cold(cfg, reason).await;
    }
    let saved = SavedBoots::from_env();
    let (key, state) = match saved_state(&saved, &cfg).await {
        Ok(found) => found,
        // Saving is an optimisation: a failure to save is worth a warning, never a failed run.
        Err(SaveFailure::Saving(e)) => {
            tracing::warn!(error = %e, "could not save a booted VM; booting cold");
            return cold(cfg, "the booted VM could not be saved").await;
        }
        Err(SaveFailure::Boot(e)) => return Err(e),
    };
    let t0 = std::time::Instant::now();
    match Vm::restore(cfg.clone(), &state).await {
        Ok(vm) => {
            tracing::debug!(%key, ms = t0.elapsed().as_millis() as u64, "restored a booted VM");
            Guest::resume(vm, key).await
        }
        Err(e @ VmError::Restore { .. }) => {
            // A state this QEMU will not load (damaged, or made by a QEMU the key did not tell
            // apart): drop it, so the next start saves a good one, and boot.
            tracing::warn!(error = %e, "saved VM not loaded; booting cold");
            saved.discard(&key);
            cold(cfg, "the saved VM did not load").await
        }
        Err(e) => Err(e.into()),
    }
}

async fn cold(cfg: VmConfig, reason: &'static str) -> Result<Guest, GuestError> {
    let mut guest = Guest::connect(Vm::start(cfg).await?).await?;
    guest.start = Start::Cold { reason };
    Ok(guest)
}

enum SaveFailure {
    /// The cold boot that was to be saved failed: that is the run's failure, as it would be
    /// without saved VMs.
    Boot(GuestError),
    Saving(String),
}

fn saving(e: impl std::fmt::Display) -> SaveFailure {
    SaveFailure::Saving(e.to_string())
}

/// The saved state for `cfg` and its key: published already, or made now by booting the VM to
/// its hello and saving it (one process per key at a time; the others wait and then find it).
async fn saved_state(saved: &SavedBoots, cfg: &VmConfig) -> Result<(String, PathBuf), SaveFailure> {
    let key = saved::key_of(cfg).map_err(saving)?;
    if let Some(state) = saved.lookup(&key) {
        return Ok((key, state));
    }
    let _lock = saved.lock(&key).map_err(saving)?;
    if let Some(state) = saved.lookup(&key) {
        return Ok((key, state));
    }
    let mut maker = cfg.clone();
    maker.name = format!("{}-save", cfg.name);
    let guest = Guest::connect(
        Vm::start(maker)
            .await
            .map_err(|e| SaveFailure::Boot(e.into()))?,
    )
    .await
    .map_err(SaveFailure::Boot)?;
    let temp = saved.temp_path(&key).map_err(saving)?;
    let t0 = std::time::Instant::now();
    let result = guest.vm().save(&temp).await;
    drop(guest);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(saving(e));
    }
    let state = saved.publish(&temp, &key).map_err(saving)?;
    tracing::info!(%key, ms = t0.elapsed().as_millis() as u64, "saved a booted VM");
    Ok((key, state))
}
