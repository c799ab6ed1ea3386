//! `order-example`: the Order domain on a real store, from the command line.
//!
//! Run it without arguments for the whole usage pattern; `--help` lists the rest. The wiring
//! and the commands live in `cli/`; the domain and the read models are the library.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let arguments = match cli::Cli::try_parse() {
        Ok(arguments) => arguments,
        Err(error) => {
            // Clap quotes the arguments it refuses: print its message (or the help) escaped.
            let text = error.render().to_string();
            let written = if error.use_stderr() {
                cli::write_escaped(&mut std::io::stderr(), &text)
            } else {
                cli::write_escaped(&mut std::io::stdout(), &text)
            };
            if written.is_err() {
                return ExitCode::FAILURE;
            }
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
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
            // The message may quote input or stored data: escaped, on one line.
            eprintln!("error: {}", cli::one_line(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}
