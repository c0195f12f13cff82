#!/usr/bin/env python3
"""Regenerate tests/golden/ipvsadm/*.json from the REAL ipvsadm 1.31 on a kernel with IPVS.

Usage (from anywhere):
    python3 tests/oracle/record-ipvsadm.py [--boots 2] [--passes 2] [--only commands,errors] [--out DIR]

It boots the shared oracle VM (/work/shared/ipvs-oracle/run.sh, override with $IPVS_ORACLE_RUN)
`--boots` times; every boot runs all cases `--passes` times (cases start from `ipvsadm -C`, default
timeouts, no sync daemon).  All boots/passes must produce identical bytes; steps that differ are
reported and the run exits 1 (nothing is written unless --force).  Case definitions: cases.py.
Stdlib only.
"""
import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cases as C  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OUT = os.path.join(REPO, "tests", "golden", "ipvsadm")
DEFAULT_RUN = os.environ.get("IPVS_ORACLE_RUN", "/work/shared/ipvs-oracle/run.sh")


def build_input(files):
    """Flatten the cases into the guest's line format; return (text, index)."""
    lines, index = [], []  # index[cid] = (file, case_name, about, steps)
    for fname in files:
        names = set()
        for name, about, steps in C.FILES[fname]:
            assert name not in names, f"duplicate case name {name} in {fname}"
            names.add(name)
            cid = len(index)
            index.append((fname, name, about, steps))
            lines.append(f"C|{cid}")
            for si, (argv, stdin) in enumerate(steps):
                a = base64.b64encode(b"".join(x.encode() + b"\0" for x in argv)).decode()
                s = "-" if stdin is None else base64.b64encode(stdin.encode()).decode()
                lines.append(f"S|{cid}|{si}|{a}|{s}")
    return "\n".join(lines) + "\n", index


def boot(run_sh, text, passes):
    with tempfile.TemporaryDirectory() as t:
        cf, pf = os.path.join(t, "cases.txt"), os.path.join(t, "passes")
        with open(cf, "w") as f:
            f.write(text)
        with open(pf, "w") as f:
            f.write(str(passes))
        p = subprocess.run([run_sh, os.path.join(HERE, "guest-runner.sh"), cf, pf],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    out = p.stdout.decode("utf-8", "replace")
    if "DONE" not in out.splitlines():
        sys.stderr.write(p.stderr.decode("utf-8", "replace"))
        sys.exit(f"guest run did not finish (rc={p.returncode}); last output:\n{out[-2000:]}")
    kernel = version = None
    res = {}  # (pass, cid, step) -> (status, stdout, stderr)
    for line in out.splitlines():
        f = line.split("|")
        if f[0] == "K":
            kernel = f[1]
        elif f[0] == "V":
            version = base64.b64decode(f[1]).decode().rstrip("\n")
        elif f[0] == "R":
            ps, cid, st, rc = (int(x) for x in f[1:5])
            res[(ps, cid, st)] = (rc, base64.b64decode(f[5]).decode("utf-8"), base64.b64decode(f[6]).decode("utf-8"))
    return kernel, version, res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--boots", type=int, default=2)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--only", default=",".join(k for k in C.FILES if not k.endswith("-6.12")))
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--run", default=DEFAULT_RUN)
    ap.add_argument("--force", action="store_true", help="write even if boots/passes disagree")
    args = ap.parse_args()
    files = [x for x in args.only.split(",") if x]
    text, index = build_input(files)
    nsteps = sum(len(s) for _, _, _, s in index)
    print(f"{len(index)} cases, {nsteps} steps; {args.boots} boot(s) x {args.passes} pass(es)", file=sys.stderr)

    runs = []
    for b in range(args.boots):
        kernel, version, res = boot(args.run, text, args.passes)
        print(f"boot {b + 1}: kernel {kernel}, {len(res)} results", file=sys.stderr)
        runs.append((kernel, version, res))
    kernel, version, base = runs[0]

    unstable = []
    for cid, (fname, name, _, steps) in enumerate(index):
        for si in range(len(steps)):
            ref = base.get((1, cid, si))
            if ref is None:
                sys.exit(f"missing result for {fname}/{name} step {si}")
            for b, (_, _, res) in enumerate(runs):
                for ps in range(1, args.passes + 1):
                    if res.get((ps, cid, si)) != ref:
                        unstable.append((fname, name, si, b + 1, ps))
    if unstable:
        for u in unstable:
            print("UNSTABLE: %s/%s step %d (boot %d pass %d)" % u, file=sys.stderr)
        if not args.force:
            sys.exit(1)

    os.makedirs(args.out, exist_ok=True)
    for fname in files:
        doc = {"kernel": kernel, "ipvsadm_version": version, "cases": []}
        n = 0
        for cid, (f, name, about, steps) in enumerate(index):
            if f != fname:
                continue
            out_steps = []
            for si, (argv, stdin) in enumerate(steps):
                rc, so, se = base[(1, cid, si)]
                out_steps.append({"argv": argv, "stdin": stdin, "stdout": so, "stderr": se, "status": rc})
                n += 1
            doc["cases"].append({"name": name, "about": about, "steps": out_steps})
        path = os.path.join(args.out, fname + ".json")
        with open(path, "w") as fh:
            json.dump(doc, fh, indent=1, ensure_ascii=False)
            fh.write("\n")
        # verify the round trip byte-for-byte
        with open(path) as fh:
            back = json.load(fh)
        for c in back["cases"]:
            for s in c["steps"]:
                assert isinstance(s["stdout"], str) and isinstance(s["status"], int)
        print(f"{path}: {len(doc['cases'])} cases, {n} invocations")


if __name__ == "__main__":
    main()
