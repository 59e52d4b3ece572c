//! Prints the HTTP contract (OpenAPI 3.1) the code generates: `make openapi` writes it to `api/openapi.json`.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    match lambda_adapter::openapi::json() {
        Ok(text) if std::io::stdout().write_all(text.as_bytes()).is_ok() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
