//! popt 1.19's tokenisation as ipvsadm uses it: its option table, bundled short options,
//! `--opt=val`, optional arguments and leftovers.
//!
//! Hand-written: ipvsadm's error messages and their order come from popt's own tokeniser, which
//! clap's parsing and messages do not reproduce byte for byte.

/// Whether an option takes an argument (popt's `POPT_ARG_NONE`, `POPT_ARG_STRING`, and
/// `POPT_ARGFLAG_OPTIONAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArgKind {
    None,
    Required,
    Optional,
}

/// What an option stands for (ipvsadm's `CMD_*` / `TAG_*` popt values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    AddService,
    EditService,
    DelService,
    Clear,
    List,
    Zero,
    AddServer,
    EditServer,
    DelServer,
    Set,
    Help,
    Version,
    Restore,
    Save,
    StartDaemon,
    StopDaemon,
    Tcp,
    Udp,
    Sctp,
    Fwmark,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Masq,
    Ipip,
    Gatewaying,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    McastInterface,
    SyncId,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
}

/// ipvsadm's popt option table, in its order (the first match wins).
const OPTIONS: &[(&str, u8, ArgKind, Tag)] = &[
    ("add-service", b'A', ArgKind::None, Tag::AddService),
    ("edit-service", b'E', ArgKind::None, Tag::EditService),
    ("delete-service", b'D', ArgKind::None, Tag::DelService),
    ("clear", b'C', ArgKind::None, Tag::Clear),
    ("list", b'L', ArgKind::None, Tag::List),
    ("list", b'l', ArgKind::None, Tag::List),
    ("zero", b'Z', ArgKind::None, Tag::Zero),
    ("add-server", b'a', ArgKind::None, Tag::AddServer),
    ("edit-server", b'e', ArgKind::None, Tag::EditServer),
    ("delete-server", b'd', ArgKind::None, Tag::DelServer),
    ("set", 0, ArgKind::None, Tag::Set),
    ("help", b'h', ArgKind::None, Tag::Help),
    ("version", b'v', ArgKind::None, Tag::Version),
    ("restore", b'R', ArgKind::None, Tag::Restore),
    ("save", b'S', ArgKind::None, Tag::Save),
    ("start-daemon", 0, ArgKind::Required, Tag::StartDaemon),
    ("stop-daemon", 0, ArgKind::Required, Tag::StopDaemon),
    ("tcp-service", b't', ArgKind::Required, Tag::Tcp),
    ("udp-service", b'u', ArgKind::Required, Tag::Udp),
    ("sctp-service", 0, ArgKind::Required, Tag::Sctp),
    ("fwmark-service", b'f', ArgKind::Required, Tag::Fwmark),
    ("scheduler", b's', ArgKind::Required, Tag::Scheduler),
    ("persistent", b'p', ArgKind::Optional, Tag::Persistent),
    ("netmask", b'M', ArgKind::Required, Tag::Netmask),
    ("real-server", b'r', ArgKind::Required, Tag::RealServer),
    ("masquerading", b'm', ArgKind::None, Tag::Masq),
    ("ipip", b'i', ArgKind::None, Tag::Ipip),
    ("gatewaying", b'g', ArgKind::None, Tag::Gatewaying),
    ("weight", b'w', ArgKind::Required, Tag::Weight),
    ("u-threshold", b'x', ArgKind::Required, Tag::UThreshold),
    ("l-threshold", b'y', ArgKind::Required, Tag::LThreshold),
    ("numeric", b'n', ArgKind::None, Tag::Numeric),
    ("connection", b'c', ArgKind::None, Tag::Connection),
    ("mcast-interface", 0, ArgKind::Required, Tag::McastInterface),
    ("syncid", 0, ArgKind::Required, Tag::SyncId),
    ("timeout", 0, ArgKind::None, Tag::Timeout),
    ("daemon", 0, ArgKind::None, Tag::Daemon),
    ("stats", 0, ArgKind::None, Tag::Stats),
    ("rate", 0, ArgKind::None, Tag::Rate),
    ("thresholds", 0, ArgKind::None, Tag::Thresholds),
    ("persistent-conn", 0, ArgKind::None, Tag::PersistentConn),
    ("nosort", 0, ArgKind::None, Tag::NoSort),
    ("sort", 0, ArgKind::None, Tag::Sort),
    ("exact", b'X', ArgKind::None, Tag::Exact),
    ("ipv6", b'6', ArgKind::None, Tag::Ipv6),
    ("ops", b'o', ArgKind::None, Tag::Ops),
    ("pe", 0, ArgKind::Required, Tag::Pe),
    ("sched-flags", b'b', ArgKind::Required, Tag::SchedFlags),
    ("mcast-group", 0, ArgKind::Required, Tag::McastGroup),
    ("mcast-port", 0, ArgKind::Required, Tag::McastPort),
    ("mcast-ttl", 0, ArgKind::Required, Tag::McastTtl),
    ("sync-maxlen", 0, ArgKind::Required, Tag::SyncMaxlen),
    ("tun-info", 0, ArgKind::None, Tag::TunInfo),
    ("tun-type", 0, ArgKind::Required, Tag::TunType),
    ("tun-port", 0, ArgKind::Required, Tag::TunPort),
    ("tun-nocsum", 0, ArgKind::None, Tag::TunNocsum),
    ("tun-csum", 0, ArgKind::None, Tag::TunCsum),
    ("tun-remcsum", 0, ArgKind::None, Tag::TunRemcsum),
];

