//! How the library's events look on stderr: progress bars on a terminal, a line per milestone in a
//! CI log. What a command prints as its result goes to stdout, through a renderer or the command.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use luo_harness::events::{Event, EventSink};
use luo_kernels::BuildEvent;
use std::io::IsTerminal;
use std::sync::Mutex;

pub struct Terminal {
    tty: bool,
    bars: Mutex<Bars>,
}

#[derive(Default)]
struct Bars {
    multi: MultiProgress,
    kernel: Option<ProgressBar>,
    work: Option<ProgressBar>,
}

fn bar(multi: &MultiProgress, len: u64, template: &str) -> ProgressBar {
    let b = multi.add(ProgressBar::new(len));
    b.set_style(ProgressStyle::with_template(template).expect("a valid progress template"));
    b
}

impl Default for Terminal {
    fn default() -> Self {
        Terminal {
            tty: std::io::stderr().is_terminal(),
            bars: Mutex::default(),
        }
    }
}

impl Terminal {
    fn line(&self, bars: &Bars, text: String) {
        if self.tty {
            bars.multi.suspend(|| eprintln!("{text}"));
        } else {
            eprintln!("{text}");
        }
    }

    fn kernel(&self, bars: &mut Bars, label: &str, e: &BuildEvent) {
        match e {
            BuildEvent::Step {
                done,
                estimate,
                what,
            } => {
                if self.tty {
                    let b = bars.kernel.get_or_insert_with(|| {
                        bar(
                            &bars.multi,
                            *estimate,
                            "{spinner} building kernel [{elapsed_precise}] {bar:30} {pos}/~{len} {wide_msg}",
                        )
                    });
                    b.set_length((*estimate).max(*done));
                    b.set_position(*done);
                    b.set_message(what.clone());
                }
            }
            BuildEvent::CacheHit { key } => self.line(bars, format!("kernel {label}: cached ({key})")),
            BuildEvent::CacheDamaged { dir, damage } => self.line(
                bars,
                format!("kernel {label}: cached entry {} not served: {damage}; building it again", dir.display()),
            ),
            BuildEvent::Waiting { lock } => tracing::debug!(lock, "taking the build lock"),
            BuildEvent::FetchingSource => self.line(bars, format!("kernel {label}: preparing the source")),
            BuildEvent::Staged {
                family,
                files,
                changed,
                first,
            } => self.line(
                bars,
                if *first {
                    format!("kernel {label}: {files} files staged into {family}'s tree for the first time")
                } else {
                    format!("kernel {label}: {changed} of {files} files differ from what {family}'s tree held")
                },
            ),
            BuildEvent::Configuring { build_dir } => {
                self.line(bars, format!("kernel {label}: configuring in {}", build_dir.display()))
            }
            BuildEvent::PatchSkipped { patch, why } => self.line(
                bars,
                format!(
                    "kernel {label}: warning: {patch} does not apply to this tree, built without it:\n{}",
                    why.trim_end()
                ),
            ),
            BuildEvent::Published { key, seconds } => {
                if let Some(b) = bars.kernel.take() {
                    b.finish_and_clear();
                }
                self.line(bars, format!("kernel {label}: built in {seconds:.1} s ({key})"));
            }
        }
    }

    fn work(&self, bars: &mut Bars, task: &str, done: u64, total: u64, what: &str) {
        if !self.tty {
            return;
        }
        let b = bars.work.get_or_insert_with(|| {
            bar(
                &bars.multi,
                total,
                &format!("{{spinner}} {task} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {{wide_msg}}"),
            )
        });
        b.set_length(total);
        b.set_position(done);
        b.set_message(what.to_string());
        if done >= total
            && let Some(b) = bars.work.take()
        {
            b.finish_and_clear();
        }
    }
}

impl EventSink for Terminal {
    fn emit(&self, e: Event) {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        match &e {
            Event::Kernel { label, event } => self.kernel(&mut bars, label, event),
            Event::Program { name, label } => tracing::info!(name, label, "program"),
            Event::Staged { what, path } => {
                tracing::info!(what, path = %path.display(), "from the stage")
            }
            Event::Image { name, message } => self.line(&bars, format!("image {name}: {message}")),
            Event::AccelProbe { kvm_works, detail } => self.line(
                &bars,
                format!(
                    "accel: KVM {} ({detail})",
                    if *kvm_works {
                        "works"
                    } else {
                        "does not run guests here; using TCG"
                    }
                ),
            ),
            Event::AccelChosen { accel, cached } => tracing::info!(accel, cached, "accelerator"),
            Event::RunStarted { scenarios } => {
                let n = scenarios.len() as u64;
                self.work(&mut bars, "scenarios", 0, n, "");
            }
            Event::ScenarioStarted { name } => {
                if let Some(b) = &bars.work {
                    b.set_message(name.clone());
                }
            }
            Event::ScenarioFinished {
                name,
                outcome,
                duration,
            } => {
                if let Some(b) = &bars.work {
                    b.inc(1);
                } else if !self.tty {
                    self.line(
                        &bars,
                        format!(
                            "scenario {name}: {outcome} ({:.1} s)",
                            duration.as_secs_f64()
                        ),
                    );
                }
            }
            Event::RunFinished => {
                if let Some(b) = bars.work.take() {
                    b.finish_and_clear();
                }
            }
            Event::Progress {
                task,
                done,
                total,
                what,
            } => self.work(&mut bars, task, *done, *total, what),
            Event::Note(text) => self.line(&bars, text.clone()),
        }
    }
}
