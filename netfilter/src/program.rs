//! A host tool with an optional prefix (`nft`, or `ip netns exec NAME nft` in tests).

use std::process::Command;

#[derive(Debug, Clone)]
pub struct Program {
    words: Vec<String>,
}

impl Program {
    /// `words[0]` is run with the rest as its first arguments; empty means `default`.
    pub fn new(words: Vec<String>, default: &str) -> Program {
        if words.is_empty() { Program { words: vec![default.to_string()] } } else { Program { words } }
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.words[0]);
        command.args(&self.words[1..]);
        command
    }

    /// How it is run, for error messages.
    pub fn display(&self) -> String {
        self.words.join(" ")
    }
}
