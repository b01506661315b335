//! `hubcat bench`: run a scenario, print a table (or JSON) on stdout.

use std::process::ExitCode;

use crate::args::BenchArgs;
use crate::fail;

/// Runs the scenario and prints its report.
pub async fn bench(args: BenchArgs) -> ExitCode {
    let config = match args.scenario.config() {
        Ok(config) => config,
        Err(err) => err.exit(),
    };
    match hubcat::bench::run(config).await {
        Ok(report) if args.scenario.common().json => {
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => fail(format_args!("bench: {err}")),
    }
}
