//! `logs` (a sandbox's or a job's events) and following them as they happen: a long poll on
//! `…/events?after=ID&wait=30`. A job's log chunks print as the agent's raw (redacted)
//! output; other events as one line each.

use crate::args::LogTarget;
use crate::client::{ClientError, DaemonClient};
use crate::render;
use crate::terminal::escape;
use agentlab_model::protocol::{EventView, EventsResponse};

/// How one event prints when following a job: log text as is, phases and states as notes.
pub fn print_event(event: &EventView, json: bool) {
    if json {
        println!("{}", serde_json::to_string(event).unwrap_or_default());
        return;
    }
    match event.kind.as_str() {
        "job.log" => {
            print!("{}", escape(&event.msg));
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }
        "job.phase" => eprintln!("==> {}", escape(&event.msg)),
        "job.state" => eprintln!("==> job {}", event.json["to_state"].as_str().unwrap_or("?")),
        _ => println!("{}", escape(&render::event_line(event))),
    }
}

/// Prints the newest `tail` events; with `follow`, keeps printing until interrupted.
pub fn logs(client: &DaemonClient, json: bool, target: &LogTarget, tail: u32, follow: bool) -> Result<(), ClientError> {
    let base = target.events_path();
    let page: EventsResponse = client.get(&format!("{base}?tail={tail}"))?;
    for event in &page.events {
        print_line(event, json);
    }
    if !follow {
        return Ok(());
    }
    let mut after = page.last_id;
    loop {
        let page: EventsResponse = client.get(&format!("{base}?after={after}&wait=30"))?;
        after = page.last_id.max(after);
        for event in &page.events {
            print_line(event, json);
        }
    }
}

fn print_line(event: &EventView, json: bool) {
    // NDJSON with --json: one event per line, as the Go version's `logs --json`.
    if json {
        println!("{}", serde_json::to_string(event).unwrap_or_default());
    } else if event.kind == "job.log" {
        print!("{}", escape(&event.msg));
    } else {
        println!("{}", escape(&render::event_line(event)));
    }
}
