//! The `agentlab` command-line grammar as a library: the program (`main.rs`) parses with it,
//! and the CLI reference (`docs/reference/cli.md`, `docs/man/`) is generated from its clap
//! `Command` tree by `tests/tests/cli_reference.rs`. Nothing else of the CLI lives here.

pub mod args;
