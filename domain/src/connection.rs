//! The MongoDB client of an execution environment, and its replacement when the driver is stuck.
//!
//! The driver bounds a new connection's TCP connect (`connect_timeout`) but not the handshake and SCRAM
//! conversation that follow, and it runs them in a task of its own that nothing outside the driver can
//! cancel. A peer that goes silent there (half a reply, then no FIN and no RST: a dropped flow, a NAT's
//! idle timeout, a frozen host) leaves that connection "pending" for good, and two of them (the driver's
//! `max_connecting`) stop the pool from opening any other: every later request of the environment waits
//! for a connection until its own timeout, long after the network is healthy again.
//!
//! So a replaceable [`MongoConnection`] gives each client (a *generation*) a runtime of its own for the
//! driver's background tasks (the monitor, the pool worker, connection establishment), watches its pending
//! connections through the driver's CMAP events, and replaces the client when
//! - a connection has been pending longer than `stuck_after` (the operation timeout: no request can use
//!   a connection that late), or
//! - operations keep timing out: [`STUCK_TIMEOUTS`] in a row with no success between (a pooled
//!   connection whose flow died is closed by the timeout that meets it; this bounds how many do).
//!
//! The retired client's runtime is shut down once the operations that may still hold its connections
//! have had their time (`stuck_after`): that drops its tasks and closes every socket it had, stuck ones
//! included, so nothing leaks. Checking costs a lock and a clock read per operation.

use std::future::IntoFuture;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use mongodb::event::cmap::CmapEvent;
use mongodb::event::EventHandler;
use mongodb::options::ClientOptions;
use mongodb::Client;

/// Operation timeouts in a row, with no success between, after which the client is replaced.
pub const STUCK_TIMEOUTS: u32 = 2;

/// The client a cache talks through: fixed (tests and tools hand one in), or replaceable (the functions).
#[derive(Clone)]
pub struct MongoConnection {
    inner: Arc<Inner>,
}

struct Inner {
    current: RwLock<Arc<Generation>>,
    /// Absent for a fixed client, which is never replaced.
    factory: Option<Factory>,
    replacements: AtomicU64,
    timeouts_in_a_row: AtomicU32,
}

struct Factory {
    options: ClientOptions,
    stuck_after: Duration,
}

/// One client and what runs it.
pub(crate) struct Generation {
    pub(crate) client: Client,
    /// The runtime of the driver's background tasks (replaceable clients only).
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    pending: Arc<PendingConnections>,
    born: Instant,
}

impl Drop for Generation {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.get_mut().ok().and_then(Option::take) {
            // Drops the driver's tasks, stuck ones included, and closes their sockets; never blocks.
            runtime.shutdown_background();
        }
    }
}

/// Connections the pool is establishing, by id, with when each began.
#[derive(Default)]
struct PendingConnections(Mutex<Vec<(u32, Instant)>>);

impl PendingConnections {
    fn observe(&self, event: &CmapEvent) {
        let Ok(mut pending) = self.0.lock() else { return };
        match event {
            CmapEvent::ConnectionCreated(created) => pending.push((created.connection_id, Instant::now())),
            CmapEvent::ConnectionReady(ready) => pending.retain(|(id, _)| *id != ready.connection_id),
            CmapEvent::ConnectionClosed(closed) => pending.retain(|(id, _)| *id != closed.connection_id),
            _ => {}
        }
    }

