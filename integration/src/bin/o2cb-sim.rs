//! `o2cb-sim`: the simulator's command line on its own, the same as `o2cb sim`.

use clap::Parser;
use integration::cli::{run, SimArgs};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "o2cb-sim",
    about = "Deterministic simulation of an O2CB cluster"
)]
struct Cli {
    #[command(flatten)]
    args: SimArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    match run(&cli.args, &mut stdout) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("o2cb-sim: {e}");
            ExitCode::from(2)
        }
    }
}
