#!/usr/bin/env python3
"""Builds tests/corpus/malformed/*.json: malformed ipvsadm command lines and -R files with the
exact stderr and exit status the real ipvsadm 1.31 prints.

- golden-<stem>.json: every failing step of the recordings of the real ipvsadm
  (tests/golden/ipvsadm/{errors,commands,restore,ipv6}.json), kept inside its recorded case so the
  table it ran against is rebuilt by the steps before it (ground truth, copied verbatim).
- generated.json: mutations whose expected output follows rules the recordings show (each
  entry names the recorded example its rule comes from).

Run: python3 tests/corpus/gen_malformed.py   (standard library only; deterministic)
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "..", "golden", "ipvsadm")
OUT = os.path.join(HERE, "malformed")


def golden():
    total = 0
    for stem in ["errors", "commands", "restore", "ipv6"]:
        d = json.load(open(os.path.join(GOLDEN, stem + ".json")))
        cases = []
        for c in d["cases"]:
            if stem == "commands" and c["name"] == "sched-twos":
                # xlb has twos, as kernels from 6.2 on do (twos-6.12.json); 6.1 refuses it.
                continue
            if stem == "commands" and c["name"] == "sync-daemon":
                # xlb has no sync daemon: only its argument errors are comparable.
                steps = [s for s in c["steps"] if s["status"] == 2 or s["stderr"].startswith("Try `")]
                for s in steps:
                    s = dict(s)
                steps = [dict(s, malformed=True) for s in steps]
            else:
                steps = [dict(s, malformed=s["status"] != 0) for s in c["steps"]]
            if not any(s["malformed"] for s in steps):
                continue
            for s in steps:
                # A failing -R may have applied the lines before the failing one (ipvsadm
                # does); any other failing command changes nothing.
                s["unchanged"] = s["malformed"] and "-R" not in s["argv"]
            total += sum(s["malformed"] for s in steps)
            cases.append({"case": c["name"], "about": c.get("about", ""), "steps": steps})
        with open(os.path.join(OUT, "golden-%s.json" % stem), "w") as f:
            json.dump({"source": "tests/golden/ipvsadm/%s.json (real ipvsadm 1.31)" % stem, "cases": cases}, f, indent=1)
            f.write("\n")
    return total


SVC = ["-A", "-t", "10.0.0.1:80"]
DEST = ["-a", "-t", "10.0.0.1:80", "-r", "192.168.1.1"]
# The table every generated entry runs against (and must leave unchanged).
SETUP = [["-A", "-t", "10.0.0.1:80", "-s", "rr"], ["-a", "-t", "10.0.0.1:80", "-r", "192.168.1.1", "-m", "-w", "2"],
         ["-A", "-u", "10.0.0.2:53", "-s", "rr"]]


def entry(rule, argv, stderr, status, stdin=None):
    return {"rule": rule, "argv": argv, "stdin": stdin, "stdout": "", "stderr": stderr, "status": status}


def generated():
    v = []
    # popt: an option that needs an argument, last on the line.
    # Recorded: -t -s -r -f -u -w -x -M --pe -b --tun-type --mcast-interface --sctp-service.
    miss = [(["-A"], o) for o in ["-t", "-u", "-f", "--tcp-service", "--udp-service", "--fwmark-service", "--sctp-service"]]
    miss += [(["-A", "-t", "10.0.0.9:80"], o) for o in ["-s", "-M", "-b", "--pe", "--scheduler", "--netmask", "--sched-flags"]]
    miss += [(["-a", "-t", "10.0.0.1:80"], o) for o in ["-r", "--real-server"]]
    miss += [(["-a", "-t", "10.0.0.1:80", "-r", "192.168.1.9"], o) for o in
             ["-w", "-x", "-y", "--weight", "--u-threshold", "--l-threshold", "--tun-type"]]
    miss += [(["-e", "-t", "10.0.0.1:80", "-r", "192.168.1.1"], o) for o in ["-w", "-x", "-y"]]
    for pre, o in miss:
        v.append(entry("missing argument (errors/missing-arguments)", pre + [o], "%s: missing argument\n" % o, 255))
    # popt: unknown long options, also with =value. Recorded: --foo, --bogus=1, --num, --stat.
    for name in ["--frobnicate", "--tcp", "--weights", "--numerical", "--real", "--schedule", "--statistics",
                 "--persist", "--tun", "--foo-bar", "--%s%n", "--AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]:
        v.append(entry("unknown option (errors/unknown-options)", SVC + ["-s", "rr", name], "%s: unknown option\n" % name, 255))
        v.append(entry("unknown option (errors/unknown-options)", ["-L", name], "%s: unknown option\n" % name, 255))
    for name in ["--frob=1", "--weight2=3", "--x=y=z"]:
        v.append(entry("unknown option with =value (errors/unknown-options --bogus=1)", SVC + [name], "%s: unknown option\n" % name, 255))
    # Leftover words. Recorded: -A -t X foo, -L foo, -Ln extra words, -C foo.
    for pre in [SVC + ["-s", "rr"], ["-L", "-n"], ["-C"], ["-Z"], ["-D", "-t", "10.0.0.1:80"], DEST, ["-S", "-n"]]:
        for w in ["foo", "42", "%s%n%x", "rr", "a b"]:
            v.append(entry("unexpected argument (errors/non-option-words)", pre + [w], "unexpected argument %s\n" % w, 2))
    # Weights. Recorded: -1, abc, 2147483648, 0x10, ''.
    for w in ["-1", "-2", "abc", "0x10", "", "2147483648", "4294967296", "99999999999999999999", "1.5", "10a", "%n"]:
        v.append(entry("illegal weight (commands/weights)", DEST[:-1] + ["192.168.1.20", "-w", w], "illegal weight specified\n", 2))
        v.append(entry("illegal weight (commands/weights)", ["-e", "-t", "10.0.0.1:80", "-r", "192.168.1.1", "-w", w], "illegal weight specified\n", 2))
    # Thresholds. Recorded: -x -1, -x 2147483648, -x abc, -y -1.
    for opt, what in [("-x", "u_threshold"), ("-y", "l_threshold")]:
        for val in ["-1", "abc", "2147483648"]:
            v.append(entry("illegal threshold (commands/thresholds)", DEST[:-1] + ["192.168.1.21", opt, val], "illegal %s specified\n" % what, 2))
    # Virtual service addresses. Recorded (address-parsing): :65536, :-1, trailing ':', unknown
    # service name, 0x50, .256, ':80', a:b:c, unterminated '[', ']x80'.
    for proto in ["-t", "-u"]:
        for a in ["10.0.0.7:65536", "10.0.0.7:99999", "10.0.0.7:-80", "10.0.0.7:", "10.0.0.7:nosuchservice",
                  "10.0.0.7:0x1f", "10.0.0.300:80", "999.0.0.1:80", ":8080", "10.0.0.7:80:81", "[2001:db8::7:80", "[2001:db8::7]y80"]:
            v.append(entry("illegal virtual address (commands/address-parsing)", ["-A", proto, a, "-s", "rr"],
                           "illegal virtual server address[:port] specified\n", 2))
    # Real server addresses. Recorded: .300, '10', :70000.
    for a in ["192.168.1.256", "192.168.1.1:65536", "192.168.1.1:70000", "300.1.1.1", "192.168.1.1:abcdefnosuch"]:
        v.append(entry("illegal real server address (commands/address-parsing)", ["-a", "-t", "10.0.0.1:80", "-r", a, "-m"],
                       "illegal real server address[:port] specified\n", 2))
    # The command x option matrix (ipvsadm's commands_v_options). Recorded: -C -n, -C -s rr,
    # -R -n, -R -t, -S -s rr, -S -c, -S --stats, -Z -n, -Z -r, -Z -t X -s rr, -D -t X -w 1 ...
    opts = [(["-w", "1"], "weight"), (["-x", "1"], "u-threshold"), (["-y", "1"], "l-threshold"), (["-s", "rr"], "scheduler"),
            (["-M", "255.255.255.0"], "netmask"), (["-r", "192.168.1.1"], "real-server"), (["-g"], "forwarding-method"),
            (["--rate"], "rate"), (["--exact"], "exact"), (["-o"], "ops"), (["--pe", "sip"], "pe")]
    for cmd, name in [(["-C"], "flush"), (["-R"], "restore"), (["-Z"], "zero"), (["-S"], "save")]:
        for o, oname in opts:
            v.append(entry("illegal option for the command (errors/illegal-options)", cmd + o,
                           "Illegal '%s' option with the '%s' command\n" % (oname, name), 2))
    # Zero port. Recorded: -A -t X:0, -A -t X, -A -u X:0 -s rr.
    for a in [["-t", "10.0.0.8:0"], ["-u", "10.0.0.8:0"], ["-t", "10.0.0.8"], ["-u", "10.0.0.8"], ["--sctp-service", "10.0.0.8:0"]]:
        v.append(entry("zero port (errors/semantic-checks)", ["-A"] + a + ["-s", "rr"], "Zero port specified for non-persistent service\n", 2))
    # Multiple options. Recorded: -t twice, -t then -u/-f, -s twice, -n twice, -g -m.
    for argv, what in [(SVC + ["-s", "rr", "-s", "rr"], "scheduler"), (DEST + ["-w", "1", "-w", "2"], "weight"),
                       (DEST + ["-x", "1", "-x", "2"], "u-threshold"), (DEST + ["-i", "-g"], "forwarding-method"),
                       (["-a", "-t", "10.0.0.1:80", "-r", "192.168.1.1", "-r", "192.168.1.2"], "real-server"),
                       (["-L", "--stats", "--stats"], "stats"), (["-A", "-u", "10.0.0.1:53", "-t", "10.0.0.1:80"], "service-address")]:
        v.append(entry("multiple options (errors/multiple-options)", argv, "multiple '%s' options specified\n" % what, 2))
    n_lines = len(v)
    # -R files. An argument error (status 2) ends the restore: the lines after it never run
    # (restore/restore-arg-error-aborts), so a file starting with one changes nothing. A
    # popt error returns (the restore goes on); alone in the file its status is the restore's.
    files = []
    for e in v:
        if any(" " in a or "%" in a or a == "" for a in e["argv"]):
            continue  # not expressible as one blank-separated line
        line = " ".join(e["argv"])
        if e["status"] == 2:
            files.append(entry("restore: argument error aborts (restore/restore-arg-error-aborts)", ["-R"], e["stderr"], 2,
                               stdin=line + "\n-A -t 10.0.0.77:80 -s rr\n"))
        elif len(files) % 3 == 0:
            files.append(entry("restore: popt error on the last line (restore/restore-arg-error-aborts)", ["-R"], e["stderr"], 255,
                               stdin=line + "\n"))
    files = files[::2]
    # Nested -R and comments. Recorded (restore-comments): '#' lines are a bad first option.
    for text in ["# a comment\n", "#-C\n-A -t 10.0.0.78:80 -s rr\n", "-R\n-A -t 10.0.0.78:80\n", "--restore\n"]:
        files.append(entry("restore: comment or nested -R line (restore/restore-comments)", ["-R"],
                           "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n", 255, stdin=text))
    with open(os.path.join(OUT, "generated.json"), "w") as f:
        json.dump({"source": "generated by tests/corpus/gen_malformed.py from the recorded rules", "setup": SETUP,
                   "entries": v + files}, f, indent=1)
        f.write("\n")
    return n_lines, len(files)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    g = golden()
    n, f = generated()
    print("golden malformed steps: %d; generated command lines: %d; generated -R files: %d; total %d" % (g, n, f, g + n + f))