/// popt's errors (`POPT_ERROR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PoptErr {
    BadOpt,
    NoArg,
    UnwantedArg,
}

impl PoptErr {
    pub(super) fn text(self) -> &'static str {
        match self {
            PoptErr::BadOpt => "unknown option",
            PoptErr::NoArg => "missing argument",
            PoptErr::UnwantedArg => "option does not take an argument",
        }
    }
}

/// popt's option cursor over `argv` (argv[0] is the program name).
pub(super) struct Popt<'a> {
    argv: &'a [Vec<u8>],
    next: usize,
    /// Rest of a bundle of short options: (word, byte offset).
    next_char: Option<(usize, usize)>,
    rest_leftover: bool,
    leftovers: Vec<usize>,
    next_leftover: usize,
}

/// An option and its argument.
pub(super) type Opt = (Tag, Option<Vec<u8>>);

impl<'a> Popt<'a> {
    pub(super) fn new(argv: &'a [Vec<u8>]) -> Self {
        Popt { argv, next: 1, next_char: None, rest_leftover: false, leftovers: Vec::new(), next_leftover: 0 }
    }

    /// `poptBadOption(.., POPT_BADOPTION_NOALIAS)`: the word read last.
    pub(super) fn bad_option(&self) -> String {
        let i = self.next.saturating_sub(1);
        self.argv.get(i).map(|w| String::from_utf8_lossy(w).into_owned()).unwrap_or_default()
    }

    /// `poptGetArg`.
    pub(super) fn get_arg(&mut self) -> Option<Vec<u8>> {
        let i = *self.leftovers.get(self.next_leftover)?;
        self.next_leftover += 1;
        self.argv.get(i).cloned()
    }

    /// `poptGetNextOpt`: Ok(None) at the end.
    pub(super) fn next_opt(&mut self) -> Result<Option<Opt>, PoptErr> {
        let argc = self.argv.len();
        loop {
            if self.next_char.is_none() && self.next >= argc {
                return Ok(None);
            }
            let mut long_arg: Option<Vec<u8>> = None;
            let mut found: Option<&(&str, u8, ArgKind, Tag)> = None;
            if self.next_char.is_none() {
                let w = self.next;
                self.next += 1;
                let word = &self.argv[w];
                if self.rest_leftover || word.first() != Some(&b'-') || word.len() == 1 {
                    self.leftovers.push(w);
                    continue;
                }
                if word.as_slice() == b"--" {
                    self.rest_leftover = true;
                    continue;
                }
                if word[1] == b'-' {
                    let s = &word[2..];
                    let (name, arg) = match s.iter().position(|&c| c == b'=') {
                        Some(eq) => (&s[..eq], Some(s[eq + 1..].to_vec())),
                        None => (s, None),
                    };
                    found = OPTIONS.iter().find(|o| o.0.as_bytes() == name);
                    if found.is_none() {
                        return Err(PoptErr::BadOpt);
                    }
                    long_arg = arg;
                } else {
                    self.next_char = Some((w, 1));
                }
            }
            if let Some((w, off)) = self.next_char.take() {
                let word = &self.argv[w];
                let c = word.get(off).copied().unwrap_or(0);
                found = if c == 0 { None } else { OPTIONS.iter().find(|o| o.1 == c) };
                if found.is_none() {
                    return Err(PoptErr::BadOpt);
                }
                let rest = off + 1;
                if rest < word.len() {
                    self.next_char = Some((w, rest + usize::from(word[rest] == b'=')));
                }
            }
            let Some(&(_, _, kind, tag)) = found else {
                return Err(PoptErr::BadOpt);
            };
            let value = match kind {
                ArgKind::None => {
                    let eq_next = self
                        .next_char
                        .is_some_and(|(w, off)| self.argv[w].get(off) == Some(&b'='));
                    if long_arg.is_some() || eq_next {
                        return Err(PoptErr::UnwantedArg);
                    }
                    None
                }
                ArgKind::Required | ArgKind::Optional => {
                    if long_arg.is_some() {
                        long_arg
                    } else if let Some((w, off)) = self.next_char.take() {
                        let word = &self.argv[w];
                        let off = off + usize::from(word.get(off) == Some(&b'='));
                        Some(word.get(off..).unwrap_or_default().to_vec())
                    } else if self.next >= argc {
                        if kind == ArgKind::Required {
                            return Err(PoptErr::NoArg);
                        }
                        None
                    } else if kind == ArgKind::Optional && self.argv[self.next].first() == Some(&b'-') {
                        None
                    } else {
                        let v = self.argv[self.next].clone();
                        self.next += 1;
                        Some(v)
                    }
                }
            };
            return Ok(Some((tag, value)));
        }
    }
}
