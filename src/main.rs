//! The carbonmap command line: everything lives in the library (`carbonmap::cli` parses, calls the library and
//! maps errors to exit codes).

fn main() -> std::process::ExitCode {
    carbonmap::cli::main()
}
