//! `push-log`: start-up, then every request into the shared HTTP handler for this route.

use lambda_adapter::{handlers, startup, Operation};
use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let state = startup::init("push-log").await?;
    run(service_fn(|request: Request| handlers::serve(&state, Operation::PushLog, request))).await
}
