//! The Rust harness floor: a bootstrap on the functions' runtime (`lambda_runtime` on tokio's
//! current-thread runtime) that answers every event at once, without a database. What an invocation costs
//! beyond this is the function's and the database's.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run(service_fn(|_: LambdaEvent<Value>| async { Ok::<_, Error>(json!({ "statusCode": 200, "body": "{}" })) })).await
}
