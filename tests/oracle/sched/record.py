#!/usr/bin/env python3
"""Record which real server kernel IPVS picks, for xlb's scheduler golden tests.

Boots the ipvs-oracle VM (/work/shared/ipvs-oracle/run.sh) with guest.sh, replays the sequences
defined below (ipvsadm commands and new connections) and writes tests/golden/sched/<group>.json.

    tests/oracle/sched/record.py                 # every group
    tests/oracle/sched/record.py rr wrr          # only these groups
    KV=6.12.117+deb12-cloud-amd64 tests/oracle/sched/record.py --suffix -6.12 twos

Every sequence gets its own virtual port (8001, 8002, ...) so dests and counters of one sequence
never leak into the next (IPVS keeps conn entries and revives deleted dests from its trash only
for the same service). Real servers are rs1..rs3 = 10.0.2.11..13 port 81, NAT (-m): each answers
its name and keeps the connection open until the client closes (held connections = ActiveConn).
"""
import base64, json, os, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.normpath(os.path.join(HERE, "..", "..", "golden", "sched"))
RUN = os.environ.get("ORACLE_RUN", "/work/shared/ipvs-oracle/run.sh")
RS = {"rs1": "10.0.2.11", "rs2": "10.0.2.12", "rs3": "10.0.2.13"}
VIP = "10.0.0.1"


# ---- sequence DSL: each helper returns a list of raw steps; {S} is the service (-t VIP:port) ----
def svc(sched, flags=None, extra=None):
    a = ["-A", "{S}", "-s", sched]
    if flags:
        a += ["-b", flags]
    return [("ipvsadm", a + (extra or []))]

def add(rs, w, x=None, y=None, op="-a"):
    a = [op, "{S}", "-r", RS[rs] + ":81", "-m", "-w", str(w)]
    if x is not None:
        a += ["-x", str(x)]
    if y is not None:
        a += ["-y", str(y)]
    return [("ipvsadm", a)]

def edit(rs, w, x=None, y=None):
    return add(rs, w, x, y, op="-e")

def dele(rs):
    return [("ipvsadm", ["-d", "{S}", "-r", RS[rs] + ":81"])]

def conns(n, client="10.0.1.2", hold=False, snap=False):
    return [("conn", client, None, hold, snap)] * n

def holds(n, snap=True):
    return conns(n, hold=True, snap=snap)

def close(i):
    return [("close_held", i)]

def clients(first, last, cport=None):
    return [("conn", "10.0.1.%d" % i, cport, False, False) for i in range(first, last + 1)]

def ports(client, plist):
    return [("conn", client, p, False, False) for p in plist]

def seq(name, sched, about, *parts, vip=None):
    steps = []
    for p in parts:
        steps += p
    return {"name": name, "sched": sched, "about": about, "steps": steps, "vip": vip}

def three(w1=1, w2=1, w3=1, **kw):
    return add("rs1", w1) + add("rs2", w2) + add("rs3", w3)


