//! `ttl-sweeper`: start-up, then each event: a schedule's (one bounded sweep) or the deployment's custom
//! resource (create the indexes, answer CloudFormation).

use lambda_adapter::sweeper;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

// One thread: Lambda sends one event at a time, and the handler, the runtime client and the driver's
// connection then share a core and its caches instead of handing each reply across threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // A failed start-up does not end the process: CloudFormation's request still gets its answer.
    let started = sweeper::Started::init().await;
    run(service_fn(|event: LambdaEvent<Value>| sweeper::handle(&started, event))).await
}
