//! Encrypted YAML secrets bundles: the schema a job's secrets payload is read from, where
//! bundles live on the host, and how they are sealed and opened with the daemon's age key,
//! as an age file or a sops file whose data key is sealed to that key.
//!
//! Plaintext bundles are refused on purpose: a bundle at rest is always encrypted to the
//! daemon's key, so a leaked secrets directory leaks nothing without the key file.

mod age_file;
mod age_key;
mod atomic_write;
mod bundle;
mod edit;
mod error;
mod load;
mod locate;
mod rotate;
mod sops;
mod summary;
mod tree;

pub use age_file::{MAX_PLAINTEXT_BYTES, decrypt_file, encrypt_to};
pub use age_key::{AgeKey, generate_identity, write_identity};
pub use bundle::{
    ArtifactSecrets, ClaudeSecrets, GitSecrets, SUPPORTED_VERSION, SecretsBundle, SshKey, SshSecrets, TailscaleSecrets,
};
pub use edit::{BundleChange, Edited, GitField, edit_bundle, edit_bundle_all};
pub use error::BundleError;
pub use load::{LoadedBundle, Sealed, Sealing, decrypt_located, load_bundle, load_bundle_with_key, seal};
pub use locate::{BundleFormat, Located, bundle_names, is_sops_path, locate};
pub use rotate::{Rotated, rotate_key};
pub use sops::{SopsLayout, decrypt_sops_file, encrypt_sops};
pub use summary::{BundleSummary, GitFieldsSet};

/// The age crate's recipient type, for callers of [`encrypt_to`] and [`encrypt_sops`].
pub use age::x25519::Recipient as AgeRecipient;
