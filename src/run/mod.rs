//! Run directories: `runs/<name>/<run-id>/` with the spec as written, the resolved spec, the
//! plan, the state (what completed), the event log and a lock; and [`execute`], which runs a
//! plan's stage instances in order into one. See `runs/README.md`.

pub mod atomic;
pub mod dir;
pub mod events;
pub mod lock;
pub mod state;

pub use dir::{run_id, safe_name, RunDir};
pub use events::{Event, EventLog};
pub use lock::RunLock;
pub use state::{RunState, StageRecord, STATE_SCHEMA_VERSION};
pub mod apply;
pub mod execute;

pub use apply::{apply, ApplyReport, ApplyRequest};
pub use execute::{execute, ExecSummary};
