//! `update-tickets`: start-up, then every request into the shared HTTP handler for this route.

use lambda_adapter::{handlers, startup, Operation};
use lambda_http::{run, service_fn, Error, Request};

// One thread: Lambda sends one event at a time, and the handler, the runtime client and the driver's
// connection then share a core and its caches instead of handing each reply across threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let state = startup::init("update-tickets").await?;
    state.prepare(Operation::UpdateTickets);
    run(service_fn(|request: Request| handlers::serve(&state, Operation::UpdateTickets, request))).await
}
