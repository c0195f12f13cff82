//! A real server's TCP and UDP listeners for labs that need exact control of the exchange (no
//! python): one thread in the real server's namespace polls them, each TCP connection answered
//! on a thread of its own by the lab's `answer`, each UDP datagram with the server's name.
//! Stopped on drop.
use std::{
    net::{TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use crate::compare::side::in_netns;

/// How a lab answers one accepted TCP connection.
pub type Answer = Arc<dyn Fn(TcpStream) + Send + Sync>;

pub struct RealServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RealServer {
    /// Listens on `tcp_ports` and `udp_port` (all addresses) in namespace `ns`.
    pub fn start(ns: &str, name: &'static str, tcp_ports: &[u16], udp_port: u16, answer: Answer) -> anyhow::Result<RealServer> {
        let ports = tcp_ports.to_vec();
        let (tcp, udp) = in_netns(ns, move || -> anyhow::Result<_> {
            let mut tcp = Vec::new();
            for port in ports {
                let l = TcpListener::bind(("0.0.0.0", port))?;
                l.set_nonblocking(true)?;
                tcp.push(l);
            }
            let udp = UdpSocket::bind(("0.0.0.0", udp_port))?;
            udp.set_nonblocking(true)?;
            Ok((tcp, udp))
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || serve(name, &tcp, &udp, &flag, &answer));
        Ok(RealServer { stop, thread: Some(thread) })
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(name: &'static str, tcp: &[TcpListener], udp: &UdpSocket, stop: &AtomicBool, answer: &Answer) {
    let mut fds: Vec<libc::pollfd> = tcp
        .iter()
        .map(|l| l.as_raw_fd())
        .chain([udp.as_raw_fd()])
        .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `fds` is a live array of pollfd of the given length.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) } <= 0 {
            continue;
        }
        for l in tcp {
            while let Ok((conn, _)) = l.accept() {
                let answer = answer.clone();
                std::thread::spawn(move || answer(conn));
            }
        }
        let mut buf = [0u8; 2048];
        while let Ok((_, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(name.as_bytes(), from);
        }
    }
}
