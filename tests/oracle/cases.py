"""Case definitions for the ipvsadm golden recordings (see record-ipvsadm.py).

Each file maps to a list of cases; a case is (name, about, [steps]); a step is
(argv_list, stdin_text_or_None).  Every case starts from an empty table.
Only addresses from 10/8, 172.16/12, 192.168/16, 2001:db8::/32 and fd00::/8 are used.
"""
import shlex


def S(cmd, stdin=None):
    """One step: cmd is a shell-like string (split with shlex) or an explicit argv list."""
    argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    return (argv, stdin)


def case(name, about, *steps):
    out = []
    for s in steps:
        if isinstance(s, (list, tuple)) and s and isinstance(s[0], tuple):
            out.extend(s)  # a pre-built list of steps
        elif isinstance(s, tuple):
            out.append(s)
        else:
            out.append(S(s))
    return (name, about, out)


LS = S("-Ln")
SV = S("-Sn")

SCHEDULERS = ["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"]

# --------------------------------------------------------------------------------------------
commands = []
C = commands.append

C(case("version", "-v / --version text", "-v", "--version", "-v -n"))
C(case("help-short", "-h prints the usage text", "-h"))
C(case("help-long", "--help prints the usage text", "--help"))
C(case("list-empty", "listing an empty table in every spelling",
       S([]), "-L", "-Ln", "-l", "-ln", "--list", "--list --numeric", "-L -n", "-S", "-Sn", "--save", "--save -n"))
for sch in SCHEDULERS:
    C(case(f"sched-{sch}", f"-A with -s {sch}, listed and saved",
           f"-A -t 10.0.0.1:80 -s {sch}", f"-a -t 10.0.0.1:80 -r 192.168.1.1 -w 2", LS, SV))
C(case("sched-unknown", "unknown / overlong / empty scheduler names",
       "-A -t 10.0.0.1:80 -s foo", "-A -t 10.0.0.1:80 -s abcdefghijklmnopq", "-A -t 10.0.0.1:80 -s abcdefghijklmno",
       "-A -t 10.0.0.1:80 -s RR", ["-A", "-t", "10.0.0.1:80", "-s", ""], LS))
C(case("sched-long-forms", "--scheduler=NAME and --scheduler NAME",
       "-A -t 10.0.0.1:80 --scheduler=rr", "-A -t 10.0.0.2:80 --scheduler wrr", "-A -t 10.0.0.3:80", LS, SV))
C(case("persistent-forms", "-p with/without value, -p600, --persistent=600, -p -M, bounds",
       "-A -t 10.0.0.1:80 -p", "-A -t 10.0.0.2:80 -p 600", "-A -t 10.0.0.3:80 -p600",
       "-A -t 10.0.0.4:80 --persistent=600", "-A -t 10.0.0.5:80 --persistent 700",
       "-A -t 10.0.0.6:80 -p -M 255.255.255.0", "-A -t 10.0.0.7:80 -p -s rr",
       "-A -t 10.0.0.8:80 -s rr -p", "-A -t 10.0.0.9:80 -p 2678400",
       "-A -t 10.0.0.10:80 -p 2678401", "-A -t 10.0.0.11:80 -p 0", "-A -t 10.0.0.12:80 -p abc",
       "-A -t 10.0.0.13:80 -p -1", "-A -t 10.0.0.14:80 -p 1", "-A -t 10.0.0.15:80 -p 10x",
       LS, SV))
C(case("persistent-port0", "port 0 needs persistence",
       "-A -t 10.0.0.1:0", "-A -t 10.0.0.1", "-A -t 10.0.0.1:0 -p", "-A -t 10.0.0.2 -p 120",
       "-A -u 10.0.0.3:0 -s rr", "-A -u 10.0.0.3:0 -s rr -p 30",
       "-a -t 10.0.0.1:0 -r 192.168.1.1", "-a -t 10.0.0.1:0 -r 192.168.1.2:8080 -m",
       "-a -t 10.0.0.1:0 -r 192.168.1.3:8080", LS, SV))
C(case("netmask-v4", "-M masks for IPv4",
       "-A -t 10.0.0.1:80 -p -M 255.255.0.0", "-A -t 10.0.0.2:80 -M 255.255.255.0",
       "-A -t 10.0.0.3:80 -p 60 -M 255.0.255.0", "-A -t 10.0.0.4:80 -p -M 24",
       "-A -t 10.0.0.5:80 -p -M foo.invalid", "-A -t 10.0.0.6:80 -p -M 255.255.255.255",
       "-A -t 10.0.0.7:80 -p -M 0.0.0.0", "-A -t 10.0.0.8:80 --netmask=255.255.255.128 -p", LS, SV))
C(case("netmask-v6", "-M prefix lengths for IPv6 services and -f -6",
       "-A -t [2001:db8::1]:80 -p -M 64", "-A -t [2001:db8::2]:80 -p -M 0", "-A -t [2001:db8::3]:80 -p -M 129",
       "-A -t [2001:db8::4]:80 -p -M 128", "-A -t [2001:db8::5]:80 -p -M 255.255.255.0",
       "-A -f 5 -6 -p -M 96", "-A -M 64 -f 6 -6 -p", "-A -f 7 -p -M 64", LS, SV))
C(case("sched-flags", "-b valid, invalid and incompatible flags",
       "-A -t 10.0.0.1:80 -s sh -b sh-port", "-A -t 10.0.0.2:80 -s sh -b sh-fallback,sh-port",
       "-A -t 10.0.0.3:80 -s mh -b mh-fallback", "-A -t 10.0.0.4:80 -s mh -b mh-port,mh-fallback",
       "-A -t 10.0.0.5:80 -s rr -b flag-1,flag-2,flag-3", "-A -t 10.0.0.6:80 -s rr -b sh-port",
       "-A -t 10.0.0.7:80 -b sh-port", "-A -t 10.0.0.8:80 -s sh -b mh-port", "-A -t 10.0.0.9:80 -b foo",
       "-A -t 10.0.0.10:80 -b flag-1,foo", "-A -t 10.0.0.11:80 -s wlc -b flag-2",
       ["-A", "-t", "10.0.0.12:80", "-b", ""], "-A -t 10.0.0.13:80 -s sh --sched-flags=flag-3",
       "-A -t 10.0.0.14:80 -s mh -b sh-port", "-A -t 10.0.0.15:80 -s sh -b flag-1,sh-port,flag-3",
       "-A -t 10.0.0.16:80 -s dh -b flag-1", LS, SV))
C(case("ops", "-o one-packet scheduling on udp / tcp / fwmark",
       "-A -u 10.0.0.1:53 -o", "-A -t 10.0.0.1:80 -o", "-A -f 7 -o", "-A -u 10.0.0.2:53 --ops -p 30",
       "-A -t 10.0.0.3:80 --ops -p", "-A --sctp-service 10.0.0.4:80 -o", LS, SV))
C(case("pe-sip", "--pe sip with and without persistence, unknown pe",
       "-A -u 10.0.0.1:5060 -p 60 --pe sip", "-A -u 10.0.0.2:5060 --pe sip", "-A -u 10.0.0.3:5060 -p --pe foo",
       "-A -t 10.0.0.4:5060 -p --pe sip", "-A -u 10.0.0.5:5060 -p --pe=sip -o", LS, SV))
C(case("real-server-port", "-r with and without port, DR/TUN port forcing, NAT keeps port",
       "-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 192.168.1.1", "-a -t 10.0.0.1:80 -r 192.168.1.2:8080",
       "-a -t 10.0.0.1:80 -r 192.168.1.3:8080 -m", "-a -t 10.0.0.1:80 -r 192.168.1.4 -m",
       "-a -t 10.0.0.1:80 -r 192.168.1.5:8080 -i", "-a -t 10.0.0.1:80 -r 192.168.1.6:0 -m",
       "-A -f 3", "-a -f 3 -r 192.168.1.6", "-a -f 3 -r 192.168.1.7:8080 -m", "-a -f 3 -r 192.168.1.8:8080 -g",
       LS, SV))
