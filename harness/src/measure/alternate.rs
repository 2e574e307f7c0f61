//! Runs measurements on several kernels alternately: repetitions outermost, session counts, then
//! the kernels, whose order turns by one each repetition, so the host's drift (these machines move
//! by 30% within an hour) and any first-or-second effect fall on every kernel alike.

use super::MeasureError;
use super::sample::{Sample, Workload, take};
use crate::events::{Event, EventSink};
use crate::guest::Guest;
use crate::plan::Plan;
use std::time::Duration;

/// A kernel to measure and what its samples are labelled.
pub struct Side<'a> {
    pub label: String,
    pub plan: &'a Plan,
}

/// `runs` samples of every side at every session count, one VM each; every VM also preserves
/// `files` memfds.
pub async fn alternate(
    sides: &[Side<'_>],
    sessions: &[u32],
    files: u32,
    runs: u32,
    task: &str,
    sink: &dyn EventSink,
) -> Result<Vec<Sample>, MeasureError> {
    let total = (sides.len() * sessions.len() * runs as usize) as u64;
    let mut samples = Vec::new();
    for rep in 0..runs {
        for &n in sessions {
            for i in order(sides.len(), rep) {
                let side = &sides[i];
                sink.emit(Event::Progress {
                    task: task.into(),
                    done: samples.len() as u64,
                    total,
                    what: format!("{} N={n} run {}", side.label, rep + 1),
                });
                let w = Workload { sessions: n, files };
                samples.push(one(side, w, rep).await?);
            }
        }
    }
    sink.emit(Event::Progress {
        task: task.into(),
        done: total,
        total,
        what: String::new(),
    });
    Ok(samples)
}

#[tracing::instrument(name = "measure", skip(side), fields(kernel = %side.label))]
async fn one(side: &Side<'_>, w: Workload, rep: u32) -> Result<Sample, MeasureError> {
    let mut cfg = side.plan.vm_config(&format!("measure-{}", side.label));
    cfg.timeouts.request = Duration::from_secs(120);
    let mut guest = Guest::boot(cfg).await?;
    let s = take(&mut guest, &side.label, w, rep).await?;
    guest.power_off().await?;
    Ok(s)
}

/// The order of the kernels in a repetition.
pub fn order(sides: usize, rep: u32) -> Vec<usize> {
    (0..sides).map(|i| (i + rep as usize) % sides).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_kernel_goes_first_in_turn() {
        assert_eq!(super::order(2, 0), [0, 1]);
        assert_eq!(super::order(2, 1), [1, 0]);
        assert_eq!(super::order(3, 2), [2, 0, 1]);
    }
}
