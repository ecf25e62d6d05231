//! One process: bind every socket first (so a port in use fails at once, and tests can ask
//! for port 0 and read the ports back), then serve DHCP, TFTP and HTTP concurrently.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

use crate::clients::Clients;
use crate::config::{Config, Mode};
use crate::dhcp::{self, leases::Leases, policy::Chain, Port};
use crate::fsroot::Root;
use crate::{http, tftp};

pub struct Server {
    cfg: Arc<Config>,
    dhcp: Option<(std::net::UdpSocket, std::net::UdpSocket)>,
    tftp: std::net::UdpSocket,
    http: std::net::TcpListener,
    leases: Option<Leases>,
}

/// Where the server ended up listening.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub dhcp: Option<u16>,
    pub proxy: Option<u16>,
    pub tftp: u16,
    pub http: u16,
}

fn udp(bind: Ipv4Addr, port: u16, iface: Option<&str>, broadcast: bool) -> anyhow::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if broadcast {
        s.set_broadcast(true)?;
    }
    // Room for bursts (a rack powering on at once); the kernel caps it at rmem_max.
    let _ = s.set_recv_buffer_size(4 << 20);
    if let Some(i) = iface {
        s.bind_device(Some(i.as_bytes()))
            .with_context(|| format!("binding to interface {i} (needs root or CAP_NET_RAW)"))?;
    }
    s.bind(&SocketAddr::V4(SocketAddrV4::new(bind, port)).into())
        .with_context(|| format!("binding UDP {bind}:{port}"))?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Raise the soft limit of open files to the hard one (1024 -> 524288 on Debian): the
