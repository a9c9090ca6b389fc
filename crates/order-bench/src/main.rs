use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let opts = order_bench::Options::parse();
    // Dropping the run future on Ctrl-C drops the service handle, which kills
    // the spawned service: no orphan process.
    let outcome = tokio::select! {
        r = order_bench::run(opts) => r,
        _ = tokio::signal::ctrl_c() => Err(order_bench::Error::msg("interrupted")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("order-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}
