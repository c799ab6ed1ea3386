//! `order-example`: the Order domain on a real store, from the command line.
//!
//! Run it without arguments for the whole usage pattern; `--help` lists the rest. The wiring
//! and the commands live in `cli/`; the domain and the read models are the library.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let arguments = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(arguments)) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`order-example history x | head`) is not a failure.
        Err(error) if cli::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
