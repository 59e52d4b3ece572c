//! `ttl-sweeper`: start-up, then each scheduled event into one bounded sweep.

use lambda_adapter::{startup, sweeper};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

// One thread: Lambda sends one event at a time, and the handler, the runtime client and the driver's
// connection then share a core and its caches instead of handing each reply across threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let state = startup::init("ttl-sweeper").await?;
    run(service_fn(|event: LambdaEvent<Value>| sweeper::sweep(&state, event))).await
}
