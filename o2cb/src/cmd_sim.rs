//! `o2cb sim`: run a whole simulated cluster on virtual time, with faults
//! drawn from a seed, and report what the checkers found.
//!
//! ```text
//! o2cb sim [--nodes N] [--seed S | --seeds A..B] [--faults all|none|partition,oneway,drop,stall,slow,crash,pause]
//!          [--duration 900s] [--trace [readable|compact]] [--workload ping|locks|idle] [--sabotage RULE] ...
//! ```
//!
//! The simulator, its arguments and its report live in the `integration`
//! crate (`integration::cli`), so that the same code also runs as the
//! stand-alone `o2cb-sim` and in the crate's tests. Exit status: 0 when no
//! rule was broken, 1 when a checker reported a violation (or on bad
//! arguments, printed as `o2cb: <error>`).

use crate::Global;
use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "o2cb sim",
    about = "Deterministic simulation of an O2CB cluster, with fault injection and checkers"
)]
struct SimCommand {
    #[command(flatten)]
    args: integration::cli::SimArgs,
}

pub fn run(_global: &Global, args: &[String]) -> anyhow::Result<ExitCode> {
    let words = std::iter::once("o2cb sim".to_string()).chain(args.iter().cloned());
    let cmd = match SimCommand::try_parse_from(words) {
        Ok(cmd) => cmd,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            e.print()?;
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "sim: {}",
                e.render().to_string().trim_end()
            ))
        }
    };
    let mut stdout = std::io::stdout().lock();
    let clean = integration::cli::run(&cmd.args, &mut stdout)?;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