C(case("forwarding", "every forwarding switch, long forms, duplicates",
       "-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 192.168.1.1 -g", "-a -t 10.0.0.1:80 -r 192.168.1.2 -i",
       "-a -t 10.0.0.1:80 -r 192.168.1.3 -m", "-a -t 10.0.0.1:80 -r 192.168.1.4 --gatewaying",
       "-a -t 10.0.0.1:80 -r 192.168.1.5 --ipip", "-a -t 10.0.0.1:80 -r 192.168.1.6 --masquerading",
       "-a -t 10.0.0.1:80 -r 192.168.1.7 -g -m", "-a -t 10.0.0.1:80 -r 192.168.1.8 -m -m", LS, SV))
C(case("weights", "-w bounds and forms",
       "-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 192.168.1.1 -w 0", "-a -t 10.0.0.1:80 -r 192.168.1.2 -w 65535",
       "-a -t 10.0.0.1:80 -r 192.168.1.3 -w 65536", "-a -t 10.0.0.1:80 -r 192.168.1.4 -w -1",
       "-a -t 10.0.0.1:80 -r 192.168.1.5 -w abc", "-a -t 10.0.0.1:80 -r 192.168.1.6 --weight=7",
       "-a -t 10.0.0.1:80 -r 192.168.1.7 -w 2147483648", "-a -t 10.0.0.1:80 -r 192.168.1.8 -w 010",
       "-a -t 10.0.0.1:80 -r 192.168.1.9 -w 0x10", "-a -t 10.0.0.1:80 -r 192.168.1.10 -w ''", LS, SV))
C(case("thresholds", "-x/-y values incl. -y without -x (kernel ERANGE)",
       "-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 192.168.1.1 -x 100 -y 10",
       "-a -t 10.0.0.1:80 -r 192.168.1.2 -x 0 -y 0", "-a -t 10.0.0.1:80 -r 192.168.1.3 -y 10",
       "-a -t 10.0.0.1:80 -r 192.168.1.4 -x 10", "-a -t 10.0.0.1:80 -r 192.168.1.5 -x -1",
       "-a -t 10.0.0.1:80 -r 192.168.1.6 -x 2147483647 -y 2147483647",
       "-a -t 10.0.0.1:80 -r 192.168.1.7 -x 2147483648", "-a -t 10.0.0.1:80 -r 192.168.1.8 -y -1",
       "-a -t 10.0.0.1:80 -r 192.168.1.9 --u-threshold=5 --l-threshold=5",
       "-a -t 10.0.0.1:80 -r 192.168.1.10 -x 5 -y 6", "-a -t 10.0.0.1:80 -r 192.168.1.11 -x abc",
       LS, "-Ln --thresholds", SV))
C(case("tunnel-options", "--tun-type/--tun-port/csum combinations",
       "-A -t 10.0.0.1:80",
       "-a -t 10.0.0.1:80 -r 192.168.1.1 -i --tun-type ipip",
       "-a -t 10.0.0.1:80 -r 192.168.1.2 -i --tun-type gue --tun-port 6080",
       "-a -t 10.0.0.1:80 -r 192.168.1.3 -i --tun-type gue",
       "-a -t 10.0.0.1:80 -r 192.168.1.3 -i --tun-type ipip --tun-port 1",
       "-a -t 10.0.0.1:80 -r 192.168.1.3 -i --tun-type gue --tun-port 0",
       "-a -t 10.0.0.1:80 -r 192.168.1.3 -i --tun-type gue --tun-port 65536",
       "-a -t 10.0.0.1:80 -r 192.168.1.3 -i --tun-type gue --tun-port 6081 --tun-nocsum",
       "-a -t 10.0.0.1:80 -r 192.168.1.4 -i --tun-type gue --tun-port 6082 --tun-csum",
       "-a -t 10.0.0.1:80 -r 192.168.1.5 -i --tun-type gue --tun-port 6083 --tun-remcsum",
       "-a -t 10.0.0.1:80 -r 192.168.1.6 -i --tun-type gue --tun-port 6084 --tun-csum --tun-remcsum",
       "-a -t 10.0.0.1:80 -r 192.168.1.6 -i --tun-type gue --tun-port 6084 --tun-nocsum --tun-csum",
       "-a -t 10.0.0.1:80 -r 192.168.1.6 -i --tun-type gre",
       "-a -t 10.0.0.1:80 -r 192.168.1.7 -i --tun-type gre --tun-csum",
       "-a -t 10.0.0.1:80 -r 192.168.1.8 -i --tun-type gre --tun-nocsum",
       "-a -t 10.0.0.1:80 -r 192.168.1.9 -i --tun-type gre --tun-remcsum",
       "-a -t 10.0.0.1:80 -r 192.168.1.9 -i --tun-type ipip --tun-nocsum",
       "-a -t 10.0.0.1:80 -r 192.168.1.9 -i --tun-type vxlan",
       "-a -t 10.0.0.1:80 -r 192.168.1.9 -m --tun-type gue --tun-port 6080",
       "-a -t 10.0.0.1:80 -r 192.168.1.9 --tun-type ipip",
       "-a -t 10.0.0.1:80 -r 192.168.1.9 -i --tun-port 6080",
       "-a -t 10.0.0.1:80 -r 192.168.1.9 -i --tun-csum",
       "-a -t 10.0.0.1:80 -r 192.168.1.10 -i --tun-type=gue --tun-port=7000 --tun-remcsum",
       "-a -t 10.0.0.1:80 -r 192.168.1.11 -i",
       LS, "-Ln --tun-info", "-L --tun-info", SV,
       "-e -t 10.0.0.1:80 -r 192.168.1.2 -i", "-Ln --tun-info", SV))
C(case("ipv6-services", "IPv6 services and dests, mixed AF, -6 placement",
       "-A -t [2001:db8::1]:80 -s rr", "-a -t [2001:db8::1]:80 -r [2001:db8::10]:80 -m",
       "-a -t [2001:db8::1]:80 -r [2001:db8::11]:8080 -m -w 3", "-a -t [2001:db8::1]:80 -r [2001:db8::12]:8080",
       "-a -t [2001:db8::1]:80 -r 10.1.1.1 -m", "-a -t [2001:db8::1]:80 -r 10.1.1.2 -i",
       "-a -t [2001:db8::1]:80 -r [2001:db8::13]", "-A -u [fd00::1]:53 -s sh",
       "-a -u [fd00::1]:53 -r [fd00::2]:5353 -m", "-A -t 2001:db8::2:80", "-A -t [2001:db8::3]",
       "-A -t [2001:db8::3]:80 -6", "-A -f 5 -6", "-A -6 -f 6", "-a -f 5 -6 -r [fd00::5]",
       "-a -f 5 -6 -r [fd00::6]:8080 -m", "-a -f 5 -r [fd00::7]", "-A -t 10.0.0.1:80",
       "-a -t 10.0.0.1:80 -r [2001:db8::20] -m", "-a -t 10.0.0.1:80 -r [2001:db8::21] -i",
       "-A -t [::ffff:10.0.0.9]:80", "-A -t [2001:db8::ff]:80 -p 60 -M 48",
       LS, SV, "-L -n -t [2001:db8::1]:80", "-L -n -f 5 -6", "-L -n -f 5"))
C(case("fwmark-services", "fwmark values and parsing",
       "-A -f 1", "-A -f 0", "-A -f 4294967295", "-A -f 4294967296", "-A -f abc", "-A -f 0x10",
       "-A -f 010", "-A -f -1", "-a -f 1 -r 10.1.0.5 -i -w 3", "-a -f 1 -r 10.1.0.6 -i -w 1",
       "-A --fwmark-service=77 -s rr", LS, SV, "-L -n -f 1", "-L -n -f 2"))
C(case("sctp-service", "SCTP services",
       "-A --sctp-service 10.0.0.1:3868 -s rr", "-a --sctp-service 10.0.0.1:3868 -r 192.168.1.1 -m",
       "-a --sctp-service 10.0.0.1:3868 -r 192.168.1.2:3869", LS, "-L", SV, "-S"))