    fn oldest(&self) -> Option<Instant> {
        self.0.lock().ok()?.iter().map(|(_, since)| *since).min()
    }
}

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("the driver's runtime could not be started: {0}")]
    Runtime(#[from] std::io::Error),
    #[error(transparent)]
    Driver(#[from] mongodb::error::Error),
}

impl MongoConnection {
    /// A client made from `options` and replaced whenever it gets stuck (module docs).
    pub fn replaceable(options: ClientOptions, stuck_after: Duration) -> Result<MongoConnection, ConnectionError> {
        let factory = Factory { options, stuck_after };
        let first = factory.generation()?;
        Ok(MongoConnection {
            inner: Arc::new(Inner {
                current: RwLock::new(Arc::new(first)),
                factory: Some(factory),
                replacements: AtomicU64::new(0),
                timeouts_in_a_row: AtomicU32::new(0),
            }),
        })
    }

    /// A client that is used as it is, never replaced.
    pub fn fixed(client: &Client) -> MongoConnection {
        let generation = Generation { client: client.clone(), runtime: Mutex::new(None), pending: Arc::default(), born: Instant::now() };
        MongoConnection {
            inner: Arc::new(Inner {
                current: RwLock::new(Arc::new(generation)),
                factory: None,
                replacements: AtomicU64::new(0),
                timeouts_in_a_row: AtomicU32::new(0),
            }),
        }
    }

    /// The client to use now.
    pub fn client(&self) -> Client {
        self.current().client.clone()
    }

    /// Clients replaced so far because the one before was stuck.
    pub fn replacements(&self) -> u64 {
        self.inner.replacements.load(Ordering::Relaxed)
    }

    /// The current generation, after replacing it if it has a connection stuck in establishment.
    pub(crate) fn current(&self) -> Arc<Generation> {
        let current = self.read_current();
        if let Some(factory) = &self.inner.factory {
            let stuck = current.pending.oldest().is_some_and(|since| since.elapsed() > factory.stuck_after);
            if stuck {
                return self.replace(&current, "a connection has been establishing longer than the operation timeout");
            }
        }
        current
    }

    /// Records how an operation ended: a timeout counts toward [`STUCK_TIMEOUTS`], anything else (an
    /// answer, even an error) resets the count.
    pub(crate) fn record(&self, timed_out: bool) {
        if !timed_out {
            self.inner.timeouts_in_a_row.store(0, Ordering::Relaxed);
            return;
        }
        let in_a_row = self.inner.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if self.inner.factory.is_some() && in_a_row >= STUCK_TIMEOUTS {
            self.replace(&self.read_current(), "operations keep timing out");
        }
    }

    fn read_current(&self) -> Arc<Generation> {
        match self.inner.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces `stuck` unless another caller already did; answers the generation to use.
    fn replace(&self, stuck: &Arc<Generation>, reason: &'static str) -> Arc<Generation> {
        let Some(factory) = &self.inner.factory else { return stuck.clone() };
        let mut current = match self.inner.current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Replaced already, or too young to judge (its first connection has not had its time).
        if !Arc::ptr_eq(&current, stuck) || current.born.elapsed() < factory.stuck_after {
            return current.clone();
        }
        let fresh = match factory.generation() {
            Ok(fresh) => Arc::new(fresh),
            Err(error) => {
                tracing::error!(%error, reason, "the stuck MongoDB client could not be replaced");
                return current.clone();
            }
        };
        let retired = std::mem::replace(&mut *current, fresh.clone());
        drop(current);
        self.inner.timeouts_in_a_row.store(0, Ordering::Relaxed);
        let replacements = self.inner.replacements.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(reason, replacements, "replaced the MongoDB client");
        retire(retired, factory.stuck_after);
        fresh
    }
}

/// Shuts `retired` down once operations that may still hold its connections have ended (each is bounded
/// by `grace`); its runtime goes with the last reference.
fn retire(retired: Arc<Generation>, grace: Duration) {
    // Outside a runtime nothing is in flight: the runtime is dropped at once, with `retired`.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        tokio::time::sleep(grace).await;
        // Closes its idle connections politely; what does not end in time ends with the runtime.
        let _ = tokio::time::timeout(grace, retired.client.clone().shutdown().immediate(true).into_future()).await;
        drop(retired);
    });
}

impl Factory {
    fn generation(&self) -> Result<Generation, ConnectionError> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("mongodb-driver").enable_all().build()?;
        let pending = Arc::new(PendingConnections::default());
        let mut options = self.options.clone();
        let observer = pending.clone();
        options.cmap_event_handler = Some(EventHandler::callback(move |event: CmapEvent| observer.observe(&event)));
        let client = {
            let _driver_runtime = runtime.enter();
            Client::with_options(options)?
        };
        Ok(Generation { client, runtime: Mutex::new(Some(runtime)), pending, born: Instant::now() })
    }
}

