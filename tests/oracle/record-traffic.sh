#!/bin/bash
# Runs INSIDE the ipvs-oracle guest (driven by record-traffic.py): what real IPVS and ipvsadm
# 1.31 show for what the command recordings (record-ipvsadm.py, a guest with `lo` only) cannot
# make, in the net-setup.sh topology (client, director `lb`, three real servers):
#  - real servers whose address is local to the director: 127.0.0.1 (ldirectord's fallback),
#    127.0.0.2, ::1 and the director's own interface addresses, IPv4 and IPv6, with every
#    method and a mixed-family tunnel: how -Ln/-Sn/--tun-info list them (steps, recorded
#    before any traffic so no connection counts show), and who answers a connection to them;
#  - IPv6 connections (NAT66, TCP and UDP): `ipvsadm -Lnc`/`-Lc` next to the kernel's raw
#    /proc/net/ip_vs_conn lines they are printed from.
# Output: `S|step|argv_b64|status|stdout_b64|stderr_b64` for the listing steps (argv as in
# guest-runner.sh), `B|name|status|b64` for raw blocks, `K|uname -r`, `V|ipvsadm -v`, DONE.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin LC_ALL=C
. /net-setup.sh >/dev/null 2>&1
echo "K|$(uname -r)"
ipvsadm -v > /tmp/v 2>&1; echo "V|$(base64 -w0 < /tmp/v)"
L() { ip netns exec lb "$@"; }
N=0
step() {  # one recorded ipvsadm invocation in the director's namespace
  L ipvsadm "$@" > /tmp/o 2> /tmp/e; local rc=$?
  printf '%s\0' "$@" > /tmp/a
  echo "S|$N|$(base64 -w0 < /tmp/a)|$rc|$(base64 -w0 < /tmp/o)|$(base64 -w0 < /tmp/e)"; N=$((N+1))
}
block() { local name=$1; shift; "$@" > /tmp/blk 2>&1; local rc=$?; echo "B|$name|$rc|$(base64 -w0 < /tmp/blk)"; }
answers() { local name=$1 family=$2 target=$3 A=""
  for k in 1 2; do A="$A $(ip netns exec cl socat -T3 - $family:$target,connect-timeout=3 </dev/null 2>&1 | tr -d '\r\n')"; done
  echo "B|$name|0|$(echo "$A" | base64 -w0)"; }
# IPv6 on the same links: client fd00:1::2, director fd00:1::1 / fd00:2::1 (VIP6 fd00::100 on
# lo), real servers fd00:2::11..13, routed back through the director (NAT66).
ip netns exec lb sysctl -qw net.ipv6.conf.all.forwarding=1
ip -n cl -6 addr add fd00:1::2/64 dev cl0 nodad; ip -n cl -6 route add default via fd00:1::1
ip -n lb -6 addr add fd00:1::1/64 dev lb0 nodad; ip -n lb -6 addr add fd00:2::1/64 dev br0 nodad
ip -n lb -6 addr add fd00::100/128 dev lo
for i in 1 2 3; do
  ip -n rs$i -6 addr add fd00:2::1$i/64 dev eth0 nodad; ip -n rs$i -6 route add default via fd00:2::1
  ip netns exec rs$i socat TCP6-LISTEN:8080,fork,reuseaddr SYSTEM:"echo rs$i" >/dev/null 2>&1 &
  ip netns exec rs$i socat UDP6-RECVFROM:5353,fork SYSTEM:"echo rs$i" >/dev/null 2>&1 &
