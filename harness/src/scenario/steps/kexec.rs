//! `kexec`: kexec_file_load + reboot(KEXEC) into the next kernel (the running one, or a variant of
//! the same source), holding every open fd, and the new kernel's hello. Under `image: systemd` the
//! reboot is `systemctl kexec`: systemd's shutdown carries the fd stores, the agent's fds close.

use super::kind::StepKind;
use crate::guest::KexecTarget;
use crate::plan::Needs;
use crate::scenario::context::{StepContext, StepFailure, StepResult};
use crate::scenario::driver::GuestDriver;
use crate::scenario::report::BootFacts;
use crate::scenario::template::Template;
use crate::scenario::validate::{Site, Validator};
use crate::scenario::watch::BootWatch;
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Kexec {
    /// Extra kernel command line for the next kernel.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// The next kernel: a variant (kernels/variants/) of the boot kernel's source, a kernel source
    /// (`debian:7.2`, `tree:PATH`, `git:PATH@REV`, `file:BZIMAGE`), or a name declared in the
    /// scenario's `kernels:` and bound on the command line. Default: the run's next kernel (the
    /// boot kernel, or the `to` of a matrix cell).
    #[serde(default)]
    pub kernel: Option<String>,
}

impl StepKind for Kexec {
    const KEYWORD: &'static str = "kexec";
    fn expand(&self, t: &Template) -> Self {
        Kexec {
            cmdline: t.opt(&self.cmdline),
            kernel: self.kernel.clone(),
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        if let Some(name) = &self.kernel {
            v.kernel_name(at, name);
        }
        if let Some(c) = &self.cmdline {
            let max = crate::scenario::limits::MAX_CMDLINE_BYTES;
            if c.len() > max {
                v.problem(at, format!("the kexec command line is {} bytes; at most {max}", c.len()), Some("x86 takes 2048 bytes in all, and the harness's own parameters need the rest".into()));
            } else if c.chars().any(|ch| ch.is_control()) {
                v.problem(
                    at,
                    "the kexec command line holds a control character (a newline?)".into(),
                    None,
                );
            }
        }
        v.kexec(at);
    }
    fn needs(&self, needs: &mut Needs) {
        if let Some(v) = &self.kernel {
            needs.kernels.insert(v.clone());
        }
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let kernel = cx
            .plan
            .kexec_kernel(self.kernel.as_deref())
            .ok_or_else(|| {
                // The plan resolves every kernel a scenario names before any VM starts.
                StepFailure::Check(format!("the run plan has no kernel {:?}", self.kernel))
            })?
            .clone();
        let target = KexecTarget {
            kernel: kernel.boot_image.clone(),
            // The image the scenario booted: the next kernel runs the same userspace.
            initrd: cx.initrd.clone(),
            extra_cmdline: self.cmdline.clone(),
        };
        let step = format!("L{} {}", cx.line, Self::KEYWORD);
        cx.guest.kexec_load(&target).await?;
        // After the load (its own messages are this boot's) and before the reboot, which ends
        // every read: the log, the leaks, the counters of the boot that ends here.
        cx.checkpoint(&format!("before {step}")).await?;
        let next = cx.guest.boot_index() + 1;
        let blackout = match cx.guest.kexec_reboot().await {
            Ok(b) => b,
            Err(e) => {
                // The next kernel did not come up: what it said on the console is its own.
                cx.watch.push(BootWatch::new(next, kernel));
                return Err(e.into());
            }
        };
        let ms = blackout.as_secs_f64() * 1000.0;
        cx.metrics.blackouts_ms.push(ms);
        cx.metrics.boots_ms.push(ms);
        let boot = cx.guest.boot_index();
        let mut facts = BootFacts::from_hello(boot, cx.guest.hello());
        let console = cx.console();
        if facts.system.is_some() {
            facts.shutdown = crate::scenario::report::shutdown_luo_lines(&console);
        }
        // The boot that ended is the (boot - 1)th to kexec in this VM.
        cx.watching().last_words(&console, boot as usize - 1, step);
        cx.watch.push(BootWatch::new(boot, kernel));
        cx.report.boots.push(facts);
        cx.new_boot();
        cx.check_handover();
        if let Some(why) = cx.unmet_requirements().await? {
            return Err(StepFailure::Skip(format!("boot {boot}: {why}")));
        }
        Ok(match &self.kernel {
            Some(v) => format!("{} into boot {boot} ({v}): ok", Self::KEYWORD),
            None => format!("{} into boot {boot}: ok", Self::KEYWORD),
        })
    }
}
