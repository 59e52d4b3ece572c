//! A TCP proxy between the functions and the engine that misbehaves on command, at exact places in the
//! MongoDB wire protocol: half a request or half a reply, then a reset or silence; a black hole; latency
//! and jitter; a slow trickle; new connections refused while old ones live.
//!
//! Our own rather than `noxious` (a Toxiproxy port): its toxics (latency, bandwidth, slicer, timeout,
//! limit_data, slow_close) work on byte counts and time, not on message boundaries, so "half of the next
//! reply, then nothing, and never a FIN" cannot be said with them, nor "refuse new connections while the
//! old ones keep working".
//!
//! A fault holds from [`FaultProxy::set`] until the next `set`. A connection silenced by a fault stays
//! silent for good, even after the proxy heals: nobody closes it, as after a partition or a NAT's idle
//! timeout. The proxy keeps reading (and dropping) what the client sends on it, only to see when the
//! client closes it, so [`FaultProxy::open_connections`] counts what the client still holds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to traffic while it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwards every message as it comes.
    Healthy,
    /// Half of the next request of each connection reaches the engine, then both sides are reset (RST).
    ResetMidRequest,
    /// Half of the next reply of each connection reaches the client, then both sides are reset (RST).
    ResetMidReply,
    /// Half of the next request reaches the engine, then the connection goes silent for good.
    SilenceMidRequest,
    /// Half of the next reply reaches the client, then the connection goes silent for good.
    SilenceMidReply,
    /// New connections are accepted and never answered; a message sent on an open one is swallowed and
    /// that connection goes silent for good.
    BlackHole,
    /// Every message waits `base` plus up to `jitter` (uniform) before it is forwarded, order kept.
    Latency { base: Duration, jitter: Duration },
    /// Every message is forwarded `bytes` at a time, one piece every `every`.
    Trickle { bytes: usize, every: Duration },
    /// New connections are reset as soon as they are accepted; open ones keep working.
    RefuseNew,
}

/// Counts of what the proxy did, for reports and assertions.
#[derive(Debug, Default)]
pub struct ProxyCounts {
    pub accepted: AtomicU64,
    pub reset: AtomicU64,
    pub silenced: AtomicU64,
    pub refused: AtomicU64,
}

