//! The network a test's nodes live on: namespaces and veth pairs the test creates, and nothing else.
//!
//! ```text
//!  this machine's namespace           hub namespace (hearth-<pid>-<n>)          node namespace (one per node)
//!  ────────────────────────           ────────────────────────────────          ─────────────────────────────
//!  Heat, hearth-server … on     <──   forward: listens 10.213.0.1:PORT    br0 ── vN ═══ veth ═══ eth0 10.213.0.N/24
//!  127.0.0.1:PORT                     (a thread of the test process)      10.213.0.1/24           default via 10.213.0.1
//! ```
//!
//! Why a hub namespace rather than the host end of the veth in this machine's own namespace: no address
//! is ever added to this machine's interfaces, and 10.213.0.0/24 exists only inside namespaces the test
//! created (every hub uses the same range; hubs never see each other). The nodes of one [`Network`]
//! share a bridge, so they reach each other as a cluster's nodes would.
//!
//! Services of the test listen on this machine's loopback as usual; [`Network::forward`] makes one of
//! them reachable from the nodes at `10.213.0.1:<same port>`, by a listening socket made inside the hub
//! (a short-lived thread `setns`es into it just to create the socket: a socket stays in the namespace it
//! was created in) whose connections are relayed to the loopback service by threads that never left
//! this machine's namespace. [`Network::listen`] gives an in-process server a socket in the hub itself,
//! so it sees the nodes' own addresses.
//!
//! Every namespace is named `hearth-<pid>-<n>`, so namespaces left by a killed test process are
//! recognised and deleted by the next one.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;

/// The hub's address on the nodes' segment: where nodes reach the test's services.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
/// The segment's prefix length.
pub const PREFIX_LEN: u8 = 24;
/// The first address handed to a node (`.2`, after the gateway).
const FIRST_HOST: u8 = 2;
/// The bridge in the hub.
const BRIDGE: &str = "br0";
/// The node's end of its veth pair.
pub const NODE_INTERFACE: &str = "eth0";
/// How long an acceptor sleeps when no connection is waiting: the bound on noticing a stop.
const ACCEPT_POLL: Duration = Duration::from_millis(25);
/// Bound on reaching the loopback service a forward relays to.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Numbers the namespaces this process makes.
static NEXT_NAMESPACE: AtomicU32 = AtomicU32::new(0);
/// Stale namespaces are looked for once per process.
static STALE_SWEEP: Once = Once::new();

