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
//! is ever added to this machine's interfaces, and the segment exists only inside namespaces the test
//! created (hubs may use the same range; they never see each other). The nodes of one [`Network`]
//! share a bridge, so they reach each other as a cluster's nodes would.
//!
//! The segment is 10.213.0.0/24 with the gateway at [`GATEWAY`] ([`Network::new`]), or any other one
//! ([`Network::with_segment`]): the end-to-end tier uses [`STANDIN_GATEWAY`]/[`STANDIN_PREFIX_LEN`], the
//! segment of the addresses Heat's stand-ins hand out, so a node can be attached at exactly the address
//! Heat reported for its server ([`Network::attach_at`]).
//!
//! Services of the test listen on this machine's loopback as usual; [`Network::forward`] makes one of
//! them reachable from the nodes at `<gateway>:<same port>`, by a listening socket made inside the hub
//! (a short-lived thread `setns`es into it just to create the socket: a socket stays in the namespace it
//! was created in) whose connections are relayed to the loopback service by threads that never left
//! this machine's namespace. [`Network::hold`] makes a forward keep one node's new connections waiting
//! (a slow service, as a crash test needs it) until [`Network::release`]. [`Network::listen`] gives an
//! in-process server a socket in the hub itself, so it sees the nodes' own addresses.
//!
//! Every namespace is named `hearth-<pid>-<n>`, so namespaces left by a killed test process are
//! recognised and deleted by the next one.

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::Duration;

/// The hub's address on the segment of [`Network::new`]: where nodes reach the test's services.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
/// The prefix length of [`Network::new`]'s segment.
pub const PREFIX_LEN: u8 = 24;
/// The gateway of the segment the Heat stand-ins' fixed addresses live in: `tests/heat/standins.py` hands
/// out 10.0.1xx.1yy, inside 10.0.0.0/16, and never 10.0.0.1. A hub made with
/// `Network::with_segment(STANDIN_GATEWAY, STANDIN_PREFIX_LEN)` takes each node at the very address Heat
/// reported for its server, and Heat's wait-condition endpoints can name this gateway (see
/// `crate::heat::HeatOptions`).
pub const STANDIN_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The prefix length of the stand-ins' segment, 10.0.0.0/16.
pub const STANDIN_PREFIX_LEN: u8 = 16;
/// The bridge in the hub.
const BRIDGE: &str = "br0";
/// The bridge's MAC address (locally administered; every hub is an L2 segment of its own). Set, because
/// a bridge left to choose takes the lowest MAC of its ports and changes it when that port goes: the
/// other nodes' ARP entries for the gateway would then point nowhere when one node is dropped.
const BRIDGE_MAC: &str = "02:68:65:61:72:74";
/// The node's end of its veth pair.
pub const NODE_INTERFACE: &str = "eth0";
/// How long an acceptor sleeps when no connection is waiting: the bound on noticing a stop.
const ACCEPT_POLL: Duration = Duration::from_millis(25);
/// How often a held connection looks whether it was released, its node hung up or the forward stopped.
const HOLD_POLL: Duration = Duration::from_millis(25);
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

    /// A listening socket at `address` made inside this namespace: it belongs to the namespace for its
    /// whole life (and keeps the namespace itself alive while it is open), whatever thread uses it.
    pub fn listen(&self, address: SocketAddr) -> Result<TcpListener> {
        self.inside(|| TcpListener::bind(address)).with_context(|| format!("listening on {address} in {}", self.name))
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

/// An IPv4 segment as the hub's bridge carries it: the gateway's address and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    gateway: Ipv4Addr,
    prefix_len: u8,
}

impl Segment {
    fn new(gateway: Ipv4Addr, prefix_len: u8) -> Result<Segment> {
        // /31 and /32 leave no room for a gateway and a node beside the network and broadcast addresses.
        if !(1..=30).contains(&prefix_len) {
            bail!("a segment's prefix length must be 1 to 30, not {prefix_len}");
        }
        if gateway.is_loopback() || gateway.is_multicast() || gateway.is_unspecified() || gateway.is_broadcast() {
            bail!(
                "{gateway} cannot be a gateway: loopback, multicast, unspecified and broadcast addresses are refused"
            );
        }
        let segment = Segment { gateway, prefix_len };
        if gateway == segment.network() || gateway == segment.broadcast() {
            bail!("{gateway} is the network or broadcast address of {segment}, not one a gateway can have");
        }
        Ok(segment)
    }

