//! The `erlnode` command: see `erlnode --help`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = erlnode::cli::Cli::parse();
    erlnode::cli::init_logging(cli.verbose, cli.is_client());
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("erlnode: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The command runs as a task on the runtime's workers, not on this
    // thread: waking a thread parked in `block_on` costs tens of
    // microseconds each time, which `erlnode bench` would time as part of
    // every handoff (docs/benchmarks.md).
    let command = rt.spawn(erlnode::cli::main(cli));
    match rt.block_on(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("erlnode: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
