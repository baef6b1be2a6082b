//! The `stratus` command: see [`stratus_gateway::cli`].

fn main() -> std::process::ExitCode {
    stratus_gateway::cli::main()
}