/// transfer and connection caps in [`crate::config::Limits`] are then far below it, so a
/// flood meets a cap with a clear log line, never "Too many open files" half-way through.
fn raise_open_files() {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

impl Server {
    pub fn bind(cfg: Config) -> anyhow::Result<Server> {
        raise_open_files();
        let iface = cfg.interface.as_deref();
        // On an interface, DHCP takes the wildcard address there whatever --bind says (clients
        // broadcast; a socket bound to one address never sees a broadcast), so two servers on
        // two interfaces of one host can each bind TFTP and HTTP to their own address.
        let dhcp_bind = if iface.is_some() { Ipv4Addr::UNSPECIFIED } else { cfg.bind };
        let dhcp = match cfg.mode {
            Mode::Off => None,
            _ => Some((
                udp(dhcp_bind, cfg.dhcp_port, iface, true)
                    .context("DHCP port (another DHCP server running here? use --dhcp-port for tests)")?,
                udp(dhcp_bind, cfg.proxy_port, iface, true).context("PXE boot server port")?,
            )),
        };
        let tftp = udp(cfg.bind, cfg.tftp_port, None, false).context("TFTP port")?;
        let http = {
            let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            s.set_reuse_address(true)?;
            s.bind(&SocketAddr::V4(SocketAddrV4::new(cfg.bind, cfg.http_port)).into())
                .with_context(|| format!("binding HTTP {}:{}", cfg.bind, cfg.http_port))?;
            s.listen(1024)?;
            s.set_nonblocking(true)?;
            std::net::TcpListener::from(s)
        };
        let leases = match &cfg.mode {
            Mode::Dhcp(p) => {
                let l = Leases::open(p)?;
                tracing::info!(target: "dhcp", "{} leases from {}", l.len(), p.leases_file.display());
                Some(l)
            }
            _ => None,
        };
        Ok(Server { cfg: Arc::new(cfg), dhcp, tftp, http, leases })
    }

    pub fn ports(&self) -> Ports {
        let port = |s: &std::net::UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
        Ports {
            dhcp: self.dhcp.as_ref().map(|(d, _)| port(d)),
            proxy: self.dhcp.as_ref().map(|(_, p)| port(p)),
            tftp: port(&self.tftp),
            http: self.http.local_addr().map(|a| a.port()).unwrap_or(0),
        }
    }

    /// The configuration with the ports actually bound (port 0 resolved).
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Serve until the future is dropped (or the process ends).
    pub async fn run(self) -> anyhow::Result<()> {
        let ports = self.ports();
        let mut cfg = (*self.cfg).clone();
        cfg.tftp_port = ports.tftp;
        cfg.http_port = ports.http;
        if let (Some(d), Some(p)) = (ports.dhcp, ports.proxy) {
            cfg.dhcp_port = d;
            cfg.proxy_port = p;
        }
        let cfg = Arc::new(cfg);
        let clients = Clients::default();
        let root = Root::new(&cfg.root)?;
        let mode = match &cfg.mode {
            Mode::Proxy => "proxyDHCP".to_string(),
            Mode::Dhcp(p) => format!("DHCP {}-{}", p.start, p.end),
            Mode::Off => "no DHCP".to_string(),
        };
        tracing::info!(
            "serving {} (profile {}) at {}: {mode} on {}/{}, TFTP on {}, HTTP on {}",
            cfg.root.display(),
            cfg.manifest.profile,
            cfg.address,
            ports.dhcp.map(|p| p.to_string()).unwrap_or("-".into()),
            ports.proxy.map(|p| p.to_string()).unwrap_or("-".into()),
            ports.tftp,
            ports.http
        );
        if let Some(k) = &cfg.sign_key {
            tracing::info!(
                "per-machine configurations are served signed by minisign key {} (/config/<mac>.minisig)",
                k.id()
            );
        }
        if let Some(sb) = cfg.secure_netboot() {
            tracing::info!(
                "secure netboot: {} UEFI clients get {} -> {} -> {uki} (signed UKI, root checked by dm-verity), UEFI HTTP boot clients {uki} itself; BIOS clients iPXE",
                cfg.manifest.arch,
                sb.shim,
                sb.grub,
                uki = oa_contract::manifest::artifact::SB_UKI
            );
        }
        let mut tasks = tokio::task::JoinSet::new();
        if let Some((d, p)) = self.dhcp {
            let state =
                Arc::new(dhcp::State::new(Chain::for_config(&cfg), self.leases.map(Mutex::new), clients.clone()));
            tasks.spawn(dhcp::summary(state.clone(), std::time::Duration::from_secs(60)));
            let d = Arc::new(tokio::net::UdpSocket::from_std(d)?);
            let p = Arc::new(tokio::net::UdpSocket::from_std(p)?);
            tasks.spawn(dhcp::serve(d, Port::Dhcp, state.clone(), cfg.clone()));
            tasks.spawn(dhcp::serve(p, Port::Proxy, state, cfg.clone()));
        }
        let rpi = crate::rpi::Tree::new(&cfg).context("preparing the Raspberry Pi boot tree")?;
        if rpi.is_some() {
            tracing::info!(target: "rpi", "serving the Raspberry Pi boot tree {}/rpi (cmdline.txt with oa.root= over HTTP)", cfg.root.display());
        }
        let t = Arc::new(tftp::Tftp::new(cfg.clone(), root.clone(), clients.clone(), rpi));
        tasks.spawn(tftp::serve(tokio::net::UdpSocket::from_std(self.tftp)?, t));
        let h = Arc::new(http::Http { cfg: cfg.clone(), root, clients });
        tasks.spawn(http::serve(tokio::net::TcpListener::from_std(self.http)?, h));
        while let Some(r) = tasks.join_next().await {
            r.context("a server task stopped")?;
        }
        Ok(())
    }
}

/// Log to stderr: `RUST_LOG` when set, else info.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}

/// Run the server for `o` until Ctrl-C / SIGTERM: what `oa serve` and `oa-pxe` call.
pub fn run_blocking(o: &crate::cli::Options) -> anyhow::Result<()> {
    init_logging();
    let cfg = Config::from_options(o)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let server = Server::bind(cfg)?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = server.run() => r,
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted, stopping"); Ok(()) }
            _ = term.recv() => { tracing::info!("terminated, stopping"); Ok(()) }
        }
    })
}
