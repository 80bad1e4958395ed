//! The CLI reference is current: docs/reference/cli.md and docs/man/ are generated here, from
//! `agentlab`'s clap `Command` tree (the `agentlab-cli` library) and from the built
//! `agentlabd`'s `-h` of every subcommand, and compared with the committed files.
//! `AGENTLAB_BLESS=1` writes them instead.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

use agentlab_e2e::{bin, repo_root};
use clap::CommandFactory;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const REGENERATE: &str =
    "cargo build --workspace --bins && AGENTLAB_BLESS=1 cargo nextest run -p agentlab-e2e --test cli_reference";

/// One command of the reference: its full name (`agentlab sandbox new`) and its help (`-h`).
struct Page {
    name: String,
    help: String,
}

impl Page {
    fn new(name: String, help: &str) -> Page {
        // clap pads an option without help with spaces; the committed files keep no trailing blanks.
        let help: Vec<&str> = help.trim_end().lines().map(str::trim_end).collect();
        Page { name, help: help.join("\n") + "\n" }
    }
}

/// `agentlab`'s tree, built as clap builds it for `-h`; the socket's environment value
/// is not shown (it is whatever the generating shell had).
fn agentlab_command() -> clap::Command {
    let mut command = agentlab_cli::args::Cli::command().mut_arg("socket", |arg| arg.hide_env_values(true));
    command.build();
    command
}

fn visible(command: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    command.get_subcommands().filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
}

fn agentlab_pages(command: &mut clap::Command, name: &str, pages: &mut Vec<Page>) {
    pages.push(Page::new(name.to_string(), &command.render_help().to_string()));
    for sub in command.get_subcommands_mut() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let sub_name = format!("{name} {}", sub.get_name());
        agentlab_pages(sub, &sub_name, pages);
    }
}

/// `agentlabd`'s pages, from the binary (its grammar lives in its `main.rs`): the `-h` of the
/// command, then of each command its "Commands:" section lists.
fn agentlabd_pages(agentlabd: &Path, args: &[String], pages: &mut Vec<Page>) {
    let out = Command::new(agentlabd).args(args).arg("-h").output().expect("run agentlabd -h");
    let help = String::from_utf8(out.stdout).expect("UTF-8 help");
    assert!(out.status.success() && !help.is_empty(), "agentlabd {} -h failed", args.join(" "));
    let subcommands: Vec<String> = help
        .lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    let name = std::iter::once("agentlabd".to_string()).chain(args.iter().cloned()).collect::<Vec<_>>().join(" ");
    pages.push(Page::new(name, &help));
    for sub in subcommands {
        let mut path = args.to_vec();
        path.push(sub);
        agentlabd_pages(agentlabd, &path, pages);
    }
}

/// GitHub's anchor of a `### \`name\`` heading.
fn anchor(name: &str) -> String {
    name.replace(' ', "-")
}

fn section(out: &mut String, title: &str, pages: &[Page]) {
    out.push_str(&format!("## {title}\n\n"));
    let index: Vec<String> = pages.iter().map(|p| format!("[`{}`](#{})", p.name, anchor(&p.name))).collect();
    out.push_str(&index.join(" · "));
    out.push_str("\n\n");
    for page in pages {
        out.push_str(&format!("### `{}`\n\n```text\n{}\n```\n\n", page.name, page.help.trim_end()));
    }
}

fn cli_md(agentlab: &[Page], agentlabd: &[Page]) -> String {
    let mut out = format!(
        "# CLI reference\n\n\
         Generated from the programs' own definitions (clap) by `tests/tests/cli_reference.rs`: do not\n\
         edit by hand. After changing a command, regenerate with\n`{REGENERATE}`.\n\
         The same text is in the man pages under [`docs/man/`](../man/) (`man -l docs/man/agentlab.1`).\n\n\
         Exit codes of `agentlab`: 0 success, 1 a request failed, 2 bad usage. With `--json`, errors are\n\
         printed on stdout as `{{\"error\",\"code\",\"message\"}}` (codes: [errors.md](errors.md)).\n\n"
    );
    section(&mut out, "agentlab (the operator CLI)", agentlab);
    section(&mut out, "agentlabd (the daemon and its host commands)", agentlabd);
    out.trim_end().to_string() + "\n"
}