C(case("address-parsing", "VIP/RIP address and port syntax",
       "-A -t 10.1:80", "-A -t 10:80", "-A -t 10.0.0.2:http", "-A -u 10.0.0.2:domain",
       "-A -t 10.0.0.3:65535", "-A -t 10.0.0.3:65536", "-A -t 10.0.0.3:-1", "-A -t 10.0.0.3:",
       "-A -t 10.0.0.3:nosuchservice", "-A -t 10.0.0.4:0x50", "-A -t 10.0.0.256:80", "-A -t :80",
       "-A -t 10.0.0.5:80:90", "-A -t [2001:db8::6:80", "-A -t [2001:db8::6]x80", "-A -t 10.0.0.7:080",
       "-A -u 10.0.0.8:sip", "-a -t 10.0.0.2:80 -r 192.168.1.1:https -m", "-a -t 10.0.0.2:80 -r 192.168.1",
       "-a -t 10.0.0.2:80 -r 192.168.1.300", "-a -t 10.0.0.2:80 -r 10", "-a -t 10.0.0.2:80 -r 192.168.2.1:70000 -m",
       LS, SV))
C(case("edit-service-replaces", "-E resets scheduler to wlc, clears persistence and flags",
       "-A -t 10.0.0.1:80 -s rr -p 600 -M 255.255.255.0", "-a -t 10.0.0.1:80 -r 192.168.1.1 -m -w 4", SV,
       "-E -t 10.0.0.1:80", SV, "-E -t 10.0.0.1:80 -s sh -b sh-port", SV, "-E -t 10.0.0.1:80 -p", SV,
       "-E -t 10.0.0.1:80 -s rr -p 30 -M 255.255.0.0", LS, "-E -t 10.0.0.2:80 -s rr",
       "-E -t 10.0.0.1:80 -s nosuch", SV, "-E -u 10.0.0.1:80", "-E -t 10.0.0.1:0", "-E -t 10.0.0.1:80 -o",
       "-A -u 10.0.0.3:53 -o", "-E -u 10.0.0.3:53", SV, "--edit-service --tcp-service=10.0.0.1:80 --scheduler=lc", SV))
C(case("edit-server-replaces", "-e resets weight to 1, forwarding to DR (port forced), thresholds to 0",
       "-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 192.168.1.1:8080 -m -w 5 -x 10 -y 2", LS, "-Ln --thresholds",
       "-e -t 10.0.0.1:80 -r 192.168.1.1:8080", "-e -t 10.0.0.1:80 -r 192.168.1.1:8080 -m", LS, "-Ln --thresholds",
       "-a -t 10.0.0.1:80 -r 192.168.1.2 -w 3", "-e -t 10.0.0.1:80 -r 192.168.1.2:9999", LS,
       "-e -t 10.0.0.1:80 -r 192.168.1.2 -m", LS, "-e -t 10.0.0.1:80 -r 192.168.1.2:80 -m -w 9", SV,
       "-e -t 10.0.0.1:80 -r 192.168.1.2 -i -w 2", SV, "-e -t 10.0.0.1:80 -r 192.168.1.3", "-e -t 10.0.0.9:80 -r 192.168.1.3",
       "-e -t 10.0.0.1:80 -r 192.168.1.2 -y 5", "-e -t 10.0.0.1:80 -r 192.168.1.2 -w 65536", SV))
C(case("delete-server", "-d uses the given port (no forcing); port omitted = service port",
       "-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 192.168.1.1:8080", "-a -t 10.0.0.1:80 -r 192.168.1.2:8080 -m",
       "-a -t 10.0.0.1:80 -r 192.168.1.3 -m", LS,
       "-d -t 10.0.0.1:80 -r 192.168.1.1:8080", "-d -t 10.0.0.1:80 -r 192.168.1.1:80", "-d -t 10.0.0.1:80 -r 192.168.1.2",
       "-d -t 10.0.0.1:80 -r 192.168.1.2:8080", "-d -t 10.0.0.1:80 -r 192.168.1.3", "-d -t 10.0.0.1:80 -r 192.168.1.3",
       "-d -t 10.0.0.9:80 -r 192.168.1.3", "-d -t 10.0.0.1:80 -r 192.168.1.9 -w 1", "--delete-server -t 10.0.0.1:80",
       LS))
C(case("delete-service", "-D existing / missing / malformed",
       "-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 192.168.1.1", "-A -u 10.0.0.1:80", "-D -t 10.0.0.1:80", LS,
       "-D -t 10.0.0.1:80", "-D", "-D -t 10.0.0.2:80 -s rr", "-D -u 10.0.0.1:80 -p", "--delete-service -u 10.0.0.1:80",
       LS, "-A -f 9", "-D -f 9", "-D -f 9"))
C(case("clear", "-C in its spellings and with options",
       "-A -t 10.0.0.1:80", "-A -u 10.0.0.1:80", "-C", LS, "-A -t 10.0.0.1:80", "--clear", LS, "-C -n", "-C -t 10.0.0.1:80",
       "-C extra", "-C"))
C(case("kernel-errors", "errors returned by the kernel (exit 255)",
       "-A -t 10.0.0.1:80", "-A -t 10.0.0.1:80", "-A -t 10.0.0.1:80 -s rr", "-E -t 10.0.0.2:80", "-D -t 10.0.0.2:80",
       "-Z -t 10.0.0.2:80", "-a -t 10.0.0.2:80 -r 192.168.1.1", "-e -t 10.0.0.2:80 -r 192.168.1.1",
       "-d -t 10.0.0.2:80 -r 192.168.1.1", "-a -t 10.0.0.1:80 -r 192.168.1.1", "-a -t 10.0.0.1:80 -r 192.168.1.1",
       "-a -t 10.0.0.1:80 -r 192.168.1.1 -m -w 3", "-e -t 10.0.0.1:80 -r 192.168.1.2", "-d -t 10.0.0.1:80 -r 192.168.1.2",
       "-A -t 10.0.0.3:80 -s nosuch", "-A -u 10.0.0.3:80 -p --pe nosuch", "-a -t 10.0.0.1:80 -r 192.168.1.3 -y 1",
       "-a -u 10.0.0.1:80 -r 192.168.1.1", "-a -f 1 -r 192.168.1.1", "-L -n -t 10.0.0.2:80", "-L -n -f 1",
       "-L -t 10.0.0.2:80", "-a -t 10.0.0.1:80 -r 192.168.1.255", "-a -t 10.0.0.1:80 -r 10.255.255.255 -m",
       "-Sn"))
C(case("zero", "-Z with and without a service", "-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 192.168.1.1",
       "-A -f 4", "-Z", "-Z -t 10.0.0.1:80", "-Z -f 4", "-Z -t 10.0.0.9:80", "-Z -f 9", "--zero", "-Z -n",
       "-Z -t 10.0.0.1:80 -r 192.168.1.1", "-Z -t 10.0.0.1:80 -s rr", "-Ln --stats", "-Z extra"))
C(case("set-timeouts", "--set with 3 values, wrong counts, 0 values, listing",
       "-L --timeout", "--set 10 20 30", "-L --timeout", "--set 0 0 0", "-L --timeout", "--set 0 5 0",
       "-L --timeout", "--set 1 2", "--set", "--set 1 2 3 4", "--set a b c", "--set -1 2 3",
       "--set 10 20 30 -n", "--set 4294967295 1 1", "--set 2147483648 1 1", "--set 1 1 1", "-L --timeout", "-Ln --timeout",
       "--set=5 6 7", "-L --timeout", "--set 28800 30 600", "-L --timeout"))
C(case("sync-daemon", "--start-daemon / --stop-daemon and -L --daemon",
       "-L --daemon", "--start-daemon master", "-L --daemon", "--stop-daemon master",
       "--start-daemon master --mcast-interface lo", "-L --daemon", "--start-daemon master --mcast-interface lo",
       "--start-daemon backup --mcast-interface lo --syncid 5", "-L --daemon", "--stop-daemon master",
       "--stop-daemon master", "--stop-daemon backup", "--stop-daemon backup", "-L --daemon",
       "--start-daemon foo", "--stop-daemon foo", "--start-daemon", "--stop-daemon",
       "--start-daemon master --mcast-interface lo --mcast-group 224.0.0.100 --mcast-port 9000 --mcast-ttl 2 --sync-maxlen 1000",
       "-L --daemon", "--stop-daemon master",
       "--start-daemon master --mcast-interface lo --mcast-group 10.0.0.1",
       "--start-daemon master --mcast-interface lo --syncid 256",
       "--start-daemon master --mcast-interface lo --mcast-port 0",
       "--start-daemon master --mcast-interface lo --mcast-ttl 256",
       "--start-daemon master --mcast-interface lo --sync-maxlen 70000",
       "--start-daemon master --mcast-interface lo --mcast-group ff02::1",
       "-L --daemon", "--stop-daemon master", "--stop-daemon master --mcast-interface lo",
       "--start-daemon master -n", "--start-daemon master --mcast-interface nosuchif0", "-L --daemon",
       "--stop-daemon master"))

