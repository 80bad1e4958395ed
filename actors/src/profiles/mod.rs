//! Profiles on disk: loading every `*.yaml|*.yml` file of `profiles_dir`, and the set the
//! daemon serves from, swapped whole on SIGHUP (a bad reload keeps the old set).

mod documents;
mod loader;
mod registry;

pub use loader::{LoadedProfile, ProfileError, ProfileErrors, ProfileRules, ProfileSet, load_dir, load_file_text};
pub use registry::ProfileRegistry;
