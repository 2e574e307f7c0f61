//! The trait every step implements.

use crate::plan::Needs;
use crate::scenario::context::{StepContext, StepResult};
use crate::scenario::driver::GuestDriver;
use crate::scenario::template::Template;
use crate::scenario::validate::{Site, Validator};
use std::future::Future;

/// One kind of step.
pub trait StepKind: Sized {
    /// The key that names it in a scenario file (serde's name for its variant).
    const KEYWORD: &'static str;
    /// The errno the step must fail with, if it says one.
    fn expect(&self) -> Option<&str> {
        None
    }
    /// The step with the enclosing repeats' indices put in.
    fn expand(&self, t: &Template) -> Self;
    /// Tells the validator what the (expanded) step uses and creates.
    fn check(&self, v: &mut Validator, at: &Site, t: &Template);
    /// What the run must build before any VM for this step.
    fn needs(&self, _needs: &mut Needs) {}
    /// Makes the step's requests; the summary line goes into the report.
    fn run<G: GuestDriver>(
        &self,
        cx: &mut StepContext<'_, G>,
    ) -> impl Future<Output = StepResult> + Send;
}

/// A large step (exec) is boxed so it does not make every step as large as itself.
impl<T: StepKind + Sync> StepKind for Box<T> {
    const KEYWORD: &'static str = T::KEYWORD;
    fn expect(&self) -> Option<&str> {
        (**self).expect()
    }
    fn expand(&self, t: &Template) -> Self {
        Box::new((**self).expand(t))
    }
    fn check(&self, v: &mut Validator, at: &Site, t: &Template) {
        (**self).check(v, at, t)
    }
    fn needs(&self, needs: &mut Needs) {
        (**self).needs(needs)
    }
    fn run<G: GuestDriver>(
        &self,
        cx: &mut StepContext<'_, G>,
    ) -> impl Future<Output = StepResult> + Send {
        (**self).run(cx)
    }
}