# --------------------------------------------------------------------------------------------
errors = []
E = errors.append
SVC = "-A -t 10.0.0.1:80"
E(case("option-before-command", "the first option must be a command",
       "-t 10.0.0.1:80 -A", "-n -L", "-s rr -A -t 10.0.0.1:80", "-r 192.168.1.1 -a -t 10.0.0.1:80", "-6 -f 1 -A",
       "--numeric --list", "--tcp-service 10.0.0.1:80", "foo", "-- -L", "-"))
E(case("second-command", "a second command letter after the command",
       "-A -t 10.0.0.1:80 -D", "-L -C", "-L -L", "-Ln -S", "-A -A -t 10.0.0.1:80", "-C -C", "-L -Z", "-S -L",
       "-L --list", "-A -t 10.0.0.2:80 --clear", "-Z -L", "-L -h", "-A -t 10.0.0.1:80 -v", "-h -L", "-v -L",
       "--set 1 2 3 -L", "-L --set 1 2 3", "-L --start-daemon master", "-R -L", "-L -R"))
E(case("unknown-options", "unknown short/long options",
       "-A --foo", "-L -q", "--foo", "-Q", "-L --numeric-foo", "-L --num", "-L --stat", "-A -t 10.0.0.1:80 -X",
       "-L -X", "-L --exact", "-Ln -X --stats", "-L -T", "-Lz", "-A -t 10.0.0.1:80 -s rr --bogus=1"))
E(case("missing-arguments", "options that need an argument at end of line",
       "-A -t", "-A -t 10.0.0.1:80 -s", "-a -t 10.0.0.1:80 -r", "-A -f", "-A -u", "-a -t 10.0.0.1:80 -r 192.168.1.1 -w",
       "-a -t 10.0.0.1:80 -r 192.168.1.1 -x", "-A -t 10.0.0.1:80 -M", "-A -t 10.0.0.1:80 --pe", "-A -t 10.0.0.1:80 -b",
       "-a -t 10.0.0.1:80 -r 192.168.1.1 -i --tun-type", "--start-daemon master --mcast-interface", "-A --sctp-service",
       "-A -t 10.0.0.1:80 -s -p", "-A -t -s rr"))
E(case("non-option-words", "stray words after the command",
       "-A -t 10.0.0.1:80 foo", "-L foo", "-Ln extra words", "-C foo", "-S foo", "-Z foo", "-D -t 10.0.0.1:80 foo",
       "-A -t 10.0.0.1:80 -s rr 600", "-L -n -- -c", "-A -t 10.0.0.2:80 -p 60 70", "-v foo", "-h foo", LS))
E(case("bundling", "bundled short options",
       "-Ln", "-Lnc", "-At 10.0.0.1:80", "-At10.0.0.1:80", "-Lnt 10.0.0.1:80", "-ln", "-nL", "-Ast 10.0.0.2:80 rr",
       "-At 10.0.0.3:80 -ps rr", "-At 10.0.0.4:80 -p600", "-at 10.0.0.1:80 -r192.168.1.1 -mw3",
       "-at 10.0.0.1:80 -mr 192.168.1.2 -w3", "-Lc", "-LnZ", "-Sn", "-nS", LS, SV))
E(case("long-option-equals", "--opt=val and --opt val",
       "--add-service --tcp-service=10.0.0.1:80 --scheduler=rr", "--add-service --udp-service 10.0.0.1:53 --scheduler rr",
       "--add-server --tcp-service=10.0.0.1:80 --real-server=192.168.1.1 --masquerading --weight=4",
       "--list --numeric", "--list=foo", "--add-service=10.0.0.9:80", "--numeric=1 -L", "-L --numeric=1",
       "--save --numeric", "--add-service --tcp-service=10.0.0.2:80 --persistent", "--list --numeric --tcp-service=10.0.0.2:80"))
ILLEGAL = [
    ("A", "-A -t 10.0.0.1:80 -n"), ("A", "-A -t 10.0.0.1:80 -r 192.168.1.1"), ("A", "-A -t 10.0.0.1:80 -w 1"),
    ("A", "-A -t 10.0.0.1:80 -g"), ("A", "-A -t 10.0.0.1:80 -m"), ("A", "-A -t 10.0.0.1:80 -x 1"),
    ("A", "-A -t 10.0.0.1:80 -c"), ("A", "-A -t 10.0.0.1:80 --timeout"), ("A", "-A -t 10.0.0.1:80 --stats"),
    ("A", "-A -t 10.0.0.1:80 --mcast-interface lo"), ("A", "-A -t 10.0.0.1:80 --tun-type ipip"),
    ("A", "-A -t 10.0.0.1:80 --syncid 1"), ("A", "-A -t 10.0.0.1:80 --nosort"), ("A", "-A -t 10.0.0.1:80 --exact"),
    ("E", "-E -t 10.0.0.1:80 -r 192.168.1.1"), ("E", "-E -t 10.0.0.1:80 -n"),
    ("D", "-D -t 10.0.0.1:80 -s rr"), ("D", "-D -t 10.0.0.1:80 -p"), ("D", "-D -t 10.0.0.1:80 -r 192.168.1.1"),
    ("D", "-D -t 10.0.0.1:80 -n"), ("D", "-D -t 10.0.0.1:80 -o"),
    ("C", "-C -n"), ("C", "-C -t 10.0.0.1:80"), ("C", "-C -s rr"),
    ("R", "-R -n"), ("R", "-R -t 10.0.0.1:80"),
    ("S", "-S -t 10.0.0.1:80"), ("S", "-S -s rr"), ("S", "-S -c"), ("S", "-S --stats"), ("S", "-S -n -n"),
    ("a", "-a -t 10.0.0.1:80 -r 192.168.1.1 -s rr"), ("a", "-a -t 10.0.0.1:80 -r 192.168.1.1 -p"),
    ("a", "-a -t 10.0.0.1:80 -r 192.168.1.1 -o"), ("a", "-a -t 10.0.0.1:80 -r 192.168.1.1 -n"),
    ("a", "-a -t 10.0.0.1:80 -r 192.168.1.1 -M 255.255.255.0"), ("a", "-a -t 10.0.0.1:80 -r 192.168.1.1 --pe sip"),
    ("a", "-a -t 10.0.0.1:80 -r 192.168.1.1 -b flag-1"),
    ("e", "-e -t 10.0.0.1:80 -r 192.168.1.1 -s rr"),
    ("d", "-d -t 10.0.0.1:80 -r 192.168.1.1 -w 1"), ("d", "-d -t 10.0.0.1:80 -r 192.168.1.1 -m"),
    ("d", "-d -t 10.0.0.1:80 -r 192.168.1.1 -x 1"), ("d", "-d -t 10.0.0.1:80 -r 192.168.1.1 --tun-type ipip"),
    ("L", "-L -s rr"), ("L", "-L -r 192.168.1.1"), ("L", "-L -w 1"), ("L", "-L -p"), ("L", "-L -m"),
    ("L", "-L --mcast-interface lo"), ("L", "-L -o"),
    ("Z", "-Z -n"), ("Z", "-Z -r 192.168.1.1"), ("Z", "-Z -t 10.0.0.1:80 -s rr"), ("Z", "-Z --stats"),
    ("set", "--set 10 20 30 -n"), ("set", "--set 10 20 30 -t 10.0.0.1:80"),
    ("start", "--start-daemon master -n"), ("start", "--start-daemon master -t 10.0.0.1:80"),
    ("stop", "--stop-daemon master --mcast-interface lo"), ("stop", "--stop-daemon master --mcast-group 224.0.0.100"),
    ("stop", "--stop-daemon master --syncid 3"),
]
E(case("illegal-options", "Illegal '%s' option with the '%s' command, one per line (on an existing service)",
       SVC, "-a -t 10.0.0.1:80 -r 192.168.1.1", *[cmd for _, cmd in ILLEGAL], SV))
