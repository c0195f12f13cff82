#!/bin/sh
# Regenerate tests/golden/ipvsadm/*.json from the real ipvsadm 1.31 (kernel IPVS in the oracle VM).
# Needs /work/shared/ipvs-oracle (run its build.sh once). Extra args go to record-ipvsadm.py.
exec python3 "$(dirname "$0")/record-ipvsadm.py" "$@"