    fn mask(self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix_len))
    }

    fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.gateway) & self.mask())
    }

    fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) | !self.mask())
    }

    fn contains(self, address: Ipv4Addr) -> bool {
        u32::from(address) & self.mask() == u32::from(self.network())
    }

    /// Why `address` cannot be a node's on this segment, if it cannot.
    fn refusal(self, address: Ipv4Addr) -> Option<String> {
        if !self.contains(address) {
            Some(format!("{address} is outside the segment {self}"))
        } else if address == self.gateway {
            Some(format!("{address} is the gateway of {self}"))
        } else if address == self.network() || address == self.broadcast() {
            Some(format!("{address} is the network or broadcast address of {self}"))
        } else {
            None
        }
    }

    /// The nodes' addresses in the order [`Network::attach`] hands them out: up from the one after the
    /// gateway, then those below it.
    fn hosts(self) -> impl Iterator<Item = Ipv4Addr> {
        let (first, last, gateway) =
            (u32::from(self.network()) + 1, u32::from(self.broadcast()) - 1, u32::from(self.gateway));
        (gateway + 1..=last).chain(first..gateway).map(Ipv4Addr::from)
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len)
    }
}

/// A hub namespace with a bridge at its gateway, the nodes attached to it and the forwards into it.
/// Dropping it (after every node that holds it) stops the forwards and deletes the hub.
#[derive(Debug)]
pub struct Network {
    hub: Netns,
    segment: Segment,
    /// The attached nodes' addresses, each with the hub's end of its veth pair.
    attached: Mutex<BTreeMap<Ipv4Addr, String>>,
    /// Numbers the hub's ends of the veth pairs (`v<n>`: interface names have at most 15 bytes, too few
    /// for an address).
    next_port: AtomicU32,
    forwards: Mutex<Vec<Forward>>,
}

impl Network {
    /// A new hub: its own namespace, a bridge at [`GATEWAY`] (10.213.0.1/24), no node yet.
    pub fn new() -> Result<Arc<Network>> {
        Network::with_segment(GATEWAY, PREFIX_LEN)
    }

    /// A new hub whose bridge has `gateway/prefix_len` (e.g. [`STANDIN_GATEWAY`]/[`STANDIN_PREFIX_LEN`]).
    /// The segment exists only in the hub and its nodes' namespaces, never on this machine's interfaces.
    pub fn with_segment(gateway: Ipv4Addr, prefix_len: u8) -> Result<Arc<Network>> {
        let segment = Segment::new(gateway, prefix_len)?;
        preflight()?;
        let hub = Netns::create()?;
        hub.ip(&["link", "add", BRIDGE, "address", BRIDGE_MAC, "type", "bridge"])?;
        hub.ip(&["addr", "add", &format!("{gateway}/{prefix_len}"), "dev", BRIDGE])?;
        hub.ip(&["link", "set", BRIDGE, "up"])?;
        Ok(Arc::new(Network {
            hub,
            segment,
            attached: Mutex::new(BTreeMap::new()),
            next_port: AtomicU32::new(0),
            forwards: Mutex::new(Vec::new()),
        }))
    }

    /// The address nodes reach the hub (and every forward) at.
    pub fn gateway(&self) -> Ipv4Addr {
        self.segment.gateway
    }

