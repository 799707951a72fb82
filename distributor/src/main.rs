//! `pfs`: the command-line front end (see `cli/`). Parsing and printing only; the work lives in
//! the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
