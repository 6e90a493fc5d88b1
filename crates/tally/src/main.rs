//! `tally`: the billing and payments platform in one binary.
//!
//! This crate is the only place that knows which services run in a process: it opens their
//! databases, wires their consumers to the bus, merges their routes and serves them.

mod bench;
mod cli;
mod import;
mod platform;

use clap::Parser as _;

/// A faster allocator than the system's for the many small, short-lived allocations of request
/// handling and bulk imports (serializing rows and events).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