/// Roff text of `text`, shown as it is (no filling): backslashes escaped, lines that would
/// read as requests protected.
fn roff_verbatim(text: &str) -> String {
    let mut out = String::from(".nf\n");
    for line in text.trim_end().lines() {
        let line = line.replace('\\', "\\e");
        if line.starts_with('.') || line.starts_with('\'') {
            out.push_str("\\&");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(".fi\n");
    out
}

/// `agentlabd.1`: clap_mangen needs the clap tree, which `agentlabd`'s binary keeps to itself,
/// so this page holds each command's help text.
fn agentlabd_man(pages: &[Page]) -> String {
    let about = pages[0].help.lines().next().unwrap_or("").replace('\\', "\\e").replace('-', "\\-");
    let mut out = format!(
        ".\\\" Generated from agentlabd -h by tests/tests/cli_reference.rs; do not edit.\n\
         .TH AGENTLABD 1 \"\" \"agentlabd {}\"\n.SH NAME\nagentlabd \\- {about}\n.SH SYNOPSIS\n",
        env!("CARGO_PKG_VERSION")
    );
    let usage = pages[0].help.lines().find_map(|l| l.strip_prefix("Usage: ")).unwrap_or("agentlabd");
    out.push_str(&format!(".B {}\n", usage.replace('\\', "\\e").replace('-', "\\-")));
    for (i, page) in pages.iter().enumerate() {
        out.push_str(if i == 0 { ".SH DESCRIPTION\n" } else { "" });
        if i == 1 {
            out.push_str(".SH COMMANDS\n");
        }
        if i > 0 {
            out.push_str(&format!(".SS {}\n", page.name));
        }
        out.push_str(&roff_verbatim(&page.help));
    }
    out.push_str(".SH SEE ALSO\n.BR agentlab (1)\n");
    out
}

/// Every man page: `agentlab.1` and one per `agentlab` subcommand (clap_mangen), and `agentlabd.1`.
fn man_pages(agentlabd: &[Page]) -> BTreeMap<String, String> {
    fn add(command: &clap::Command, out: &mut BTreeMap<String, String>) {
        for sub in visible(command) {
            add(sub, out);
        }
        let man = clap_mangen::Man::new(command.clone());
        let mut text = Vec::new();
        man.render(&mut text).expect("render a man page");
        out.insert(man.get_filename(), String::from_utf8(text).expect("UTF-8 roff"));
    }
    let mut pages = BTreeMap::new();
    let mut command = agentlab_command().disable_help_subcommand(true);
    command.build();
    add(&command, &mut pages);
    pages.insert("agentlabd.1".to_string(), agentlabd_man(agentlabd));
    pages
}

#[test]
fn the_cli_reference_and_man_pages_are_generated_from_the_programs() {
    let mut agentlab = Vec::new();
    agentlab_pages(&mut agentlab_command(), "agentlab", &mut agentlab);
    let mut agentlabd = Vec::new();
    agentlabd_pages(&bin("agentlabd"), &[], &mut agentlabd);
    assert!(agentlabd.len() > 5, "agentlabd's subcommands were not found in its -h");

    let mut wanted = BTreeMap::new();
    wanted.insert("docs/reference/cli.md".to_string(), cli_md(&agentlab, &agentlabd));
    for (name, text) in man_pages(&agentlabd) {
        wanted.insert(format!("docs/man/{name}"), text);
    }
    let root = repo_root();
    let stale: Vec<String> = std::fs::read_dir(root.join("docs/man"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| format!("docs/man/{}", e.file_name().to_string_lossy()))
                .filter(|path| !wanted.contains_key(path))
                .collect()
        })
        .unwrap_or_default();

    if std::env::var_os("AGENTLAB_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(root.join("docs/man")).unwrap();
        for (path, text) in &wanted {
            std::fs::write(root.join(path), text).unwrap();
        }
        for path in &stale {
            std::fs::remove_file(root.join(path)).unwrap();
        }
        return;
    }
    let mut differ = Vec::new();
    for (path, text) in &wanted {
        let committed = std::fs::read_to_string(root.join(path)).unwrap_or_default();
        if committed != *text {
            let line = committed.lines().zip(text.lines()).position(|(a, b)| a != b).map_or_else(
                || format!("length {} → {} lines", committed.lines().count(), text.lines().count()),
                |n| format!("first difference at line {}", n + 1),
            );
            differ.push(format!("  {path} ({line})"));
        }
    }
    differ.extend(stale.iter().map(|path| format!("  {path} (no such command any more)")));
    assert!(differ.is_empty(), "the CLI reference is out of date:\n{}\nregenerate: {REGENERATE}", differ.join("\n"));
}
