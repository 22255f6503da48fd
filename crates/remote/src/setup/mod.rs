//! `dockhand setup`: observe the server ([`crate::facts`]), plan (`plan.rs`, pure: facts and
//! wishes in, ordered idempotent steps out, each either a change or "already so"), print the
//! plan, then execute it step by step (`execute.rs`). A second run plans nothing.

pub mod execute;
pub mod plan;

pub use execute::{execute, Observer, StepOutcome};
pub use plan::{plan, Op, Refusal, SetupPlan, Step, StepState, Wanted};