/// A fault-injecting proxy listening on a loopback port of its own, forwarding to `upstream`. Runs on the
/// tokio runtime that started it; stops with it.
#[derive(Clone)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    fault: watch::Sender<Fault>,
    open: Arc<Mutex<u64>>,
    pub counts: Arc<ProxyCounts>,
    /// Each silenced connection's release: [`FaultProxy::reset_silenced`] resets them all.
    silenced: Arc<Mutex<Vec<watch::Sender<bool>>>>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let (fault, _) = watch::channel(Fault::Healthy);
        let proxy =
            FaultProxy { addr: listener.local_addr()?, fault, open: Arc::default(), counts: Arc::default(), silenced: Arc::default() };
        let accepting = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                accepting.counts.accepted.fetch_add(1, Ordering::Relaxed);
                let connection = accepting.clone();
                tokio::spawn(async move { connection.serve(client, upstream).await });
            }
        });
        Ok(proxy)
    }

    /// `host:port` to put in a connection string instead of the engine's.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// `uri` with its one `host:port` replaced by the proxy's.
    pub fn uri_through(&self, uri: &str, upstream: SocketAddr) -> String {
        uri.replacen(&upstream.to_string(), &self.endpoint(), 1)
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// Client connections the client has not closed, silenced ones included.
    pub fn open_connections(&self) -> u64 {
        self.open.lock().map_or(0, |open| *open)
    }

    /// Resets every connection a fault silenced (what an operator's firewall flush would do).
    pub fn reset_silenced(&self) {
        if let Ok(mut silenced) = self.silenced.lock() {
            for release in silenced.drain(..) {
                let _ = release.send(true);
            }
        }
    }

    async fn serve(self, client: TcpStream, upstream: SocketAddr) {
        self.add_open(1);
        let fault = self.fault();
        if fault == Fault::RefuseNew {
            self.counts.refused.fetch_add(1, Ordering::Relaxed);
            reset(client);
            self.add_open(-1);
            return;
        }
        let server = match (fault, TcpStream::connect(upstream).await) {
            (Fault::BlackHole, _) | (_, Err(_)) => {
                // Accepted and never answered (an engine that cannot be reached looks the same).
                self.hold_silently(client, false).await;
                return;
            }
            (_, Ok(server)) => server,
        };
        let _ = server.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let (stop, _) = watch::channel(Ending::Running);
        let requests = self.pump(client_read, server_write, Direction::Request, stop.clone());
        let replies = self.pump(server_read, client_write, Direction::Reply, stop.clone());
        let ((client_read, server_write), (server_read, client_write)) = tokio::join!(requests, replies);
        let ending = *stop.borrow();
        match ending {
            Ending::Reset => {
                self.counts.reset.fetch_add(1, Ordering::Relaxed);
                for write in [client_write, server_write] {
                    let _ = write.as_ref().set_zero_linger();
                    // No FIN first: the last half dropped closes the socket with a reset.
                    write.forget();
                }
                drop((client_read, server_read));
                self.add_open(-1);
            }
            Ending::Silenced => {
                self.counts.silenced.fetch_add(1, Ordering::Relaxed);
                // The engine's side is closed; only the client is left waiting.
                drop((server_read, server_write));
                match client_read.reunite(client_write) {
                    Ok(client) => self.hold_silently(client, true).await,
                    Err(_) => self.add_open(-1),
                }
            }
            Ending::Running | Ending::Closed => self.add_open(-1),
        }
    }

    /// Keeps `client` open and says nothing on it until the client closes it or [`FaultProxy::reset_silenced`];
    /// what the client sends is read and dropped.
    async fn hold_silently(&self, client: TcpStream, counted: bool) {
        if !counted {
            self.counts.silenced.fetch_add(1, Ordering::Relaxed);
        }
        let (release, mut released) = watch::channel(false);
        if let Ok(mut silenced) = self.silenced.lock() {
            silenced.push(release);
        }
        let mut client = client;
        let mut sink = vec![0_u8; 16 * 1024];
        loop {
            tokio::select! {
                read = client.read(&mut sink) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
                _ = released.changed() => {
                    reset(client);
                    self.add_open(-1);
                    return;
                }
            }
        }
        self.add_open(-1);
    }

    /// Forwards whole wire-protocol messages from `from` to `to` under the current fault, until either side
    /// closes or a fault ends the connection. Gives the halves back so the caller can reset or hold them.
    async fn pump<R, W>(&self, mut from: R, mut to: W, direction: Direction, stop: watch::Sender<Ending>) -> (R, W)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut ended = stop.subscribe();
        loop {
            let message = tokio::select! {
                message = read_message(&mut from) => message,
                _ = ended.changed() => return (from, to),
            };
            let Ok(message) = message else {
                // A side closed: end the connection cleanly.
                stop.send_if_modified(|e| std::mem::replace(e, Ending::Closed) == Ending::Running);
                return (from, to);
            };
            let fault = self.fault();
            let halted = match (fault, direction) {
                (Fault::ResetMidRequest, Direction::Request) | (Fault::ResetMidReply, Direction::Reply) => Some(Ending::Reset),
                (Fault::SilenceMidRequest, Direction::Request) | (Fault::SilenceMidReply, Direction::Reply) => Some(Ending::Silenced),
                (Fault::BlackHole, _) => Some(Ending::Silenced),
                _ => None,
            };
            if let Some(ending) = halted {
                if fault != Fault::BlackHole {
                    let _ = to.write_all(&message[..message.len() / 2]).await;
                    let _ = to.flush().await;
                }
                stop.send_if_modified(|e| {
                    let running = *e == Ending::Running;
                    if running {
                        *e = ending;
                    }
                    running
                });
                return (from, to);
            }
            let sent = match fault {
                Fault::Latency { base, jitter } => {
                    tokio::time::sleep(base + jitter.mul_f64(rand::random::<f64>())).await;
                    to.write_all(&message).await
                }
                Fault::Trickle { bytes, every } => {
                    let mut sent = Ok(());
                    for piece in message.chunks(bytes.max(1)) {
                        sent = to.write_all(piece).await;
                        if sent.is_err() {
                            break;
                        }
                        tokio::time::sleep(every).await;
                    }
                    sent
                }
                _ => to.write_all(&message).await,
            };
            if sent.is_err() {
                stop.send_if_modified(|e| std::mem::replace(e, Ending::Closed) == Ending::Running);
                return (from, to);
            }
        }
    }

    fn add_open(&self, delta: i64) {
        if let Ok(mut open) = self.open.lock() {
            *open = open.saturating_add_signed(delta);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Reply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Running,
    Closed,
    Reset,
    Silenced,
}

/// One whole MongoDB wire message (its first four bytes are its length, little-endian, header included).
async fn read_message<R: AsyncRead + Unpin>(from: &mut R) -> std::io::Result<Vec<u8>> {
    let mut length = [0_u8; 4];
    from.read_exact(&mut length).await?;
    let total = i32::from_le_bytes(length);
    let total = usize::try_from(total).ok().filter(|t| (16..=48 << 20).contains(t)).ok_or(std::io::ErrorKind::InvalidData)?;
    let mut message = vec![0_u8; total];
    message[..4].copy_from_slice(&length);
    from.read_exact(&mut message[4..]).await?;
    Ok(message)
}

/// Closes `stream` with a reset (RST) instead of a FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