E(case("need-to-supply", "You need to supply the '%s' option ...",
       "-A", "-E", "-D", "-a", "-e", "-d", "-a -t 10.0.0.1:80", "-a -r 192.168.1.1", "-e -t 10.0.0.1:80",
       "-d -t 10.0.0.1:80", "-d -r 192.168.1.1", "-A -s rr", "-A -p", "-a -w 2", "-E -s rr", "-D -n",
       "-a -t 10.0.0.1:80 -r 192.168.1.1 -i --tun-type gue", "-A -6"))
E(case("list-conflicts", "exclusive list options and the extra conflict rule",
       SVC, "-L -c --timeout", "-L --timeout -c", "-L -c -t 10.0.0.1:80", "-L -t 10.0.0.1:80 -c",
       "-L --daemon --timeout", "-L --timeout --daemon", "-L -c --stats", "-L --stats -c", "-L --timeout --rate",
       "-L --daemon --thresholds", "-L --daemon --persistent-conn", "-L --timeout --persistent-conn",
       "-L -c --persistent-conn", "-L -n --stats --rate", "-L -n -t 10.0.0.1:80 --stats", "-L -t 10.0.0.1:80 --timeout",
       "-L -c --daemon", "-L -n -c -n", "-L --daemon -t 10.0.0.1:80", "-L -c --thresholds", "-L -n --stats -c --timeout"))
E(case("multiple-options", "multiple '%s' options specified",
       "-A -t 10.0.0.1:80 -t 10.0.0.2:80", "-A -t 10.0.0.1:80 -u 10.0.0.2:80", "-A -t 10.0.0.1:80 -f 1",
       "-A -t 10.0.0.1:80 -s rr -s wlc", "-A -t 10.0.0.1:80 -p 10 -p 20", "-A -t 10.0.0.1:80 -p -M 255.0.0.0 -M 255.0.0.0",
       "-A -u 10.0.0.1:80 -o -o", "-A -t 10.0.0.1:80 -b flag-1 -b flag-2", "-A -u 10.0.0.1:80 -p --pe sip --pe sip",
       SVC, "-a -t 10.0.0.1:80 -r 192.168.1.1 -g -m", "-a -t 10.0.0.1:80 -r 192.168.1.1 -i -i",
       "-a -t 10.0.0.1:80 -r 192.168.1.1 -w 1 -w 2", "-a -t 10.0.0.1:80 -r 192.168.1.1 -r 192.168.1.2",
       "-a -t 10.0.0.1:80 -r 192.168.1.1 -x 1 -x 2", "-L -n -n", "-L --stats --stats", "-L -c -c",
       "-L --nosort --nosort", "-L --sort --sort", "-L --exact --exact", "-L --tun-info --tun-info", "-S -n -n",
       "-A -f 2 -6 -6", "-a -t 10.0.0.1:80 -r 192.168.1.1 -i --tun-type ipip --tun-type ipip", LS))
E(case("semantic-checks", "ipvsadm-side semantic checks (exit 2)",
       "-A -t 10.0.0.1:0", "-A -t 10.0.0.1", "-A -u 10.0.0.1:0 -s rr", "-A -t 10.0.0.1:0 -p 10", SVC,
       "-a -t 10.0.0.1:80 -r [2001:db8::1] -m", "-a -t 10.0.0.1:80 -r [2001:db8::1] -g",
       "-a -t 10.0.0.1:80 -r [2001:db8::1]:8080 -i", "-A -t [2001:db8::1]:80", "-a -t [2001:db8::1]:80 -r 192.168.1.1",
       "-a -t [2001:db8::1]:80 -r 192.168.1.1 -i", "-A -t 10.0.0.2:80 -o", "-E -t 10.0.0.1:80 -o", "-E -t 10.0.0.1:0",
       "-A -t 10.0.0.3:80 -s rr -b sh-port", "-A -t 10.0.0.3:80 -b sh-port -s sh", LS, SV))

# --------------------------------------------------------------------------------------------
RICH = [S(x) for x in [
    "-A -t 10.0.0.1:80 -s rr",
    "-a -t 10.0.0.1:80 -r 192.168.1.10:8080 -m -w 3",
    "-a -t 10.0.0.1:80 -r 192.168.1.2 -g -w 2",
    "-a -t 10.0.0.1:80 -r 10.1.0.5 -i -w 0",
    "-a -t 10.0.0.1:80 -r 172.16.0.9:8000 -m -x 100 -y 10",
    "-A -t 10.0.0.1:443 -s wlc -p 600 -M 255.255.255.0",
    "-a -t 10.0.0.1:443 -r 192.168.1.11 -g",
    "-a -t 10.0.0.1:443 -r 192.168.1.12 -g -w 5 -x 50",
    "-A -u 10.0.0.2:53 -s sh -b sh-port,sh-fallback -o",
    "-a -u 10.0.0.2:53 -r 192.168.1.12 -m -w 5",
    "-a -u 10.0.0.2:53 -r 192.168.1.13:5353 -m -w 65535",
    "-A -u 10.0.0.2:5060 -s rr -p 60 --pe sip",
    "-a -u 10.0.0.2:5060 -r 192.168.1.14 -m",
    "-A -f 1 -s wrr -p 600",
    "-a -f 1 -r 10.1.0.5 -i -w 3",
    "-a -f 1 -r 10.1.0.6 -i --tun-type gue --tun-port 6080 --tun-remcsum",
    "-a -f 1 -r 10.1.0.7 -i --tun-type gre --tun-csum",
    "-a -f 1 -r 10.1.0.8 -i --tun-type gue --tun-port 6081 --tun-nocsum",
    "-A -f 2 -6 -s mh -b mh-port -p 120 -M 64",
    "-a -f 2 -6 -r [2001:db8::20] -i",
    "-A -t [2001:db8::1]:80 -s lc",
    "-a -t [2001:db8::1]:80 -r [2001:db8::10]:8080 -m -w 2",
    "-a -t [2001:db8::1]:80 -r [fd00::10] -g",
    "-A -t 192.168.50.1:8080 -s nq",
    "-a -t 192.168.50.1:8080 -r 192.168.50.2 -m -w 1",
    "-A -t 172.16.5.5:22 -s fo -p",
    "-a -t 172.16.5.5:22 -r 172.16.5.6 -g -w 10",
    "-a -t 172.16.5.5:22 -r 172.16.5.7 -g -w 20",
    "-A --sctp-service 10.0.0.3:3868 -s rr",
    "-a --sctp-service 10.0.0.3:3868 -r 192.168.1.15 -m",
    "-A -f 3 -s dh -b flag-1,flag-3",
    "-a -f 3 -r 192.168.1.16:443 -m",
]]
listing = []
L = listing.append
L(case("rich-plain", "rich table: -Ln, -L, ipvsadm, -l", RICH, LS, "-L", S([]), "-l -n", "--list", "-L -n --sort"))
L(case("rich-stats", "rich table: --stats / --rate / --exact", RICH, "-Ln --stats", "-L --stats", "-Ln --rate",
       "-L --rate", "-Ln --stats --exact", "-Ln --rate --exact", "-Ln --exact", "-L -n --stats -t 10.0.0.1:80",
       "-L -n --rate -f 1"))
L(case("rich-thresholds", "rich table: --thresholds / --persistent-conn / --tun-info", RICH,
       "-Ln --thresholds", "-L --thresholds", "-Ln --persistent-conn", "-L --persistent-conn", "-Ln --tun-info",
       "-L --tun-info", "-L -n --thresholds -t 10.0.0.1:80", "-L -n --tun-info -f 1", "-L -n --persistent-conn -f 1"))
L(case("rich-precedence", "several listing formats at once (precedence)", RICH,
       "-Ln --stats --rate", "-Ln --rate --thresholds", "-Ln --thresholds --persistent-conn",
       "-Ln --persistent-conn --tun-info", "-Ln --tun-info --stats", "-Ln --thresholds --tun-info"))