GROUPS = {
    "rr": [
        seq("rr_basic", "rr", "add rs1..rs3, picks, quiesce, delete, re-add, edit",
            svc("rr"), three(), conns(6), edit("rs2", 0), conns(3), dele("rs3"), conns(2),
            add("rs3", 1), conns(4), edit("rs2", 2), conns(4), dele("rs1"), conns(3)),
        seq("rr_all_zero", "rr", "every weight 0: no dest (ICMP unreachable)",
            svc("rr"), add("rs1", 0), add("rs2", 0), conns(2), edit("rs1", 1), conns(2)),
        seq("rr_threshold", "rr", "-x upper threshold sets OVERLOAD; -e without -x clears it",
            svc("rr"), add("rs1", 1, x=2), add("rs2", 1), conns(6), edit("rs1", 1), conns(3)),
    ],
    "wrr": [
        seq("wrr_3_1", "wrr", "spec 3.3: add A(w3) then B(w1)", svc("wrr"), add("rs1", 3), add("rs2", 1), conns(9)),
        seq("wrr_4_3_2", "wrr", "spec 3.3: add A4, B3, C2", svc("wrr"), three(4, 3, 2), conns(13)),
        seq("wrr_4_2", "wrr", "spec 3.3: weights 4,2 (di=2, mw=3)", svc("wrr"), add("rs1", 4), add("rs2", 2), conns(7)),
        seq("wrr_1_1_1", "wrr", "equal weights", svc("wrr"), three(), conns(4)),
        seq("wrr_edits", "wrr", "edits/deletes/adds between picks (cl to head, cw adjusted)",
            svc("wrr"), three(3, 2, 1), conns(4), edit("rs2", 5), conns(5), dele("rs1"), conns(4),
            add("rs1", 2), conns(5), edit("rs3", 0), conns(4), edit("rs2", 4), conns(3), edit("rs1", 6), conns(4)),
        seq("wrr_gcd", "wrr", "gcd > 1 and the cw = (cw/di)*di+1 rule",
            svc("wrr"), add("rs1", 6), add("rs2", 4), conns(3), add("rs3", 2), conns(4), edit("rs1", 3), conns(4),
            edit("rs3", 9), conns(5)),
        seq("wrr_zero", "wrr", "all weights 0 then revive", svc("wrr"), add("rs1", 0), add("rs2", 0), conns(2),
            edit("rs2", 2), conns(3)),
        seq("wrr_threshold", "wrr", "-x threshold on the heaviest dest",
            svc("wrr"), add("rs1", 3, x=3), add("rs2", 1), conns(7), edit("rs1", 3, x=5), conns(4)),
    ],
    "lc": [
        seq("lc_hold", "lc", "held connections (ActiveConn), closes (-> InActConn), weight 0",
            svc("lc"), three(), holds(4), close(1), holds(2), edit("rs3", 0), holds(2), conns(2, snap=True),
            edit("rs3", 5), holds(2)),
        seq("lc_threshold", "lc", "-x threshold with held connections",
            svc("lc"), add("rs1", 1, x=2), add("rs2", 1), holds(5), edit("rs1", 1, x=4), holds(2)),
    ],
    "wlc": [
        seq("wlc_hold", "wlc", "weights 3,1,2 with held connections",
            svc("wlc"), three(3, 1, 2), holds(8), close(0), close(2), holds(3), edit("rs2", 4), holds(3),
            conns(2, snap=True)),
        seq("wlc_edit_delete", "wlc", "delete and re-add between held connections",
            svc("wlc"), three(1, 2, 1), holds(4), dele("rs2"), holds(2), add("rs2", 2), holds(3)),
    ],
    "sed": [
        seq("sed_hold", "sed", "weights 3,1 and a later weight-2 dest",
            svc("sed"), add("rs1", 3), add("rs2", 1), holds(5), add("rs3", 2), holds(4), close(0), holds(2)),
    ],
    "nq": [
        seq("nq_hold", "nq", "idle dest taken first, then sed rule",
            svc("nq"), add("rs1", 3), add("rs2", 1), holds(5), add("rs3", 2), holds(4), close(1), holds(2)),
    ],
    "fo": [
        seq("fo_basic", "fo", "highest weight wins, ties to the newest; threshold overflow",
            svc("fo"), add("rs1", 2), add("rs2", 3, x=3), add("rs3", 3), conns(2), edit("rs3", 1), conns(4),
            edit("rs1", 0), edit("rs3", 0), conns(1), edit("rs3", 1), conns(2)),
    ],
    "ovf": [
        seq("ovf_hold", "ovf", "stay on the heaviest until ActiveConn > weight",
            svc("ovf"), add("rs1", 2), add("rs2", 1), add("rs3", 2), holds(7), close(0), holds(2)),
    ],
    "sh": [
        seq("sh_equal", "sh", "equal weights, 24 client addresses", svc("sh"), three(), clients(2, 25)),
        seq("sh_weights", "sh", "weights 1,3,2 (buckets per weight)", svc("sh"), three(1, 3, 2), clients(2, 25)),
        seq("sh_zero_nofallback", "sh", "weight 0 keeps one bucket; unavailable without fallback",
            svc("sh"), three(), edit("rs2", 0), clients(2, 17)),
        seq("sh_fallback", "sh", "sh-fallback with one dest at weight 0",
            svc("sh", "sh-fallback"), three(), clients(2, 9), edit("rs2", 0), clients(2, 17)),
        seq("sh_port", "sh", "sh-port: one client, many source ports",
            svc("sh", "sh-port"), three(), ports("10.0.1.2", list(range(40001, 40017)))),
        seq("sh_delete", "sh", "delete a dest: table rebuilt", svc("sh"), three(2, 1, 1), dele("rs1"), clients(2, 13)),
    ],
    "dh": [
        seq("dh_vip%d" % i, "dh", "dh keys on the destination (VIP) address",
            svc("dh"), three(1, 2, 3), conns(1), edit("rs%d" % (i % 3 + 1), 0), conns(1),
            vip="10.0.0.%d" % i)
        for i in range(1, 10)
    ],
    "mh": [
        seq("mh_equal", "mh", "equal weights, 24 client addresses", svc("mh"), three(), clients(2, 25)),
        seq("mh_weights", "mh", "weights 1,3,2", svc("mh"), three(1, 3, 2), clients(2, 25)),
        seq("mh_zero", "mh", "weight 0 later keeps its slots (unavailable)", svc("mh"), three(), edit("rs2", 0),
            clients(2, 17)),
        seq("mh_added_zero", "mh", "dest added with weight 0 gets no slots", svc("mh"), add("rs1", 1), add("rs2", 0),
            add("rs3", 1), clients(2, 13)),
        seq("mh_fallback", "mh", "mh-fallback with one dest at weight 0",
            svc("mh", "mh-fallback"), three(), edit("rs2", 0), clients(2, 17)),
        seq("mh_port", "mh", "mh-port: one client, many source ports",
            svc("mh", "mh-port"), three(), ports("10.0.1.2", list(range(40001, 40017)))),
    ],
    "lblc": [
        seq("lblc_hold", "lblc", "cached dest kept until overloaded (active > weight and a half-idle dest)",
            svc("lblc"), three(), holds(6), close(0), holds(2), edit("rs1", 0), holds(2)),
    ],
    "lblcr": [
        seq("lblcr_hold", "lblcr", "server set grows when its least-loaded member is overloaded",
            svc("lblcr"), three(), holds(7), close(0), close(1), holds(3)),
        seq("lblcr_weights", "lblcr", "weights 3,1,2: the set's weighted least-loaded member, growth by wlc",
            svc("lblcr"), three(3, 1, 2), holds(12), close(0), close(3), holds(4), edit("rs2", 4), holds(4)),
        seq("lblcr_zero", "lblcr", "a set member set to weight 0 is passed over, then revived",
            svc("lblcr"), three(), holds(6), edit("rs3", 0), holds(4), edit("rs3", 2), holds(4)),
        seq("lblcr_delete", "lblcr", "a set member deleted (unavailable in the set) and re-added from the trash",
            svc("lblcr"), three(2, 1, 1), holds(6), dele("rs1"), holds(3), add("rs1", 2), holds(4)),
        seq("lblcr_threshold", "lblcr", "-x threshold: an OVERLOADed member is skipped in the set and by wlc",
            svc("lblcr"), add("rs1", 2, x=2), add("rs2", 1), add("rs3", 1), holds(8), close(0), holds(3)),
    ],
    "twos": [
        seq("twos_probe", "twos", "random; only checks the module exists and picks an eligible dest",
            svc("twos"), add("rs1", 1), add("rs2", 0), conns(3)),
        seq("twos_hold", "twos", "random; weights 2,0,1 with held connections: never the weight-0 dest",
            svc("twos"), three(2, 0, 1), holds(10), edit("rs2", 1, x=1), holds(4)),
    ],
}


