//! The one channel from the runner to the user interface. The runner never prints; it emits
//! [`Output`]s, and a [`Reporter`] decides how they look (progress bars on a terminal, plain lines
//! in CI logs, nothing in tests).

use luo_kernels::BuildEvent;
use std::sync::Mutex;

#[derive(Debug, Clone)]
pub enum Output {
    Kernel(BuildEvent),
    AccelProbe { kvm_works: bool, detail: String },
    AccelChosen { accel: String, cached: bool },
    Note(String),
}

pub trait Reporter: Send + Sync {
    fn emit(&self, o: Output);
}

/// Emits nothing (library use, tests).
pub struct Silent;
impl Reporter for Silent {
    fn emit(&self, _: Output) {}
}

/// Progress bars when stderr is a terminal, one line per milestone otherwise.
pub struct Terminal {
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl Default for Terminal {
    fn default() -> Self {
        Terminal {
            bar: Mutex::new(None),
        }
    }
}

impl Terminal {
    fn bar(&self, len: u64) -> indicatif::ProgressBar {
        let mut slot = self.bar.lock().unwrap();
        slot.get_or_insert_with(|| {
            let b = indicatif::ProgressBar::new(len);
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} building kernel [{elapsed_precise}] {bar:30} {pos}/~{len} {wide_msg}")
                    .unwrap(),
            );
            b
        })
        .clone()
    }

    fn finish_bar(&self) {
        if let Some(b) = self.bar.lock().unwrap().take() {
            b.finish_and_clear();
        }
    }
}

impl Reporter for Terminal {
    fn emit(&self, o: Output) {
        match o {
            Output::Kernel(BuildEvent::Step {
                done,
                estimate,
                what,
            }) => {
                let b = self.bar(estimate);
                b.set_length(estimate.max(done));
                b.set_position(done);
                b.set_message(what);
            }
            Output::Kernel(BuildEvent::CacheHit { key }) => eprintln!("kernel: cached ({key})"),
            Output::Kernel(BuildEvent::Waiting { lock }) => {
                tracing::debug!(lock, "taking the build lock")
            }
            Output::Kernel(BuildEvent::FetchingSource) => eprintln!("kernel: preparing the source"),
            Output::Kernel(BuildEvent::Configuring { build_dir }) => {
                eprintln!("kernel: configuring in {}", build_dir.display())
            }
            Output::Kernel(BuildEvent::Published { key, seconds }) => {
                self.finish_bar();
                eprintln!("kernel: built in {seconds:.1} s ({key})");
            }
            Output::AccelProbe { kvm_works, detail } => {
                eprintln!(
                    "accel: KVM {} ({detail})",
                    if kvm_works {
                        "works"
                    } else {
                        "does not run guests here; using TCG"
                    }
                )
            }
            Output::AccelChosen { accel, cached } => tracing::info!(accel, cached, "accelerator"),
            Output::Note(s) => eprintln!("{s}"),
        }
    }
}
