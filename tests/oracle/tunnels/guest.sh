#!/bin/bash
. /net-setup.sh
dr_rs
L="ip netns exec lb"
$L ipvsadm -A -u 10.0.0.1:53 -s rr
$L ipvsadm -a -u 10.0.0.1:53 -r 10.0.2.11 -i --tun-type gue --tun-port 6080 --tun-csum
$L ipvsadm -A -u 10.0.0.1:54 -s rr
$L ipvsadm -a -u 10.0.0.1:54 -r 10.0.2.12 -i --tun-type gue --tun-port 6081 --tun-remcsum
$L ipvsadm -A -u 10.0.0.1:55 -s rr
$L ipvsadm -a -u 10.0.0.1:55 -r 10.0.2.13 -i --tun-type gre --tun-csum
$L ipvsadm -A -u 10.0.0.1:56 -s rr
$L ipvsadm -a -u 10.0.0.1:56 -r 10.0.2.13 -i --tun-type gue --tun-port 6082 --tun-nocsum
$L ipvsadm -A -u 10.0.0.1:57 -s rr
$L ipvsadm -a -u 10.0.0.1:57 -r 10.0.2.13 -i --tun-type gre
$L ipvsadm -A -u 10.0.0.1:58 -s rr
$L ipvsadm -a -u 10.0.0.1:58 -r 10.0.2.12 -i --tun-type gue --tun-port 6083 --tun-remcsum
$L ipvsadm -A -u 10.0.0.1:59 -s rr
$L ipvsadm -a -u 10.0.0.1:59 -r 10.0.2.11 -i
# route MTU toward rs3 for the PMTU probe
$L ip route add 10.0.2.13/32 dev br0 mtu lock 1400
uname -r
LD_LIBRARY_PATH=/ /ethtool --version
echo "== with tx checksum offload on the client (CHECKSUM_PARTIAL through veth)"
$L tcpdump -Z root -i br0 -n -xx -c 6 'ip proto 17 or ip proto 47' > /tmp/cap1.txt 2>&1 &
sleep 2
for p in 53 54 55 56 57; do echo -n "hello$p" | ip netns exec cl socat -u - UDP:10.0.0.1:$p ; done
sleep 2; kill %1 2>/dev/null; sleep 0.5; cat /tmp/cap1.txt
echo "== tx checksum offload off on the client (complete checksum, as from a NIC)"
LD_LIBRARY_PATH=/ ip netns exec cl /ethtool -K cl0 tx off 2>&1 | tail -1
$L tcpdump -Z root -i br0 -n -xx -c 4 'ip proto 17 or ip proto 47 or ip proto 4' > /tmp/cap2.txt 2>&1 &
sleep 2
for p in 58 55 53 59; do echo -n "world$p!" | ip netns exec cl socat -u - UDP:10.0.0.1:$p,sourceport=4444 ; done
sleep 2; kill %1 2>/dev/null; sleep 0.5; cat /tmp/cap2.txt
echo "== PMTU: a 1380-byte DF datagram to the GRE csum service (route MTU 1400 to rs3)"
$L tcpdump -Z root -i lb0 -n -xx -c 1 'icmp' > /tmp/cap3.txt 2>&1 &
sleep 2
head -c 1352 /dev/zero | ip netns exec cl socat -u - UDP:10.0.0.1:55,sourceport=5555 2>&1
sleep 2; kill %1 2>/dev/null; sleep 0.5; cat /tmp/cap3.txt