L(case("rich-save", "rich table: -Sn, -S, --save", RICH, SV, "-S", "--save --numeric", "-S -n"))
L(case("rich-single-service", "-L with a service selector, present and missing", RICH,
       "-L -n -t 10.0.0.1:80", "-L -t 10.0.0.1:80", "-L -n -t 10.0.0.1:443", "-L -n -u 10.0.0.2:53", "-L -n -f 1",
       "-L -n -f 2 -6", "-L -n -t [2001:db8::1]:80", "-L -n --sctp-service 10.0.0.3:3868", "-L -n -t 10.0.0.9:80",
       "-L -n -u 10.0.0.1:80", "-L -n -f 99", "-Ln -t 10.0.0.1:80", "-L -n -t 10.0.0.1"))
# NOTE: "-Ln --nosort" on a table with several services is NOT recorded: the kernel service hash
# (ip_vs_svc_hashkey mixes in the netns pointer) gives a different service order on every boot.
# Dest order (reverse insertion) is deterministic and is covered by nosort-dests / sort-dests-quirk-a.
L(case("rich-conn-timeout-daemon", "-c (no connections), --timeout, --daemon on a rich table", RICH,
       "-Lnc", "-Lc", "-L -n -c --persistent-conn", "-L --timeout", "--set 100 20 30", "-L --timeout", "-Ln --timeout",
       "-L --daemon", "-Lnc --exact", "-L -c --nosort"))
L(case("nosort-dests", "--nosort dest order is reverse insertion for one service",
       "-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 192.168.1.3 -m", "-a -t 10.0.0.1:80 -r 192.168.1.1 -m",
       "-a -t 10.0.0.1:80 -r 192.168.1.2 -m", "-a -t 10.0.0.1:80 -r 10.1.1.1 -m", "-Ln --nosort", LS,
       "-d -t 10.0.0.1:80 -r 192.168.1.1", "-a -t 10.0.0.1:80 -r 192.168.1.1 -m", "-Ln --nosort",
       "-e -t 10.0.0.1:80 -r 192.168.1.3 -m -w 4", "-Ln --nosort", "-S -n --nosort"))
SORT_SVCS = ["10.0.0.1:80", "192.168.0.1:80", "172.16.0.1:80", "10.0.0.1:8080", "192.168.0.1:25",
             "172.31.255.255:80", "10.255.255.255:80", "192.168.255.1:80"]
L(case("sort-services-quirk-a", "service sort with IPv4 comparator wrap, insertion order A",
       *[f"-A -t {v} -s rr" for v in SORT_SVCS], *[f"-A -u {v} -s rr" for v in SORT_SVCS[:3]], LS, SV))
L(case("sort-services-quirk-b", "service sort with IPv4 comparator wrap, insertion order B (reversed)",
       *[f"-A -t {v} -s rr" for v in reversed(SORT_SVCS)], *[f"-A -u {v} -s rr" for v in reversed(SORT_SVCS[:3])], LS, SV))
SORT_DESTS = ["192.168.0.1", "10.0.0.5", "172.16.0.1", "10.0.0.4", "192.168.0.1:81", "10.0.0.4:79",
              "172.20.0.1", "10.200.0.1", "192.168.200.1"]
L(case("sort-dests-quirk-a", "dest sort with IPv4 comparator wrap (NAT keeps ports), order A",
       "-A -t 10.0.0.1:80 -s rr", *[f"-a -t 10.0.0.1:80 -r {d} -m" for d in SORT_DESTS], LS, SV, "-Ln --nosort"))
L(case("sort-dests-quirk-b", "dest sort with IPv4 comparator wrap (NAT keeps ports), order B",
       "-A -t 10.0.0.1:80 -s rr", *[f"-a -t 10.0.0.1:80 -r {d} -m" for d in reversed(SORT_DESTS)], LS, SV))
L(case("sort-fwmark-v6", "fwmarks sort after addresses; IPv4 before IPv6; TCP<UDP<SCTP",
       "-A -f 20", "-A -f 3 -6", "-A -f 3", "-A -f 100", "-A -u [2001:db8::1]:80", "-A -t [2001:db8::1]:80",
       "-A -t [2001:db8::1]:79", "-A -t [fd00::1]:80", "-A --sctp-service 10.0.0.1:80", "-A -u 10.0.0.1:80",
       "-A -t 10.0.0.1:80", "-A -t 10.0.0.1:79", LS, SV,
       "-a -t [2001:db8::1]:80 -r [2001:db8::3] -m", "-a -t [2001:db8::1]:80 -r [2001:db8::2]:81 -m",
       "-a -t [2001:db8::1]:80 -r [2001:db8::2]:80 -m", "-a -t [2001:db8::1]:80 -r [fd00::2] -m",
       "-L -n -t [2001:db8::1]:80", "-L -n -t [2001:db8::1]:80 --nosort"))
L(case("long-names", "column truncation with long IPv6 addresses",
       "-A -t [fd00:1234:5678:9abc:def0:1234:5678:9abc]:65535 -s rr",
       "-a -t [fd00:1234:5678:9abc:def0:1234:5678:9abc]:65535 -r [fd00:1234:5678:9abc:def0:1234:5678:9abd]:65535 -m",
       "-A -t 192.168.100.100:65535 -s lblcr -p 2678400 -M 255.255.255.254",
       "-a -t 192.168.100.100:65535 -r 192.168.100.101 -g -w 65535 -x 2147483647 -y 2147483647",
       "-A -f 4294967295 -s rr -p", "-A -f 4294967294 -6 -p -M 1 -s rr",
       LS, SV, "-Ln --thresholds", "-Ln --stats", "-Ln --rate", "-Ln --persistent-conn", "-Ln --tun-info", "-L"))
L(case("names-resolution", "-L/-S without -n: /etc/services port names, unresolved IPs",
       "-A -t 10.0.0.1:22 -s rr", "-A -t 10.0.0.1:25", "-A -u 10.0.0.1:53", "-A -t 10.0.0.1:443", "-A -t 10.0.0.1:3306",
       "-A -t 10.0.0.1:12345", "-A -u 10.0.0.1:123", "-A -t 10.0.0.1:8080", "-A -t [2001:db8::1]:80",
       "-a -t 10.0.0.1:22 -r 192.168.1.1:22", "-a -t 10.0.0.1:25 -r 192.168.1.1:587 -m", "-L", "-S", LS))

# --------------------------------------------------------------------------------------------
GOOD_R = """-A -t 10.0.0.1:80 -s rr
-a -t 10.0.0.1:80 -r 192.168.1.1:80 -m -w 1
-a -t 10.0.0.1:80 -r 192.168.1.2:8080 -m -w 2
-A -u 10.0.0.2:53 -s sh -b sh-port
-a -u 10.0.0.2:53 -r 192.168.1.3:53 -g -w 0
-A -f 1 -s wrr -p 600
-a -f 1 -r 10.1.0.5:0 -i -w 3 --tun-type ipip
-a -f 1 -r 10.1.0.6:0 -i -w 1 --tun-type gue --tun-port 6080 --tun-remcsum
-A -t [2001:db8::1]:443 -s wlc -p 360 -M 64
-a -t [2001:db8::1]:443 -r [2001:db8::2]:443 -g -w 1
"""
restore = []
R = restore.append
R(case("restore-good", "-R reproduces a table; then -Sn and -Ln", S("-R", GOOD_R), SV, LS))
R(case("restore-roundtrip", "the rich table's own -A/-a lines fed to -R after -C (an -a with a bare [v6] dest aborts the rest)", RICH, SV, "-C", S("-R", "".join(
    " ".join(a) + "\n" for a, _ in RICH)), SV))
R(case("restore-kernel-error-continues", "a kernel error mid-input prints and continues",
       S("-R", "-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 192.168.1.1 -m\n"
             "-a -t 10.0.0.9:80 -r 192.168.1.1\n-a -t 10.0.0.1:80 -r 192.168.1.2 -m\n"), SV))
R(case("restore-kernel-error-last", "kernel error on the last line: exit status",
       S("-R", "-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.1:80 -s rr\n"), SV,
       "-C", S("-R", "-A -t 10.0.0.1:80 -s rr\n-D -t 10.0.0.9:80\n-A -t 10.0.0.2:80\n"), SV))
