//! `agentlab-bench <overhead|burst|scale|artifacts|pool|all|trace> [--quick] [--factor F]`: runs
//! the scenarios of `agentlab_e2e::bench` against the built binaries next to it (build them
//! with `cargo build --release --workspace --bins`) and prints one JSON object per scenario.

use agentlab_e2e::bench::{self, Run};
use std::process::ExitCode;

const USAGE: &str = "usage: agentlab-bench <overhead|burst|scale|artifacts|pool|all|trace> [--quick] [--factor F]\n\
  trace       one sandbox's Proxmox requests and tasks, timed (not in `all`)\n\
  --quick     small counts and a fast latency model (CI)\n\
  --factor F  the simulator's latency factor (default 1, or 0.05 with --quick)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut factor = if quick { 0.05 } else { 1.0 };
    let mut scenarios = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--quick" => {}
            "--factor" => match rest.next().and_then(|f| f.parse::<f64>().ok()).filter(|f| *f > 0.0 && *f <= 10.0) {
                Some(f) => factor = f,
                None => {
                    eprintln!("--factor needs a number in (0, 10]\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "all" => scenarios.extend(["overhead", "burst", "scale", "artifacts", "pool"]),
            "overhead" | "burst" | "scale" | "artifacts" | "pool" | "trace" => scenarios.push(arg.as_str()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument `{other}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    if scenarios.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let run = Run { quick, factor };
    for scenario in scenarios {
        eprintln!("agentlab-bench: {scenario} (quick: {quick}, latency factor {factor})");
        let figures = match scenario {
            "overhead" => bench::sandboxes::overhead(run),
            "burst" => bench::sandboxes::burst(run),
            "scale" => bench::scale::scale(run),
            "artifacts" => bench::artifacts::artifacts(run),
            "trace" => bench::sandboxes::trace(run),
            _ => bench::pool::pool(run),
        };
        println!("{figures}");
    }
    ExitCode::SUCCESS
}
