fn main() -> std::process::ExitCode {
    mcpgate_token_service::cli::main()
}