R(case("restore-arg-error-aborts", "an argument error aborts the rest of the input",
       S("-R", "-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80 -s rr -w 3\n-A -t 10.0.0.3:80 -s rr\n"), SV,
       "-C", S("-R", "-A -t 10.0.0.1:80\n-A -t 10.0.0.2:0\n-A -t 10.0.0.3:80\n"), SV,
       "-C", S("-R", "-A -t 10.0.0.1:80\n-A -t 10.0.0.2:80 --bogus\n-A -t 10.0.0.3:80\n"), SV,
       "-C", S("-R", "-A -t 10.0.0.1:80\n-A -t\n-A -t 10.0.0.3:80\n"), SV))
R(case("restore-comments", "# comment lines in -R input",
       S("-R", "# saved by hand\n-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80 -s rr\n"), SV,
       "-C", S("-R", "-A -t 10.0.0.1:80 -s rr\n# middle comment\n-A -t 10.0.0.2:80 -s rr\n"), SV,
       "-C", S("-R", "-A -t 10.0.0.1:80 -s rr # trailing comment\n-A -t 10.0.0.2:80 -s rr\n"), SV,
       "-C", S("-R", "#-A -t 10.0.0.1:80\n"), SV))
R(case("restore-blank-lines", "blank and whitespace-only lines, tabs, leading blanks",
       S("-R", "\n-A -t 10.0.0.1:80 -s rr\n\n   \n\t-A\t-t\t10.0.0.2:80  -s   rr\n\n"), SV,
       "-C", S("-R", "-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80 -s rr"), SV,
       "-C", S("-R", "-A -t 10.0.0.1:80 -s rr\r\n-A -t 10.0.0.2:80 -s rr\r\n"), SV))
R(case("restore-ipvsadm-word", "lines containing the word ipvsadm",
       S("-R", "ipvsadm -A -t 10.0.0.1:80 -s rr\n-A ipvsadm -t 10.0.0.2:80 -s rr\n/sbin/ipvsadm -A -t 10.0.0.3:80\n"
             "-A -t 10.0.0.4:80 -s rr ipvsadm\nipvsadm\n"), SV))
R(case("restore-nested", "-R and other commands inside -R input",
       S("-R", "-A -t 10.0.0.1:80 -s rr\n-R\n-A -t 10.0.0.2:80 -s rr\n"), SV,
       "-C", S("-R", "-A -t 10.0.0.1:80 -s rr\n-L -n\n-S -n\n--set 10 20 30\n-L --timeout\n-C\n-A -t 10.0.0.3:80\n"), SV,
       "-C", S("-R", "-A -t 10.0.0.1:80 -s rr\n-h\n-A -t 10.0.0.2:80\n"), SV,
       "-C", S("-R", "-A -t 10.0.0.1:80 -s rr\n-v\n-A -t 10.0.0.2:80\n"), SV))
R(case("restore-empty", "empty input, only comments, -R with options",
       S("-R", ""), S("-R", None), S("-R", "\n\n"), S("-R -n", ""), S("-R foo", ""), S("--restore", "-A -t 10.0.0.1:80\n"), SV))
R(case("restore-save-format-names", "-S (with names) output fed to -R",
       S("-R", "-A -t 10.0.0.1:http -s rr\n-a -t 10.0.0.1:http -r 192.168.1.1:http -m -w 1\n"), SV))
R(case("restore-long-line", "a line with many tokens and quotes",
       S("-R", "-A -t 10.0.0.1:80 -s rr -p 60 -M 255.255.255.0 -b flag-1\n-A -t \"10.0.0.2:80\" -s rr\n"
             "-A -t '10.0.0.3:80'\n"), SV))

# --------------------------------------------------------------------------------------------
seeds = []
SD = seeds.append
SD(case("seed-000-terminal", "seeds/000 interactive session (DR, rr, -p 600), then bare ipvsadm",
        "-C", "-A -t 192.168.60.200:80 -s rr -p 600", "-a -t 192.168.60.200:80 -r 192.168.60.132:80 -g",
        "-a -t 192.168.60.200:80 -r 192.168.60.144:80 -g", S([]), LS))
SD(case("seed-000-script", "seeds/000 director script with VIP/RIP1/RIP2 substituted",
        "-C", "-A -t 192.168.60.200:80 -s rr -p 600", "-a -t 192.168.60.200:80 -r 192.168.60.132:80 -g",
        "-a -t 192.168.60.200:80 -r 192.168.60.144:80 -g", S([]), LS, "-C", LS))
SD(case("seed-001-fwmark", "seeds/001 fwmark 100 wrr with bare -p, NAT weights 1/2",
        "-C", "-A -f 100 -s wrr -p", "-a -f 100 -r 192.168.239.129 -m -w 1", "-a -f 100 -r 192.168.239.133 -m -w 2",
        LS, SV))
SD(case("seed-002-dserver", "seeds/002 Dserver.sh ($ipv/$vip/$rs1/$rs2 substituted), wrr DR 3/1",
        "-C", "-A -t 10.0.2.90:80 -s wrr", "-a -t 10.0.2.90:80 -r 10.0.2.62:80 -g -w 3",
        "-a -t 10.0.2.90:80 -r 10.0.2.63:80 -g -w 1", LS, "-C", LS))
SD(case("seed-003-nat", "seeds/003 NAT walk-through incl. -E after -D (No such service)",
        S([]), "-A -t 192.168.88.5:80 -s rr", LS, "-a -t 192.168.88.5:80 -r 192.168.99.100 -w 1 -m",
        "-a -t 192.168.88.5:80 -r 192.168.99.200 -w 2 -m", LS, "-D -t 192.168.88.5:80",
        "-E -t 192.168.88.5:80 -s wrr", "-D -t 192.168.88.5:80", LS))
SD(case("seed-003-dr", "seeds/003 DR wlc with weights 1/2",
        "-A -t 192.168.88.15:80 -s wlc", "-a -t 192.168.88.15:80 -r 192.168.88.100 -w 1 -g",
        "-a -t 192.168.88.15:80 -r 192.168.88.200 -w 2 -g", LS, LS))
SD(case("seed-004-dr", "seeds/004 DR rr; -A with -g (illegal) then -a without forwarding",
        "-A -t 172.16.24.7:80 -s rr -g", "-a -t 172.16.24.7:80 -r 172.16.24.8", "-a -t 172.16.24.7:80 -r 172.16.24.9",
        LS, "-A -t 172.16.24.7:80 -s rr", "-a -t 172.16.24.7:80 -r 172.16.24.8", "-a -t 172.16.24.7:80 -r 172.16.24.9",
        LS))
SD(case("seed-004-timeouts", "seeds/004 --set 28800 30 600 and listing commands",
        "--set 28800 30 600", "-L --timeout", "-L -c", "-C", "-h"))
SD(case("seed-004-pcc", "seeds/004 persistent port-0 service (PCC)",
        "-A -t 172.16.24.7:0 -s rr -p 120", "-a -t 172.16.24.7:0 -r 172.16.24.8 -g", "-a -t 172.16.24.7:0 -r 172.16.24.9 -g",
        LS, SV))
SD(case("seed-004-ppc", "seeds/004 PPC: -A then -E adding persistence",
        "-A -t 172.16.24.7:80 -s rr", "-a -t 172.16.24.7:80 -r 172.16.24.8 -g", "-a -t 172.16.24.7:80 -r 172.16.24.9 -g",
        "-E -t 172.16.24.7:80 -s rr -p 120", LS, SV))
SD(case("seed-004-pfmc", "seeds/004 PFMC fwmark 10",
        "-A -f 10 -s rr", "-a -f 10 -r 172.16.24.8 -g", "-a -f 10 -r 172.16.24.9 -g", LS, SV))

# twos exists from kernel 6.2 on (the 6.1 recordings refuse it): record these on 6.12 with
#   KV=6.12.117+deb12-cloud-amd64 python3 tests/oracle/record-ipvsadm.py --only twos-6.12
twos_612 = [case("sched-twos", "-A with -s twos, listed and saved (6.12: the module exists)",
                 "-A -t 10.0.0.1:80 -s twos", "-a -t 10.0.0.1:80 -r 192.168.1.1 -w 2", LS, SV,
                 "-E -t 10.0.0.1:80 -s twos -b flag-1", LS, "-E -t 10.0.0.1:80 -s rr", "-E -t 10.0.0.1:80 -s twos", SV)]


