//! Run directories: `runs/<name>/<run-id>/` with the spec as written, the resolved spec, the
//! plan, the state (what completed), the event log and a lock; [`execute`], which runs a plan's
//! stage instances in order into one; and [`apply`], the whole path from a spec file or a saved
//! plan to a run. See `runs/README.md`.

pub mod apply;
pub mod atomic;
pub mod cache;
pub mod dir;
pub mod events;
pub mod execute;
pub mod lock;
pub mod state;
pub mod summary;

pub use apply::{apply, ApplyReport, ApplyRequest};
pub use dir::{run_id, safe_name, RunDir};
pub use events::{Event, EventLog};
pub use execute::{execute, ExecSummary};
pub use lock::RunLock;
pub use state::{RunState, StageRecord, STATE_SCHEMA_VERSION};