def build_input(groups):
    lines, plan, port = [], [], 8001
    for g in groups:
        for s in GROUPS[g]:
            vip = s["vip"] or VIP
            sv = "-t %s:%d" % (vip, port)
            lines.append("Q|%s" % s["name"])
            steps = []
            for st in s["steps"]:
                if st[0] == "ipvsadm":
                    argv = []
                    for a in st[1]:
                        argv += sv.split() if a == "{S}" else [a]
                    lines.append("A|" + " ".join(argv))
                    steps.append({"op": "ipvsadm", "argv": argv})
                elif st[0] == "conn":
                    _, client, cport, hold, snap = st
                    lines.append("C|%s|%d|%d|%s|%d|%d" % (client, cport or 0, hold, vip, port, snap))
                    steps.append({"op": "conn", "client": client, "cport": cport, "hold": hold,
                                  "vip": vip, "vport": port, "_snap": snap})
                else:
                    lines.append("X|%d" % st[1])
                    steps.append({"op": "close_held", "index": st[1]})
            plan.append((g, s, steps))
            port += 1
    return "\n".join(lines) + "\n", plan


def parse_counts(text):
    out = {}
    for line in text.splitlines():
        p = line.split()
        if len(p) >= 6 and p[0] == "->" and p[1].startswith("10.0.2.1"):
            name = "rs" + p[1].split(":")[0][-1]
            out[name] = [int(p[4]), int(p[5])]
    return out