# --------------------------------------------------------------------------------------------
# IPv6, mixed families and GUE/GRE beyond the cases above (issue 15).
ipv6 = []
V6 = ipv6.append
V6(case("v6-address-forms", "IPv6 VIP/RIP spellings: compressed, full, mapped, upper case, zone ids, bad forms",
        "-A -t [2001:0db8:0000:0000:0000:0000:0000:0001]:80 -s rr", "-A -t [2001:DB8::2]:80 -s rr",
        "-A -t [::ffff:192.168.1.1]:80", "-A -t [::]:80", "-A -t [fe80::1%eth0]:80", "-A -t [zz::1]:80",
        "-A -t [2001:db8::5:80", "-A -t 2001:db8::5]:80", "-A -t [2001:db8::5]:65536", "-A -t [2001:db8::5]:0",
        "-A -t [2001:db8::5]:http", "-A -u [2001:db8::6]:domain", "-A -t [2001:db8::7]:80:80",
        "-A --sctp-service [2001:db8::8]:3868 -s rr", "-A -t []:80", "-A -t [1.2.3.4]:80", LS, SV))
V6(case("v6-dests", "IPv6 real servers: every method, ports, weights, thresholds, forms refused by the kernel",
        "-A -t [2001:db8::1]:80 -s wlc", "-a -t [2001:db8::1]:80 -r [2001:db8::10]:80 -g -w 5",
        "-a -t [2001:db8::1]:80 -r [2001:db8::11]:8080 -m -x 100 -y 50", "-a -t [2001:db8::1]:80 -r [2001:db8::12] -i",
        "-a -t [2001:db8::1]:80 -r [2001:db8::12]:80 -i", "-a -t [2001:db8::1]:80 -r [2001:db8::13]:81 -g",
        "-a -t [2001:db8::1]:80 -r [fe80::1]:80 -m", "-a -t [2001:db8::1]:80 -r [ff02::1]:80 -m",
        "-a -t [2001:db8::1]:80 -r [::]:80 -m", "-a -t [2001:db8::1]:80 -r [::ffff:10.1.1.1]:80 -m",
        "-a -t [2001:db8::1]:80 -r [::1]:80 -g", "-a -t [2001:db8::1]:80 -r [2001:db8::10]:80 -g",
        "-a -t [2001:db8::9]:80 -r [2001:db8::10]:80 -g",
        LS, SV, "-Ln --thresholds", "-Ln --stats", "-Ln --rate", "-Ln --exact --stats", "-L",
        "-e -t [2001:db8::1]:80 -r [2001:db8::10]:80 -m -w 0", "-e -t [2001:db8::1]:80 -r [2001:db8::99]:80 -m",
        "-d -t [2001:db8::1]:80 -r [2001:db8::11]:8080", "-d -t [2001:db8::1]:80 -r [2001:db8::11]:8080",
        "-d -t [2001:db8::1]:80 -r [2001:db8::12]", LS, "-Z -t [2001:db8::1]:80", "-Z -t [2001:db8::9]:80",
        "-D -t [2001:db8::1]:80", "-D -t [2001:db8::1]:80", LS))
V6(case("v6-mixed-families", "other-family real servers: tunnels only, both ways, -e and -d",
        "-A -t [2001:db8::1]:80 -s rr", "-A -t 10.0.0.1:80 -s rr", "-A -f 9 -6 -s rr", "-A -f 9 -s rr",
        "-a -t [2001:db8::1]:80 -r 10.1.1.1 -i", "-a -t [2001:db8::1]:80 -r 10.1.1.2:8080 -i --tun-type gue --tun-port 6080",
        "-a -t [2001:db8::1]:80 -r 10.1.1.3 -i --tun-type gre --tun-csum", "-a -t [2001:db8::1]:80 -r 10.1.1.4 -g",
        "-a -t [2001:db8::1]:80 -r 10.1.1.5 -m", "-a -t 10.0.0.1:80 -r [2001:db8::20]:80 -i",
        "-a -f 9 -6 -r 10.1.1.6 -i", "-a -f 9 -6 -r 10.1.1.7:0 -i", "-a -f 9 -r [2001:db8::21]:0 -i",
        "-a -f 9 -6 -r 10.1.1.8:0 -m",
        LS, SV, "-Ln --tun-info", "-e -t [2001:db8::1]:80 -r 10.1.1.1 -g", "-e -t [2001:db8::1]:80 -r 10.1.1.1 -i -w 7",
        "-e -t [2001:db8::1]:80 -r 10.1.1.2:8080 -i --tun-type ipip", "-d -t [2001:db8::1]:80 -r 10.1.1.3",
        "-d -t [2001:db8::1]:80 -r 10.1.1.9", LS, SV))
V6(case("v6-tunnels", "gue/gre options on IPv6 real servers, -e between tunnel types, --tun-info listings",
        "-A -u [fd00::1]:53 -s sh -o", "-a -u [fd00::1]:53 -r [fd00::10]:53 -i --tun-type gue --tun-port 6080",
        "-a -u [fd00::1]:53 -r [fd00::11]:53 -i --tun-type gue --tun-port 6081 --tun-csum",
        "-a -u [fd00::1]:53 -r [fd00::12]:53 -i --tun-type gue --tun-port 65535 --tun-remcsum",
        "-a -u [fd00::1]:53 -r [fd00::13]:53 -i --tun-type gre", "-a -u [fd00::1]:53 -r [fd00::14]:53 -i --tun-type gre --tun-csum",
        "-a -u [fd00::1]:53 -r [fd00::15]:53 -i --tun-type ipip",
        LS, SV, "-Ln --tun-info", "-L --tun-info", "-Ln --tun-info --exact",
        "-e -u [fd00::1]:53 -r [fd00::10]:53 -i --tun-type gre --tun-csum", "-e -u [fd00::1]:53 -r [fd00::13]:53 -i --tun-type gue --tun-port 1",
        "-e -u [fd00::1]:53 -r [fd00::15]:53 -m", "-e -u [fd00::1]:53 -r [fd00::14]:53 -i",
        "-Ln --tun-info", SV, "-L -n -u [fd00::1]:53 --tun-info"))
V6(case("v6-fwmark-netmask", "-f N -6 services: -M prefixes, -E, persistence engines, one-packet, flags, listing one",
        "-A -f 1 -6 -s rr -p 60 -M 48", "-A -f 2 -6 -s mh -b mh-port,mh-fallback -p", "-A -f 3 -6 -s sh -b sh-port -o",
        "-A -f 4 -6 --pe sip -s rr", "-A -f 5 -6 -M 128", "-A -f 6 -6 -p -M 1", "-A -f 7 -6 -p -M 64.0",
        "-A -f 8 -6 -p -M -1", "-E -f 1 -6 -s wrr -p 120 -M 56", "-E -f 1 -s wrr", "-E -f 99 -6 -s rr",
        "-a -f 1 -6 -r [2001:db8::1]:0 -m", "-a -f 1 -6 -r [2001:db8::2]:8080 -g",
        LS, SV, "-L -n -f 1 -6", "-L -n -f 99 -6", "-L -n -f 1 -6 --stats", "-D -f 1", "-D -f 1 -6", LS))
V6(case("v6-restore", "-R with IPv6 lines, mixed tunnels and gue/gre, then -Sn; a kernel error mid-input",
        S("-R", "-A -t [2001:db8::1]:80 -s rr\n-a -t [2001:db8::1]:80 -r [2001:db8::10]:80 -m\n"
                "-a -t [2001:db8::1]:80 -r 10.1.1.1 -i --tun-type gue --tun-port 6080 --tun-remcsum\n"
                "-a -t [2001:db8::9]:80 -r [2001:db8::10]:80 -m\n-A -f 5 -6 -s wlc -p -M 64\n"
                "-a -f 5 -6 -r [fd00::5]:0 -i --tun-type gre --tun-csum\n"),
        SV, LS, "-C", S("-R", "-A -t [2001:db8::1]:80 -s rr\n-a -t [2001:db8::1]:80 -r 10.1.1.1 -m\n-A -t [2001:db8::2]:80\n"), SV))

FILES = {"ipv6": ipv6, "commands": commands, "errors": errors, "listing": listing, "restore": restore, "seeds": seeds,
         "twos-6.12": twos_612}