done
# The director's own servers answer "director" / "director6".
L socat TCP-LISTEN:80,fork,reuseaddr SYSTEM:"echo director" >/dev/null 2>&1 &
L socat TCP6-LISTEN:8080,fork,reuseaddr,ipv6only=1 SYSTEM:"echo director6" >/dev/null 2>&1 &
sleep 2
# 1. Local real servers, listed (no traffic yet).
step -A -t 10.0.0.1:80 -s rr
step -a -t 10.0.0.1:80 -r 127.0.0.1:80 -g
step -a -t 10.0.0.1:80 -r 127.0.0.2:8080 -m
step -a -t 10.0.0.1:80 -r 10.0.1.1 -i
step -a -t 10.0.0.1:80 -r 10.0.2.1:8080 -m -w 3
step -a -t 10.0.0.1:80 -r 10.0.2.11 -g
step -A -t [fd00::100]:8080 -s rr
step -a -t [fd00::100]:8080 -r [::1]:8080 -g
step -a -t [fd00::100]:8080 -r [fd00:1::1]:8080 -m
step -a -t [fd00::100]:8080 -r [fd00:2::1]:9000 -m
step -a -t [fd00::100]:8080 -r 10.0.2.1 -i --tun-type gue --tun-port 6080
step -a -t [fd00::100]:8080 -r 10.0.0.1 -g
step -a -t [fd00::100]:8080 -r [fd00:2::11]:8080 -i --tun-type gre --tun-csum
step -Ln
step -Sn
step -Ln --tun-info
step -e -t 10.0.0.1:80 -r 127.0.0.1:80 -m -w 5
step -e -t 10.0.0.1:80 -r 10.0.2.11 -m
step -e -t [fd00::100]:8080 -r 10.0.2.1 -g
step -e -t [fd00::100]:8080 -r [::1]:8080 -i
step -Ln
step -Sn
step -C
# 2. Who answers: ldirectord's fallback (127.0.0.1:80 gate), the director's own addresses.
L ipvsadm -A -t 10.0.0.1:80 -s rr
L ipvsadm -a -t 10.0.0.1:80 -r 127.0.0.1:80 -g
answers answers-fallback TCP 10.0.0.1:80
L ipvsadm -C
L ipvsadm -A -t 10.0.0.2:80 -s rr
L ipvsadm -a -t 10.0.0.2:80 -r 10.0.2.1:80 -m
ip -n lb addr add 10.0.0.2/32 dev lo
answers answers-ifaddr4 TCP 10.0.0.2:80
L ipvsadm -A -t [fd00::101]:8080 -s rr
L ipvsadm -a -t [fd00::101]:8080 -r [fd00:2::1]:8080 -m
ip -n lb -6 addr add fd00::101/128 dev lo
answers answers-ifaddr6 TCP6 [fd00::101]:8080
L ipvsadm -C
# A local masquerading real server at another port than the service's: is it DNATed?
L socat TCP-LISTEN:8081,fork,reuseaddr SYSTEM:"echo director8081" >/dev/null 2>&1 &
sleep 1
L ipvsadm -A -t 10.0.0.3:80 -s rr
L ipvsadm -a -t 10.0.0.3:80 -r 10.0.2.1:8081 -m
ip -n lb addr add 10.0.0.3/32 dev lo
answers answers-local-masq-port TCP 10.0.0.3:80
L ipvsadm -C
# 3. IPv6 connections through NAT66.
L ipvsadm -A -t [fd00::100]:8080 -s rr
L ipvsadm -a -t [fd00::100]:8080 -r [fd00:2::11]:8080 -m
L ipvsadm -a -t [fd00::100]:8080 -r [fd00:2::12]:8080 -m
L ipvsadm -A -u [fd00::100]:53 -s rr
L ipvsadm -a -u [fd00::100]:53 -r [fd00:2::13]:5353 -m
answers answers6 TCP6 [fd00::100]:8080
U=$(echo q | ip netns exec cl socat -T2 - UDP6:[fd00::100]:53 2>&1 | tr -d '\r\n')
echo "B|answers6-udp|0|$(echo "$U" | base64 -w0)"
# One read of the kernel's table, printed three ways from the same moment as far as possible.
L cat /proc/net/ip_vs_conn > /tmp/p1; L ipvsadm -Lnc > /tmp/p2; L ipvsadm -Lc > /tmp/p3; L cat /proc/net/ip_vs_conn > /tmp/p4
for f in p1 p2 p3 p4; do echo "B|$f|0|$(base64 -w0 < /tmp/$f)"; done
echo DONE
