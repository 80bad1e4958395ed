//! Wire types shared by the daemon, the CLI and the guest runner. No runtime dependencies.

pub mod api;
pub mod guest;
pub mod jobs;
pub mod pool;
pub mod secrets;
pub mod session;
pub mod template;
pub mod workspace;
pub use api::*;
pub use jobs::*;
pub use pool::*;
pub use secrets::*;
pub use session::*;
pub use template::*;
pub use workspace::*;