/// A network namespace this test made (`ip netns add`), deleted when dropped. Processes still inside
/// keep the namespace itself alive until they end; only the name goes.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// A new, empty namespace named `hearth-<pid>-<n>`, with its loopback up.
    pub fn create() -> Result<Netns> {
        STALE_SWEEP.call_once(remove_stale_namespaces);
        let name = format!("hearth-{}-{}", std::process::id(), NEXT_NAMESPACE.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name])?;
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind mount that pins the namespace (what `--network-namespace-path` and `setns` take).
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n NAME ARGS…`
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut argv = vec!["-n", self.name.as_str()];
        argv.extend_from_slice(args);
        ip(&argv)
    }

    /// Runs `work` on a thread that has entered this namespace; sockets it creates belong to the
    /// namespace for their whole life. The calling thread never changes namespace.
    fn inside<T: Send>(&self, work: impl FnOnce() -> std::io::Result<T> + Send) -> Result<T> {
        let path = self.path();
        let namespace = File::open(&path).with_context(|| format!("opening {path}"))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    rustix::thread::move_into_link_name_space(
                        namespace.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .map_err(std::io::Error::from)
                    .with_context(|| format!("entering the network namespace {path}"))?;
                    work().map_err(anyhow::Error::from)
                })
                .join()
                .unwrap_or_else(|_| bail!("a thread working inside {path} panicked"))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "delete", &self.name]) {
            eprintln!("hearth-tests: {e:#}");
        }
    }
}

/// A hub namespace with a bridge at [`GATEWAY`], the nodes attached to it and the forwards into it.
/// Dropping it (after every node that holds it) stops the forwards and deletes the hub.
#[derive(Debug)]
pub struct Network {
    hub: Netns,
    next_host: Mutex<u8>,
    forwards: Mutex<Vec<Forward>>,
}

impl Network {
    /// A new hub: its own namespace, a bridge at 10.213.0.1/24, no node yet.
    pub fn new() -> Result<Arc<Network>> {
        preflight()?;
        let hub = Netns::create()?;
        let gateway = format!("{GATEWAY}/{PREFIX_LEN}");
        hub.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        hub.ip(&["addr", "add", &gateway, "dev", BRIDGE])?;
        hub.ip(&["link", "set", BRIDGE, "up"])?;
        Ok(Arc::new(Network { hub, next_host: Mutex::new(FIRST_HOST), forwards: Mutex::new(Vec::new()) }))
    }

    /// The address nodes reach the hub (and every forward) at.
    pub fn gateway(&self) -> Ipv4Addr {
        GATEWAY
    }

    /// The hub namespace's name (for `ip -n`, `nsenter --net=/run/netns/NAME`).
    pub fn hub_name(&self) -> &str {
        self.hub.name()
    }

    /// Wires `node` to the bridge with a new veth pair: `eth0` in the node's namespace gets the next free
    /// address and a default route through the gateway. Returns the node's address.
    pub fn attach(&self, node: &Netns) -> Result<Ipv4Addr> {
        let host = {
            let mut next = self.next_host.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if *next == u8::MAX {
                bail!("the 10.213.0.0/24 segment of {} is full", self.hub.name());
            }
            let host = *next;
            *next += 1;
            host
        };
        let address = Ipv4Addr::new(10, 213, 0, host);
        let hub_end = format!("v{host}");
        // Created with each end directly in its namespace, so no name is ever taken in this machine's.
        let add = ["link", "add", &hub_end, "type", "veth", "peer", "name", NODE_INTERFACE, "netns", node.name()];
        self.hub.ip(&add)?;
        self.hub.ip(&["link", "set", &hub_end, "master", BRIDGE, "up"])?;
        node.ip(&["addr", "add", &format!("{address}/{PREFIX_LEN}"), "dev", NODE_INTERFACE])?;
        node.ip(&["link", "set", NODE_INTERFACE, "up"])?;
        node.ip(&["route", "add", "default", "via", &GATEWAY.to_string()])?;
        Ok(address)
    }

    /// A listening socket at `10.213.0.1:port` inside the hub (port 0: any free one), for a server of
    /// the test that should see the nodes' own addresses (e.g. `tiny_http::Server::from_listener`).
    pub fn listen(&self, port: u16) -> Result<TcpListener> {
        let address = SocketAddr::from((GATEWAY, port));
        self.hub.inside(|| TcpListener::bind(address)).with_context(|| format!("listening on {address} in the hub"))
    }

    /// Makes the service at `target` (on this machine's loopback) reachable from the nodes, at the
    /// gateway and the same port when it is free in the hub (else another one). Returns the address the
    /// nodes use. Only loopback targets: the nodes must reach nothing but the test's own services.
    pub fn forward(&self, target: SocketAddr) -> Result<SocketAddr> {
        if !target.ip().is_loopback() {
            bail!("refusing to forward to {target}: only this machine's loopback services may be exposed to nodes");
        }
        let listener = self.listen(target.port()).or_else(|_| self.listen(0))?;
        let address = listener.local_addr().context("reading the forward's address")?;
        listener.set_nonblocking(true).context("making the forward's socket non-blocking")?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections: Connections = Arc::default();
        let acceptor = {
            let (stop, connections) = (Arc::clone(&stop), Arc::clone(&connections));
            std::thread::Builder::new()
                .name(format!("forward {address} -> {target}"))
                .spawn(move || accept_loop(&listener, target, &stop, &connections))
                .context("starting a forward's thread")?
        };
        let forward = Forward { stop, connections, acceptor: Some(acceptor) };
        self.forwards.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(forward);
        Ok(address)
    }
}

/// The open relayed connections of one forward (both sockets), to shut down when the forward stops.
type Connections = Arc<Mutex<HashMap<u64, [TcpStream; 2]>>>;

/// One forward's acceptor thread and what it relays.
#[derive(Debug)]
struct Forward {
    stop: Arc<AtomicBool>,
    connections: Connections,
    acceptor: Option<JoinHandle<()>>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // A node killed mid-request never closes its end: wake the relay threads blocked on it.
        for pair in self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values() {
            for stream in pair {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Accepts the nodes' connections until told to stop; each one is relayed by threads of its own.
fn accept_loop(listener: &TcpListener, target: SocketAddr, stop: &AtomicBool, connections: &Connections) {
    static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(0);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((inbound, peer)) => {
                let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
                let connections = Arc::clone(connections);
                let spawned = std::thread::Builder::new()
                    .name(format!("relay {peer} -> {target}"))
                    .spawn(move || relay(id, inbound, target, &connections));
                if let Err(e) = spawned {
                    eprintln!("hearth-tests: could not relay a connection from {peer} to {target}: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("hearth-tests: the forward to {target} stopped accepting: {e}");
                return;
            }
        }
    }
}

/// Copies bytes both ways between a node's connection and the loopback service until both are done.
fn relay(id: u64, inbound: TcpStream, target: SocketAddr, connections: &Connections) {
    let outbound = match TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) {
        Ok(outbound) => outbound,
        Err(e) => {
            // The node sees its connection closed, as it would if nothing listened.
            eprintln!("hearth-tests: forward: connecting to {target}: {e}");
            return;
        }
    };
    let clones = (|| -> std::io::Result<_> {
        Ok((inbound.try_clone()?, outbound.try_clone()?, [inbound.try_clone()?, outbound.try_clone()?]))
    })();
    let Ok((inbound_reader, outbound_writer, registered)) = clones else { return };
    connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(id, registered);
    let upstream = std::thread::Builder::new().spawn(move || pump(inbound_reader, outbound_writer));
    pump(outbound, inbound);
    if let Ok(upstream) = upstream {
        let _ = upstream.join();
    }
    connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&id);
}

/// Copies `from` into `to` until `from` ends, then tells `to` no more is coming (a half close, so a
/// request body's end reaches the service while its answer still flows back).
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Checks for the tools and rights the network needs, with a message that says what to do.
fn preflight() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("network namespaces and veth pairs need root");
    }
    if crate::debian_tree::find_program("ip").is_none() {
        bail!("`ip` is missing: apt-get install iproute2 (.ci/run installs it)");
    }
    Ok(())
}

/// `ip ARGS…`, failing with the whole command and what `ip` said.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Deletes the namespaces named after test processes that no longer exist (killed before their
/// `Drop` ran). Best effort: a leftover never fails a test.
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("hearth-").and_then(|rest| rest.split('-').next()) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        eprintln!("hearth-tests: deleting the network namespace {name} left by the ended process {pid}");
        if let Err(e) = ip(&["netns", "delete", &name]) {
            eprintln!("hearth-tests: {e:#}");
        }
    }
}