    /// The segment's prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.segment.prefix_len
    }

    /// The hub namespace's name (for `ip -n`, `nsenter --net=/run/netns/NAME`).
    pub fn hub_name(&self) -> &str {
        self.hub.name()
    }

    /// Gives the hub itself `address` (e.g. a load balancer's VIP, for a server the test runs in the
    /// hub): refused outside the segment, and where a node of this network has it.
    pub fn add_hub_address(&self, address: Ipv4Addr) -> Result<()> {
        {
            let mut attached = lock(&self.attached);
            if let Some(why) = self.segment.refusal(address) {
                bail!("cannot give the hub {address}: {why}");
            }
            if attached.contains_key(&address) {
                bail!("cannot give the hub {address}: a node of {} has it", self.hub.name());
            }
            attached.insert(address, BRIDGE.to_string());
        }
        self.hub.ip(&["addr", "add", &format!("{address}/32"), "dev", BRIDGE])
    }

    /// Wires `node` to the bridge with a new veth pair: `eth0` in the node's namespace gets the first
    /// free address after the gateway and a default route through the gateway. Returns the node's
    /// address.
    pub fn attach(&self, node: &Netns) -> Result<Ipv4Addr> {
        let (address, port) = {
            let mut attached = lock(&self.attached);
            let Some(address) = self.segment.hosts().find(|address| !attached.contains_key(address)) else {
                bail!("the segment {} of {} is full", self.segment, self.hub.name());
            };
            (address, self.reserve(&mut attached, address))
        };
        self.wire(node, address, &port)?;
        Ok(address)
    }

    /// [`Network::attach`] at `address` (e.g. the address Heat reported for the node's server). Refuses
    /// an address outside the segment, the gateway's, and one another node of this network has.
    pub fn attach_at(&self, node: &Netns, address: Ipv4Addr) -> Result<Ipv4Addr> {
        let port = {
            let mut attached = lock(&self.attached);
            if let Some(why) = self.segment.refusal(address) {
                bail!("cannot attach {} at {address}: {why}", node.name());
            }
            if attached.contains_key(&address) {
                bail!("cannot attach {} at {address}: another node of {} has it", node.name(), self.hub.name());
            }
            self.reserve(&mut attached, address)
        };
        self.wire(node, address, &port)?;
        Ok(address)
    }

    /// Takes `address` for a node (under the lock that chose it) and names its veth pair's hub end.
    fn reserve(&self, attached: &mut BTreeMap<Ipv4Addr, String>, address: Ipv4Addr) -> String {
        let port = format!("v{}", self.next_port.fetch_add(1, Ordering::Relaxed));
        attached.insert(address, port.clone());
        port
    }

    /// Creates the veth pair of a reserved address; gives the address back if that fails.
    fn wire(&self, node: &Netns, address: Ipv4Addr, port: &str) -> Result<()> {
        let wired = (|| {
            // Created with each end directly in its namespace, so no name is ever taken in this machine's.
            let add = ["link", "add", port, "type", "veth", "peer", "name", NODE_INTERFACE, "netns", node.name()];
            self.hub.ip(&add)?;
            self.hub.ip(&["link", "set", port, "master", BRIDGE, "up"])?;
            node.ip(&["addr", "add", &format!("{address}/{}", self.segment.prefix_len), "dev", NODE_INTERFACE])?;
            node.ip(&["link", "set", NODE_INTERFACE, "up"])?;
            node.ip(&["route", "add", "default", "via", &self.gateway().to_string()])
        })();
        if wired.is_err() {
            self.detach(address);
        }
        wired.with_context(|| format!("attaching {} at {address} to {}", node.name(), self.hub.name()))
    }

    /// Unplugs the node at `address` (deleting its veth pair, if its namespace has not taken it along
    /// already) and frees the address for another node.
    pub(crate) fn detach(&self, address: Ipv4Addr) {
        let Some(port) = lock(&self.attached).remove(&address) else { return };
        if port == BRIDGE {
            // An address of the hub itself ([`Network::add_hub_address`]): it goes with the hub.
            return;
        }
        if let Err(e) = self.hub.ip(&["link", "delete", &port]) {
            // Deleting the node's namespace deletes the pair with it.
            if !format!("{e:#}").contains("Cannot find device") {
                eprintln!("hearth-tests: {e:#}");
            }
        }
    }

    /// A listening socket at `<gateway>:port` inside the hub (port 0: any free one), for a server of
    /// the test that should see the nodes' own addresses (e.g. `Loopback::builder().on(listener)`).
    pub fn listen(&self, port: u16) -> Result<TcpListener> {
        self.hub.listen(SocketAddr::from((self.gateway(), port))).context("listening in the hub")
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
        let state = Arc::new(ForwardState {
            target,
            stop: AtomicBool::new(false),
            connections: Mutex::default(),
            holds: Mutex::default(),
            released: Condvar::new(),
        });
        let acceptor = {
            let state = Arc::clone(&state);
            std::thread::Builder::new()
                .name(format!("forward {address} -> {target}"))
                .spawn(move || accept_loop(&listener, &state))
                .context("starting a forward's thread")?
        };
        lock(&self.forwards).push(Forward { address, state, acceptor: Some(acceptor) });
        Ok(address)
    }

    /// From now on, the connections that the forward listening at `forwarded` accepts from the node at
    /// `from` are accepted but not relayed: the node's request hangs, as if the service were slow, until
    /// [`Network::release`]. Connections relayed already, and other nodes' connections, are unaffected.
    /// A held connection whose node hangs up (a node killed meanwhile) is closed, never relayed.
    ///
    /// # Panics
    /// If no forward of this network listens at `forwarded` (a mistake in the test).
    pub fn hold(&self, forwarded: SocketAddr, from: Ipv4Addr) {
        self.forward_state(forwarded).holds().held.insert(from);
    }

    /// Ends [`Network::hold`]: the waiting connections from `from` are relayed now, new ones at once.
    ///
    /// # Panics
    /// If no forward of this network listens at `forwarded`.
    pub fn release(&self, forwarded: SocketAddr, from: Ipv4Addr) {
        let state = self.forward_state(forwarded);
        state.holds().held.remove(&from);
        state.released.notify_all();
    }

    /// How many connections from `from` the forward at `forwarded` holds right now (to wait until a
    /// node's request is in flight).
    ///
    /// # Panics
    /// If no forward of this network listens at `forwarded`.
    pub fn held_connections(&self, forwarded: SocketAddr, from: Ipv4Addr) -> usize {
        self.forward_state(forwarded).holds().waiting.get(&from).copied().unwrap_or(0)
    }

    fn forward_state(&self, forwarded: SocketAddr) -> Arc<ForwardState> {
        let forwards = lock(&self.forwards);
        match forwards.iter().find(|forward| forward.address == forwarded) {
            Some(forward) => Arc::clone(&forward.state),
            None => {
                let listening: Vec<SocketAddr> = forwards.iter().map(|forward| forward.address).collect();
                panic!("no forward of the network {} listens at {forwarded} (it has {listening:?})", self.hub.name())
            }
        }
    }
}

