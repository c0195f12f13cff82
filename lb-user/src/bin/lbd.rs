//! lbd: attaches xlb's data plane to interfaces and keeps it running: connection expiry, and
//! with `--config` the services of an ldirectord.cf / keepalived.conf with their health checks,
//! and a Prometheus metrics endpoint.
use std::{path::PathBuf, time::Duration};

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};
use lb_user::{
    dataplane::{self, XdpProgram},
    store::{self, Store},
};

#[derive(Parser)]
#[command(name = "lbd", version, about = "xlb daemon: attach the XDP load balancer, expire connections")]
struct Cli {
    /// Where the maps and links are pinned (default: $XLB_PIN_DIR or /sys/fs/bpf/xlb).
    #[arg(long, global = true)]
    pin_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// Let the kernel choose (native when the driver supports it).
    Auto,
    /// Native (driver) XDP.
    Native,
    /// Generic (skb) XDP.
    Skb,
}

#[derive(Clone, Copy, ValueEnum)]
enum Program {
    /// The load balancer.
    Balancer,
    /// A do-nothing XDP_PASS program (for veth peers receiving XDP_TX frames in labs).
    Pass,
    /// Tunnel decapsulation (IPIP, IPv6-in-IP, GRE, GUE with --gue-port; outer IPv4 or IPv6), for
    /// TUN real servers without tunnel devices (give the real server its own --pin-dir).
    Decap,
}

#[derive(Clone, Copy, ValueEnum)]
enum ConfigFormat {
    Auto,
    Ldirectord,
    Keepalived,
    /// piranha's /etc/sysconfig/ha/lvs.cf.
    Piranha,
}

