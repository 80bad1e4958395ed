//! Loading and reading the host ruleset with the `nft` binary: check (`nft -c`), then one
//! atomic load (`nft -f`: the whole file is one transaction, so a failed load leaves the
//! previous ruleset), then a read-back that the tables are there.

use crate::host::TABLE;
use crate::program::Program;
use std::io::Write;
use std::process::Stdio;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run `{program}`: {source} (install nftables; the daemon must run as root)")]
    Spawn { program: String, source: std::io::Error },
    #[error("nft refused the ruleset: {0}")]
    Refused(String),
    #[error("`nft {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("the ruleset loaded but the {0} table is not there on reading back")]
    NotLoaded(String),
    #[error("cannot read nft's JSON output: {0}")]
    Json(String),
}

/// The families the host ruleset defines a table in.
pub const FAMILIES: [&str; 3] = ["inet", "bridge", "arp"];

/// How to run `nft`: the program and any prefix (a test runs it in a network namespace as
/// `ip netns exec NAME nft`).
#[derive(Debug, Clone)]
pub struct Nft {
    program: Program,
}

impl Default for Nft {
    fn default() -> Self {
        Nft::with_command(Vec::new())
    }
}

impl Nft {
    pub fn with_command(command: Vec<String>) -> Nft {
        Nft { program: Program::new(command, "nft") }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
        let program = self.program.display();
        let spawn = |source| NftError::Spawn { program: program.clone(), source };
        let mut child = self
            .program
            .command()
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).map_err(spawn)?;
        }
        let output = child.wait_with_output().map_err(spawn)?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(NftError::Failed {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }

    /// `nft -c`: the kernel's verdict on the text, nothing changed.
    pub fn check(&self, ruleset: &str) -> Result<(), NftError> {
        self.run(&["-c", "-f", "-"], Some(ruleset)).map(|_| ()).map_err(refused)
    }

    /// Check, load as one transaction, read back.
    pub fn apply(&self, ruleset: &str) -> Result<(), NftError> {
        self.check(ruleset)?;
        self.run(&["-f", "-"], Some(ruleset)).map_err(refused)?;
        for family in FAMILIES {
            if !self.table_loaded(family)? {
                return Err(NftError::NotLoaded(format!("{family} {TABLE}")));
            }
        }
        Ok(())
    }

    /// Whether this family's `agentlab` table is loaded (`false` when nft runs but the
    /// table is absent; an error when nft itself cannot run).
    pub fn table_loaded(&self, family: &str) -> Result<bool, NftError> {
        match self.run(&["list", "table", family, TABLE], None) {
            Ok(_) => Ok(true),
            Err(NftError::Failed { stderr, .. }) if stderr.contains("No such file or directory") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// All three tables loaded.
    pub fn loaded(&self) -> Result<bool, NftError> {
        for family in FAMILIES {
            if !self.table_loaded(family)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `nft -j list set inet agentlab NAME`.
    pub fn list_set_json(&self, name: &str) -> Result<String, NftError> {
        self.list_family_set_json("inet", name)
    }

    /// `nft -j list set FAMILY agentlab NAME`.
    pub fn list_family_set_json(&self, family: &str, name: &str) -> Result<String, NftError> {
        self.run(&["-j", "list", "set", family, TABLE, name], None)
    }

    /// Remove the host ruleset (all three tables).
    pub fn remove(&self) -> Result<(), NftError> {
        let mut text = String::new();
        for family in FAMILIES {
            text.push_str(&format!("table {family} {TABLE}\ndelete table {family} {TABLE}\n"));
        }
        self.run(&["-f", "-"], Some(&text)).map(|_| ())
    }
}

fn refused(e: NftError) -> NftError {
    match e {
        NftError::Failed { stderr, .. } => NftError::Refused(stderr),
        other => other,
    }
}