/// The open relayed connections of one forward (both sockets), to shut down when the forward stops.
type Connections = Mutex<HashMap<u64, [TcpStream; 2]>>;

/// Which nodes' connections a forward holds, and how many of them wait right now.
#[derive(Debug, Default)]
struct Holds {
    held: HashSet<Ipv4Addr>,
    waiting: HashMap<Ipv4Addr, usize>,
}

/// What a forward's threads share.
#[derive(Debug)]
struct ForwardState {
    target: SocketAddr,
    stop: AtomicBool,
    connections: Connections,
    holds: Mutex<Holds>,
    /// Signalled on every release and on stop.
    released: Condvar,
}

impl ForwardState {
    fn holds(&self) -> MutexGuard<'_, Holds> {
        lock(&self.holds)
    }
}

/// One forward's listening address, acceptor thread and what it relays.
#[derive(Debug)]
struct Forward {
    address: SocketAddr,
    state: Arc<ForwardState>,
    acceptor: Option<JoinHandle<()>>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        // Held connections give up (and close) at once instead of at their next look.
        drop(self.state.holds());
        self.state.released.notify_all();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // A node killed mid-request never closes its end: wake the relay threads blocked on it.
        for pair in lock(&self.state.connections).values() {
            for stream in pair {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Accepts the nodes' connections until told to stop; each one is relayed by threads of its own.
fn accept_loop(listener: &TcpListener, state: &Arc<ForwardState>) {
    static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(0);
    let target = state.target;
    while !state.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((inbound, peer)) => {
                let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
                let state = Arc::clone(state);
                let spawned = std::thread::Builder::new()
                    .name(format!("relay {peer} -> {target}"))
                    .spawn(move || relay(id, inbound, peer, &state));
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

/// Copies bytes both ways between a node's connection and the loopback service until both are done;
/// a held connection first waits for its release.
fn relay(id: u64, inbound: TcpStream, peer: SocketAddr, state: &ForwardState) {
    if !wait_while_held(&inbound, peer, state) {
        // Dropping the socket closes the node's connection.
        return;
    }
    let target = state.target;
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
    lock(&state.connections).insert(id, registered);
    let upstream = std::thread::Builder::new().spawn(move || pump(inbound_reader, outbound_writer));
    pump(outbound, inbound);
    if let Ok(upstream) = upstream {
        let _ = upstream.join();
    }
    lock(&state.connections).remove(&id);
}

/// Keeps a connection from a held node waiting until its node is released. False when the connection
/// is to be closed instead: the node hung up (a killed node; or one that half-closed, which HTTP
/// clients do not do while they wait for an answer) or the forward is stopping.
fn wait_while_held(inbound: &TcpStream, peer: SocketAddr, state: &ForwardState) -> bool {
    let IpAddr::V4(from) = peer.ip() else { return true };
    let mut holds = state.holds();
    if !holds.held.contains(&from) {
        return true;
    }
    *holds.waiting.entry(from).or_default() += 1;
    let relay = loop {
        if state.stop.load(Ordering::Relaxed) || hung_up(inbound) {
            break false;
        }
        if !holds.held.contains(&from) {
            break true;
        }
        holds = state.released.wait_timeout(holds, HOLD_POLL).unwrap_or_else(|poisoned| poisoned.into_inner()).0;
    };
    if let Some(waiting) = holds.waiting.get_mut(&from) {
        *waiting -= 1;
        if *waiting == 0 {
            holds.waiting.remove(&from);
        }
    }
    relay
}

/// Whether the peer closed its end (FIN or RST). A zero-timeout poll for `POLLRDHUP` sees the FIN even
/// behind request bytes nobody has read yet, which a `peek` could not.
fn hung_up(stream: &TcpStream) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(stream, PollFlags::RDHUP)];
    match poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })) {
        Ok(_) => fds[0].revents().intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR),
        Err(_) => false,
    }
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