impl From<ConfigFormat> for lb_user::config::Format {
    fn from(f: ConfigFormat) -> Self {
        match f {
            ConfigFormat::Auto => lb_user::config::Format::Auto,
            ConfigFormat::Ldirectord => lb_user::config::Format::Ldirectord,
            ConfigFormat::Keepalived => lb_user::config::Format::Keepalived,
            ConfigFormat::Piranha => lb_user::config::Format::Piranha,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Attach (or atomically replace) the data plane on an interface.
    Attach {
        iface: String,
        #[arg(long, value_enum, default_value = "auto")]
        mode: Mode,
        #[arg(long, value_enum, default_value = "balancer")]
        program: Program,
        /// With `--program decap`: UDP datagrams to this port (to one of the interface's
        /// addresses) are GUE, as `--tun-port` on the director says (repeatable; no default, as
        /// GUE has none).
        #[arg(long = "gue-port", value_parser = clap::value_parser!(u16).range(1..))]
        gue_ports: Vec<u16>,
    },
    /// Detach the data plane from an interface.
    Detach { iface: String },
    /// Show attachments and the data plane's counters.
    Status,
    /// Run in the foreground: expire connections every `--interval` seconds; with `--config`,
    /// program and health-check the services of an ldirectord.cf or keepalived.conf.
    Run {
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// ldirectord.cf, keepalived.conf (the virtual_server part is used) or piranha's lvs.cf
        /// (its primary/backup heartbeat included).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The configuration's grammar.
        #[arg(long, value_enum, default_value = "auto")]
        format: ConfigFormat,
        /// Serve Prometheus metrics on this address (`/metrics`); `--metrics` alone: 127.0.0.1:9177.
        #[arg(long, num_args = 0..=1, default_missing_value = lb_user::metrics::DEFAULT_ADDR)]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Check a configuration file (as `lbd run --config` would read it) and exit.
    CheckConfig {
        config: PathBuf,
        #[arg(long, value_enum, default_value = "auto")]
        format: ConfigFormat,
    },
    /// Expire connections once and exit.
    Gc,
    /// Show or set IPVS's forwarding sysctls as `sysctl` would (NAME or net.ipv4.vs.NAME; NAME=VALUE
    /// sets it): conn_reuse_mode (1), expire_nodest_conn (0), expire_quiescent_template (0),
    /// sloppy_tcp (0), lblcr_expiration (86400).
    Sysctl { settings: Vec<String> },
    /// Read this namespace's iptables mangle MARK rules into the fwmark classifier, once.
    SyncMarks,
    /// Detach everything and remove all pins (the table with them).
    Teardown,
}

fn main() {
    let cli = Cli::parse();
    lb_user::logging::init();
    if let Err(e) = run(cli) {
        if lb_user::logging::to_journal() {
            tracing::error!("lbd: {e:#}");
        } else {
            eprintln!("lbd: {e:#}");
        }
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = cli.pin_dir.unwrap_or_else(store::pin_dir);
    match cli.cmd {
        Cmd::Attach { iface, mode, program, gue_ports } => {
            let mode = match mode {
                Mode::Auto => dataplane::Mode::Auto,
                Mode::Native => dataplane::Mode::Native,
                Mode::Skb => dataplane::Mode::Skb,
            };
            let program = match program {
                Program::Balancer => XdpProgram::Balancer,
                Program::Pass => XdpProgram::Pass,
                Program::Decap => XdpProgram::Decap,
            };
            dataplane::attach_with_gue_ports(&dir, &iface, program, mode, &gue_ports)?;
            if program == XdpProgram::Balancer && !forwarding_enabled(&iface) {
                eprintln!(
                    "lbd: warning: forwarding is disabled on {iface}: the kernel's FIB lookup refuses to \
                     answer there, so forwarded packets take the slow path. Enable it with \
                     `sysctl -w net.ipv4.conf.{iface}.forwarding=1` for XDP speed."
                );
            }
        }
        Cmd::Detach { iface } => {
            if !dataplane::detach(&dir, &iface)? {
                bail!("nothing attached to {iface}");
            }
        }
        Cmd::Status => {
            let store = Store::open_at(&dir, Default::default())?;
            let g = store.global_stats()?;
            println!("pin dir: {}", dir.display());
            println!("kernel: {}", lb_user::features::kernel_release());
            for line in lb_user::daemon::attachment_report(&dir, &store) {
                println!("{line}");
            }
            let line = |l: &[(&str, u64)]| l.iter().map(|(n, v)| format!("{n} {v}")).collect::<Vec<_>>().join(" ");
            println!("verdicts: {}", line(&g.verdicts()));
            println!("events: {}", line(&g.events()));
        }
        Cmd::Run { interval, config, format, metrics } => {
            if !(interval > 0.0 && interval.is_finite()) {
                bail!("--interval must be a positive number of seconds");
            }
            lb_user::daemon::run(lb_user::daemon::Options {
                pin_dir: dir,
                interval: Duration::from_secs_f64(interval),
                config,
                format: format.into(),
                metrics,
            })?;
        }
        Cmd::CheckConfig { config, format } => {
            let cfg = lb_user::config::load(&config, format.into())?;
            for w in &cfg.warnings {
                eprintln!("{}:{}: warning: {}", config.display(), w.line, w.msg);
            }
            for s in &cfg.services {
                println!("{} ({}): {} real servers", lb_user::model::svc_name(&s.spec.key), s.spec.sched, s.reals.len());
            }
        }
        Cmd::SyncMarks => {
            let (n, skipped) = lb_user::fwmark::sync(&dir)?;
            for s in &skipped {
                eprintln!("lbd: mark rule not honoured: {s}");
            }
            println!("{n} fwmark classifier entries");
        }
        Cmd::Gc => {
            let n = expire(&dir)?;
            println!("expired {n} connection entries");
        }
        Cmd::Teardown => dataplane::teardown(&dir)?,
        Cmd::Sysctl { settings } => {
            let mut store = Store::open_at(&dir, Default::default())?;
            for line in store.update_config(|cfg| lb_user::sysctl::apply(cfg, &settings))? {
                println!("{line}");
            }
        }
    }
    Ok(())
}

fn forwarding_enabled(iface: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{iface}/forwarding")).is_ok_and(|v| v.trim() == "1")
}

/// One expiry pass. The store is opened per pass so lbadm is never locked out for long.
fn expire(dir: &std::path::Path) -> anyhow::Result<usize> {
    let mut store = Store::open_at(dir, Default::default())?;
    store.expire_connections(std::time::Duration::ZERO)
}
