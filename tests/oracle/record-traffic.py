#!/usr/bin/env python3
"""Records tests/oracle/record-traffic.sh in the IPVS oracle VM (see that script for what) and
writes:
  tests/golden/ipvsadm/local.json      the listing steps (the golden format of record-ipvsadm.py,
                                       one case), replayed by both golden replays;
  tests/golden/traffic/oracle.json     kernel, ipvsadm version, and the raw blocks: who answered
                                       (answers-*), /proc/net/ip_vs_conn and -Lnc/-Lc of IPv6
                                       connections (p1..p4), read by lb-user's tests.
Usage: python3 tests/oracle/record-traffic.py [--run /work/shared/ipvs-oracle/run.sh]
The run is made twice; the listing steps must agree byte for byte (connection expiry times and
client ports differ between runs, so the blocks are taken from the first run).
"""
import argparse, base64, json, os, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def boot(run):
    p = subprocess.run([run, os.path.join(HERE, "record-traffic.sh")], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, check=False)
    out = p.stdout.decode("utf-8", "replace")
    if "DONE" not in out.splitlines():
        sys.exit(f"guest run did not finish: {out[-2000:]}\n{p.stderr.decode()[-2000:]}")
    kernel = version = None
    steps, blocks = [], {}
    for line in out.splitlines():
        f = line.split("|")
        if f[0] == "K":
            kernel = f[1]
        elif f[0] == "V":
            version = base64.b64decode(f[1]).decode().rstrip("\n")
        elif f[0] == "S":
            argv = [a.decode() for a in base64.b64decode(f[2]).split(b"\0")[:-1]]
            steps.append({"argv": argv, "stdin": None, "stdout": base64.b64decode(f[4]).decode(),
                          "stderr": base64.b64decode(f[5]).decode(), "status": int(f[3])})
        elif f[0] == "B":
            blocks[f[1]] = {"status": int(f[2]), "text": base64.b64decode(f[3]).decode()}
    return kernel, version, steps, blocks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=os.environ.get("IPVS_ORACLE_RUN", "/work/shared/ipvs-oracle/run.sh"))
    args = ap.parse_args()
    runs = [boot(args.run) for _ in range(2)]
    if runs[0][2] != runs[1][2]:
        sys.exit("the listing steps differ between two boots")
    kernel, version, steps, blocks = runs[0]
    about = ("real servers local to the director (127.0.0.1, 127.0.0.2, ::1, its own interface addresses) "
             "and mixed-family tunnels: listed with the method given (no 'Local'); recorded in net-setup.sh's "
             "director namespace by tests/oracle/record-traffic.sh")
    gold = {"kernel": kernel, "ipvsadm_version": version, "cases": [{"name": "local-real-servers", "about": about, "steps": steps}]}
    with open(os.path.join(REPO, "tests", "golden", "ipvsadm", "local.json"), "w") as fh:
        json.dump(gold, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    os.makedirs(os.path.join(REPO, "tests", "golden", "traffic"), exist_ok=True)
    with open(os.path.join(REPO, "tests", "golden", "traffic", "oracle.json"), "w") as fh:
        json.dump({"kernel": kernel, "ipvsadm_version": version, "blocks": blocks}, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    print(f"kernel {kernel}: {len(steps)} steps, {len(blocks)} blocks")


if __name__ == "__main__":
    main()