/// Locks `mutex`, also after a panic elsewhere (the data stays consistent: every critical section here
/// is a single insert, remove or count).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(gateway: [u8; 4], prefix_len: u8) -> Segment {
        Segment::new(Ipv4Addr::from(gateway), prefix_len).unwrap()
    }

    #[test]
    fn the_default_segment_hands_out_addresses_from_two_up() {
        let default = segment(GATEWAY.octets(), PREFIX_LEN);
        assert_eq!(default.to_string(), "10.213.0.0/24");
        let hosts: Vec<Ipv4Addr> = default.hosts().collect();
        assert_eq!(hosts.first(), Some(&Ipv4Addr::new(10, 213, 0, 2)));
        assert_eq!(hosts.last(), Some(&Ipv4Addr::new(10, 213, 0, 254)));
        assert_eq!(hosts.len(), 253, "every address but the network, the gateway and the broadcast");
    }

    #[test]
    fn a_gateway_in_the_middle_hands_out_the_addresses_below_it_last() {
        let hosts: Vec<Ipv4Addr> = segment([192, 168, 7, 5], 29).hosts().collect();
        let expected: Vec<Ipv4Addr> = [6, 1, 2, 3, 4].iter().map(|&last| Ipv4Addr::new(192, 168, 7, last)).collect();
        assert_eq!(hosts, expected);
    }

    #[test]
    fn the_standin_segment_holds_every_address_the_standins_hand_out() {
        let standins = segment(STANDIN_GATEWAY.octets(), STANDIN_PREFIX_LEN);
        assert_eq!(standins.to_string(), "10.0.0.0/16");
        // 10.0.1xx.1yy, the whole range of standins.py's fixed_address.
        for (third, fourth) in [(100, 100), (100, 199), (199, 100), (199, 199), (123, 145)] {
            assert_eq!(standins.refusal(Ipv4Addr::new(10, 0, third, fourth)), None);
        }
        assert_eq!(standins.hosts().next(), Some(Ipv4Addr::new(10, 0, 0, 2)));
    }

    #[test]
    fn node_addresses_outside_the_segment_or_reserved_in_it_are_refused() {
        let standins = segment(STANDIN_GATEWAY.octets(), STANDIN_PREFIX_LEN);
        let refused = |address: [u8; 4]| standins.refusal(Ipv4Addr::from(address)).unwrap_or_default();
        assert!(refused([10, 1, 0, 5]).contains("outside the segment 10.0.0.0/16"), "{}", refused([10, 1, 0, 5]));
        assert!(refused([10, 0, 0, 1]).contains("is the gateway"));
        assert!(refused([10, 0, 0, 0]).contains("network or broadcast"));
        assert!(refused([10, 0, 255, 255]).contains("network or broadcast"));
    }

    #[test]
    fn unusable_segments_are_refused() {
        for (gateway, prefix_len) in
            [([10, 0, 0, 1], 0), ([10, 0, 0, 1], 31), ([127, 0, 0, 1], 8), ([10, 0, 0, 0], 16), ([10, 0, 255, 255], 16)]
        {
            assert!(Segment::new(Ipv4Addr::from(gateway), prefix_len).is_err(), "{gateway:?}/{prefix_len}");
        }
    }
}