impl std::fmt::Debug for MongoConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the options: they hold the credentials.
        f.debug_struct("MongoConnection")
            .field("replaceable", &self.inner.factory.is_some())
            .field("replacements", &self.replacements())
            .finish()
    }
}

impl From<&Client> for MongoConnection {
    fn from(client: &Client) -> MongoConnection {
        MongoConnection::fixed(client)
    }
}

impl From<&MongoConnection> for MongoConnection {
    fn from(connection: &MongoConnection) -> MongoConnection {
        connection.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A server that accepts connections and never answers; counts the ones still open.
    async fn black_hole() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = open.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let open = counted.clone();
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut sink = [0_u8; 1024];
                    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (addr, open)
    }

    fn options(addr: std::net::SocketAddr) -> ClientOptions {
        let mut options = ClientOptions::default();
        options.hosts = vec![mongodb::options::ServerAddress::Tcp { host: addr.ip().to_string(), port: Some(addr.port()) }];
        options.direct_connection = Some(true);
        options.server_selection_timeout = Some(Duration::from_millis(200));
        options.connect_timeout = Some(Duration::from_millis(200));
        options
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_client_with_a_connection_pending_too_long_is_replaced_and_its_sockets_closed() {
        let (addr, open) = black_hole().await;
        let stuck_after = Duration::from_millis(300);
        let mut options = options(addr);
        // The monitor's handshake then waits longer than the test: each client holds one socket.
        options.connect_timeout = Some(Duration::from_secs(30));
        let connection = MongoConnection::replaceable(options, stuck_after).unwrap();
        let first = connection.current();
        let held = |n: usize| {
            let open = open.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(5);
                while open.load(Ordering::SeqCst) != n && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                open.load(Ordering::SeqCst)
            }
        };
        assert_eq!(held(1).await, 1, "the first client's monitor is connected");

        // A pool connection whose handshake began a second ago (what the CMAP events record).
        first.pending.0.lock().unwrap().push((7, Instant::now() - Duration::from_secs(1)));
        assert!(Arc::ptr_eq(&first, &connection.current()), "too young to judge");
        tokio::time::sleep(stuck_after).await;
        let second = connection.current();
        assert!(!Arc::ptr_eq(&first, &second), "a connection pending past the bound replaces the client");
        assert_eq!(connection.replacements(), 1);
        assert!(Arc::ptr_eq(&second, &connection.current()), "the fresh client is kept while it is young");
        assert_eq!(held(2).await, 2, "the fresh client connects beside the retired one");

        // After its grace, the retired client's runtime ends and every socket it held is closed.
        drop(first);
        assert_eq!(held(1).await, 1, "the retired client's socket was closed");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn operations_that_keep_timing_out_replace_the_client_once_it_has_had_its_time() {
        let (addr, _open) = black_hole().await;
        let stuck_after = Duration::from_millis(200);
        let connection = MongoConnection::replaceable(options(addr), stuck_after).unwrap();
        let first = connection.read_current();
        connection.record(true);
        connection.record(false);
        connection.record(true);
        assert!(Arc::ptr_eq(&first, &connection.read_current()), "a success between two timeouts resets the count");
        connection.record(true);
        assert!(Arc::ptr_eq(&first, &connection.read_current()), "too young to judge");
        tokio::time::sleep(stuck_after).await;
        connection.record(true);
        assert!(!Arc::ptr_eq(&first, &connection.read_current()), "timeouts in a row replace the client");
        assert_eq!(connection.replacements(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_fixed_client_is_never_replaced() {
        let (addr, _open) = black_hole().await;
        let client = Client::with_options(options(addr)).unwrap();
        let connection = MongoConnection::fixed(&client);
        let first = connection.read_current();
        for _ in 0..STUCK_TIMEOUTS + 1 {
            connection.record(true);
        }
        assert!(Arc::ptr_eq(&first, &connection.current()));
        assert_eq!(connection.replacements(), 0);
        assert_eq!(format!("{connection:?}"), "MongoConnection { replaceable: false, replacements: 0 }");
    }
}
