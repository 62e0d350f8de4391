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
    rt.block_on(erlnode::cli::main(cli))
}
