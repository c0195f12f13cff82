#!/bin/bash
# Runs INSIDE the ipvs-oracle guest (as /run.sh), driven by /sched-cases.txt written by record.py.
# Records which real server kernel IPVS picks for scripted ipvsadm commands and new connections.
#
# Input lines ('|'-separated):
#   Q|<name>                 start of a sequence (held connections of the previous one are closed)
#   A|<ipvsadm args, space separated>
#   C|<client ip>|<cport, 0 = any>|<hold 0/1>|<vip>|<vport>|<snapshot 0/1>
#   X|<n>                    close the n-th (0-based) held connection of this sequence
# Output lines:
#   K|<uname -r>   M|<module>|<0 loaded / 1 missing>
#   R|<rc>|<stderr b64>                                  (one per A)
#   S|<b64 of `ipvsadm -Ln -t vip:vport`>                (before a C with snapshot=1)
#   P|<answer: rs1..rs3 or none>                         (one per C)
#   X|done   Q|<name>   DONE
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export LC_ALL=C
. /net-setup.sh
nat_rs
# Every real server answers on port 81 with its name, then keeps the connection open until the
# client closes it (so a held client connection stays ESTABLISHED = ActiveConn).
for i in 1 2 3; do
  ip netns exec rs$i socat TCP-LISTEN:81,fork,reuseaddr SYSTEM:"echo rs$i; cat >/dev/null" >/dev/null 2>&1 &
done
# Extra VIPs (dh/lblc key on the destination address) and client addresses (sh/mh key on the source).
for i in $(seq 2 9); do ip -n lb addr add 10.0.0.$i/32 dev lo; done
for i in $(seq 3 40); do ip -n cl addr add 10.0.1.$i/24 dev cl0; done
sleep 1
echo "K|$(uname -r)"
for m in ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_sed ip_vs_nq ip_vs_fo ip_vs_ovf ip_vs_sh ip_vs_dh ip_vs_mh ip_vs_lblc ip_vs_lblcr ip_vs_twos; do
  if grep -q "^$m " /proc/modules; then echo "M|$m|0"; else echo "M|$m|1"; fi
done
HELD=(); K=0
close_all() { for p in "${HELD[@]}"; do kill "$p" 2>/dev/null; done; HELD=(); }
while IFS='|' read -r kind a b c d e f; do
  case "$kind" in
    Q) close_all; echo "Q|$a" ;;
    A) ip netns exec lb ipvsadm $a > /dev/null 2> /tmp/e; rc=$?; echo "R|$rc|$(base64 -w0 < /tmp/e)" ;;
    C)
      if [ "$f" = 1 ]; then ip netns exec lb ipvsadm -Ln -t "$d:$e" > /tmp/s 2>&1; echo "S|$(base64 -w0 < /tmp/s)"; fi
      bind="$a"; [ "$b" != 0 ] && bind="$a:$b"
      if [ "$c" = 1 ]; then
        K=$((K+1)); rm -f /tmp/h$K
        # Keep the connection open: the client never sends anything, never closes.
        ip netns exec cl bash -c "exec 3<>/dev/tcp/$d/$e || exit 1; read -r l <&3; echo \$l > /tmp/h$K.t; mv /tmp/h$K.t /tmp/h$K; exec sleep 3000" 2>/dev/null &
        HELD+=($!)
        ans=none
        for t in $(seq 1 50); do
          if [ -f /tmp/h$K ]; then ans=$(cat /tmp/h$K); break; fi
          kill -0 $! 2>/dev/null || break
          sleep 0.1
        done
      else
        ans=$(ip netns exec cl socat -t5 -T5 - TCP:$d:$e,bind=$bind,reuseaddr,connect-timeout=3 < /dev/null 2>/dev/null | tr -d '\r\n')
        [ -z "$ans" ] && ans=none
      fi
      echo "P|$ans" ;;
    X) p=${HELD[$a]}; kill "$p" 2>/dev/null; sleep 0.5; echo "X|done" ;;
  esac
done < /sched-cases.txt
close_all
echo DONE