def main():
    args = sys.argv[1:]
    suffix = ""
    if "--suffix" in args:
        i = args.index("--suffix")
        suffix = args[i + 1]
        del args[i:i + 2]
    groups = args or list(GROUPS)
    text, plan = build_input(groups)
    with tempfile.TemporaryDirectory() as t:
        cases = os.path.join(t, "sched-cases.txt")
        with open(cases, "w") as f:
            f.write(text)
        out = subprocess.run([RUN, os.path.join(HERE, "guest.sh"), cases], capture_output=True, text=True,
                             check=True).stdout
    lines = [l.strip() for l in out.splitlines() if l[:2] in ("K|", "M|", "R|", "S|", "P|", "X|", "Q|") or l.strip() == "DONE"]
    if "DONE" not in lines:
        sys.exit("guest did not finish:\n" + out[-3000:])
    kernel = next(l[2:] for l in lines if l.startswith("K|"))
    modules = {l.split("|")[1]: l.split("|")[2] == "0" for l in lines if l.startswith("M|")}
    it = iter([l for l in lines if l[:2] in ("R|", "S|", "P|", "X|", "Q|")])
    by_group = {}
    for g, s, steps in plan:
        q = next(it)
        assert q == "Q|" + s["name"], (q, s["name"])
        for st in steps:
            if st["op"] == "ipvsadm":
                _, rc, err = next(it).split("|", 2)
                st["rc"] = int(rc)
                e = base64.b64decode(err).decode()
                if e:
                    st["stderr"] = e
            elif st["op"] == "conn":
                snap = st.pop("_snap")
                r = next(it)
                if snap:
                    st["counts_before"] = parse_counts(base64.b64decode(r[2:]).decode())
                    r = next(it)
                assert r.startswith("P|"), r
                st["answer"] = r[2:]
            else:
                assert next(it) == "X|done"
        rec = {"name": s["name"], "about": s["about"], "sched": s["sched"], "steps": steps}
        by_group.setdefault(g, []).append(rec)
    os.makedirs(GOLDEN, exist_ok=True)
    for g, seqs in by_group.items():
        path = os.path.join(GOLDEN, g + suffix + ".json")
        old = {}
        if os.path.exists(path):  # keep hand-written known_mismatch notes
            with open(path) as f:
                old = {s["name"]: s for s in json.load(f)["sequences"]}
        for s in seqs:
            if "known_mismatch" in old.get(s["name"], {}):
                s["known_mismatch"] = old[s["name"]]["known_mismatch"]
        doc = {"kernel": kernel, "ipvs_modules_loaded": modules, "recorded_by": "tests/oracle/sched/record.py",
               "sequences": seqs}
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print("wrote", path, sum(1 for s in seqs for st in s["steps"] if st["op"] == "conn"), "conns")


if __name__ == "__main__":
    main()
