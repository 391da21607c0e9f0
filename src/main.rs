//! `git-mmm`: parse the command line, run, map the outcome to an exit code.

fn main() -> std::process::ExitCode {
    mmm_cli::main()
}

#[path = "cli/mod.rs"]
mod mmm_cli;
