//! The `miso` binary: everything lives in `cli` (flags, printing) and the library (logic).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
