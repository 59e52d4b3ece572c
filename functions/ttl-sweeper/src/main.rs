//! `ttl-sweeper`: start-up, then each scheduled event into one bounded sweep.

use lambda_adapter::{startup, sweeper};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let state = startup::init("ttl-sweeper").await?;
    run(service_fn(|event: LambdaEvent<Value>| sweeper::sweep(&state, event))).await
}
