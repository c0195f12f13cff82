#!/bin/bash
# Runs INSIDE the ipvs-oracle guest (as /run.sh), driven by /cases.txt written by record-ipvsadm.py.
#
# Input lines (fields separated by '|'):
#   C|<case_id>                          reset to an empty table before the case
#   S|<case_id>|<step>|<argv_b64>|<stdin_b64 or ->
#       argv_b64 = base64 of the arguments, each terminated by a NUL byte (argv[0] excluded)
# Output lines:
#   K|<uname -r>            V|<b64 of `ipvsadm -v` stdout>
#   R|<pass>|<case_id>|<step>|<status>|<stdout_b64>|<stderr_b64>
#   E|<pass>                end of one pass;  DONE at the very end
# PASSES (env, default 1 via /passes file) re-runs the whole list to detect non-determinism.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export LC_ALL=C
PASSES=1; [ -f /passes ] && PASSES=$(cat /passes)
b64() { base64 -w0 < "$1"; }

reset_table() {
  ipvsadm --stop-daemon master >/dev/null 2>&1
  ipvsadm --stop-daemon backup >/dev/null 2>&1
  ipvsadm -C >/dev/null 2>&1
  ipvsadm --set 900 120 300 >/dev/null 2>&1
  ipvsadm -Z >/dev/null 2>&1
}

echo "K|$(uname -r)"
ipvsadm -v > /tmp/v 2>&1; echo "V|$(b64 /tmp/v)"

for pass in $(seq 1 "$PASSES"); do
  while IFS='|' read -r kind cid step argv sin; do
    case "$kind" in
      C) reset_table ;;
      S)
        if [ -n "$argv" ]; then
          printf '%s' "$argv" | base64 -d > /tmp/a   # (no /dev/fd in the guest: no <(...))
          mapfile -d '' -t A < /tmp/a
        else
          A=()
        fi
        if [ "$sin" = "-" ]; then
          ipvsadm "${A[@]}" < /dev/null > /tmp/o 2> /tmp/e; rc=$?
        else
          printf '%s' "$sin" | base64 -d > /tmp/i
          ipvsadm "${A[@]}" < /tmp/i > /tmp/o 2> /tmp/e; rc=$?
        fi
        echo "R|$pass|$cid|$step|$rc|$(b64 /tmp/o)|$(b64 /tmp/e)"
        ;;
    esac
  done < /cases.txt
  reset_table
  echo "E|$pass"
done
echo DONE
