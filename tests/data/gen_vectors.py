#!/usr/bin/env python3
"""Regenerates the wire test vectors in tests/data/*.hex.

Run as root (it creates two throw-away network namespaces joined by a veth
pair, captures real Linux traffic with tcpdump, then derives VLAN, QinQ,
padded, Geneve and malformed variants with scapy):

    python3 tests/data/gen_vectors.py

Each .hex file starts with `#` lines saying how it was built and an
`# expect: <wire::Error name | ok>` line read by tests/wire_vectors.rs;
`# target: geneve` marks vectors that are UDP payloads for
geneve::Packet::new_checked instead of whole frames for flow::extract.
The tests only read the .hex files: neither root nor scapy is needed to
run them.
"""

import os
import subprocess
import sys
import tempfile
import time

from scapy.all import (ARP, ICMP, IP, TCP, UDP, Dot1AD, Dot1Q, Ether, IPv6,
                       Raw, rdpcap)
from scapy.contrib.geneve import GENEVE, GeneveOptions

HERE = os.path.dirname(os.path.abspath(__file__))
TAG = f"wv{os.getpid()}"
NS_A, NS_B = f"{TAG}a", f"{TAG}b"


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, **kw)


def nsx(ns, *args, **kw):
    return sh("ip", "netns", "exec", ns, *args, **kw)


def capture():
    pcap = os.path.join(tempfile.mkdtemp(), "cap.pcap")
    try:
        sh("ip", "netns", "add", NS_A)
        sh("ip", "netns", "add", NS_B)
        sh("ip", "link", "add", "wva", "netns", NS_A, "type", "veth",
           "peer", "name", "wvb", "netns", NS_B)
        for ns, dev, v4, v6, mac in ((NS_A, "wva", "10.0.0.1/24", "fd00::1/64", "02:00:00:00:00:01"),
                                     (NS_B, "wvb", "10.0.0.2/24", "fd00::2/64", "02:00:00:00:00:02")):
            nsx(ns, "ip", "link", "set", dev, "address", mac)
            nsx(ns, "ip", "addr", "add", v4, "dev", dev)
            nsx(ns, "ip", "-6", "addr", "add", v6, "dev", dev, "nodad")
            nsx(ns, "ip", "link", "set", dev, "up")
            nsx(ns, "ip", "link", "set", "lo", "up")
            # veth leaves TCP/UDP checksums partial (offloaded) in a capture;
            # turn the offload off so the captured bytes carry real checksums.
            nsx(ns, "ethtool", "-K", dev, "tx", "off", stdout=subprocess.DEVNULL)
        dump = subprocess.Popen(["ip", "netns", "exec", NS_B, "tcpdump", "-i", "wvb",
                                 "-U", "-s", "0", "-w", pcap],
                                stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        # ARP + ICMP echo, then a fragmented echo (3000 bytes on MTU 1500).
        nsx(NS_A, "ping", "-c", "1", "-W", "2", "10.0.0.2", stdout=subprocess.DEVNULL)
        nsx(NS_A, "ping", "-c", "1", "-W", "2", "-s", "3000", "10.0.0.2", stdout=subprocess.DEVNULL)
        # ICMPv6: neighbor discovery + echo, and a fragmented echo.
        nsx(NS_A, "ping", "-6", "-c", "1", "-W", "2", "fd00::2", stdout=subprocess.DEVNULL)
        nsx(NS_A, "ping", "-6", "-c", "1", "-W", "2", "-s", "3000", "fd00::2",
            stdout=subprocess.DEVNULL)
        # TCP with default options (MSS, SACK-permitted, timestamps, wscale).
        srv = subprocess.Popen(["ip", "netns", "exec", NS_B, "socat", "-u",
                                "TCP-LISTEN:8080,reuseaddr", "-"],
                               stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        nsx(NS_A, "socat", "-u", "-", "TCP:10.0.0.2:8080", input=b"GET / HTTP/1.0\r\n\r\n")
        srv.wait(timeout=5)
        # TCP without timestamps: bare 54-byte ACKs and FINs.
        nsx(NS_A, "sysctl", "-q", "-w", "net.ipv4.tcp_timestamps=0")
        nsx(NS_B, "sysctl", "-q", "-w", "net.ipv4.tcp_timestamps=0")
        srv = subprocess.Popen(["ip", "netns", "exec", NS_B, "socat", "-u",
                                "TCP-LISTEN:8081,reuseaddr", "-"],
                               stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        nsx(NS_A, "socat", "-u", "-", "TCP:10.0.0.2:8081", input=b"x")
        srv.wait(timeout=5)
        # UDP over IPv4 and IPv6, and TCP over IPv6.
        nsx(NS_A, "socat", "-u", "-", "UDP:10.0.0.2:5353", input=b"hello udp")
        nsx(NS_A, "socat", "-u", "-", "UDP6:[fd00::2]:5353", input=b"hello udp6")
        srv = subprocess.Popen(["ip", "netns", "exec", NS_B, "socat", "-u",
                                "TCP6-LISTEN:8082,reuseaddr", "-"],
                               stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        nsx(NS_A, "socat", "-u", "-", "TCP6:[fd00::2]:8082", input=b"v6")
        srv.wait(timeout=5)
        time.sleep(1.0)
        dump.terminate()
        dump.wait()
        return rdpcap(pcap)
    finally:
        sh("ip", "netns", "del", NS_A, check=False)
        sh("ip", "netns", "del", NS_B, check=False)


CAPTURED = ("captured with tcpdump -w on one end of a veth pair between two\n"
            "network namespaces, tx checksum offload off (tests/data/gen_vectors.py)")


def write(name, data, how, expect="ok", target="extract", note=None):
    path = os.path.join(HERE, name + ".hex")
    with open(path, "w") as f:
        f.write(f"# {name}: {len(data)} bytes\n")
        for line in how.split("\n"):
            f.write(f"# {line}\n")
        if note:
            f.write(f"# {note}\n")
        f.write(f"# expect: {expect}\n")
        f.write(f"# target: {target}\n")
        for i in range(0, len(data), 16):
            f.write(" ".join(f"{b:02x}" for b in data[i:i + 16]) + "\n")
    print("wrote", path)


def first(pkts, pred):
    for p in pkts:
        if pred(p):
            return p
    sys.exit("no packet matched")


def main():
    pkts = capture()
    arp = first(pkts, lambda p: ARP in p and p[ARP].op == 1)
    echo = first(pkts, lambda p: ICMP in p and p[ICMP].type == 8 and p[IP].flags == 2)
    frag1 = first(pkts, lambda p: IP in p and p[IP].flags.MF and p[IP].frag == 0)
    frag2 = first(pkts, lambda p: IP in p and p[IP].frag > 0)
    syn = first(pkts, lambda p: TCP in p and p[TCP].flags == "S" and p[TCP].dport == 8080)
    synack = first(pkts, lambda p: TCP in p and p[TCP].flags == "SA" and p[TCP].sport == 8080)
    ack54 = first(pkts, lambda p: TCP in p and p[TCP].dport == 8081 and p[TCP].flags == "A"
                  and len(p) == 54)
    fin54 = first(pkts, lambda p: TCP in p and p[TCP].dport == 8081 and "F" in str(p[TCP].flags)
                  and len(p) == 54)
    udp4 = first(pkts, lambda p: IP in p and UDP in p and p[UDP].dport == 5353)
    udp6 = first(pkts, lambda p: IPv6 in p and UDP in p and p[UDP].dport == 5353)
    tcp6 = first(pkts, lambda p: IPv6 in p and TCP in p and p[TCP].flags == "S")
    ns6 = first(pkts, lambda p: IPv6 in p and p[IPv6].nh == 58 and p[IPv6].src != "::"
                and bytes(p[IPv6].payload)[0] == 135)
    echo6 = first(pkts, lambda p: IPv6 in p and p[IPv6].nh == 58 and bytes(p[IPv6].payload)[0] == 128)
    frag6a = first(pkts, lambda p: IPv6 in p and p[IPv6].nh == 44
                   and bytes(p[IPv6].payload)[2:4] == b"\x00\x01")
    frag6b = first(pkts, lambda p: IPv6 in p and p[IPv6].nh == 44
                   and int.from_bytes(bytes(p[IPv6].payload)[2:4], "big") & 0xfff8)

    for name, p, what in (
        ("arp_request", arp, "ARP who-has 10.0.0.2 tell 10.0.0.1"),
        ("icmp_echo", echo, "ICMP echo request 10.0.0.1 -> 10.0.0.2 (ping)"),
        ("ipv4_frag_first", frag1, "first fragment of a 3000-byte ping (MF=1, offset 0)"),
        ("ipv4_frag_later", frag2, "non-first fragment of a 3000-byte ping"),
        ("tcp_syn_options", syn, "TCP SYN with MSS, SACK-permitted, timestamps, window scale"),
        ("tcp_synack_options", synack, "TCP SYN-ACK with options"),
        ("tcp_ack_54", ack54, "bare TCP ACK, 54 bytes (timestamps disabled)"),
        ("tcp_fin_54", fin54, "TCP FIN-ACK, 54 bytes (timestamps disabled)"),
        ("udp_ipv4", udp4, "UDP 'hello udp' to 10.0.0.2:5353 (socat)"),
        ("udp_ipv6", udp6, "UDP 'hello udp6' to [fd00::2]:5353 (socat)"),
        ("tcp_ipv6_syn", tcp6, "TCP SYN over IPv6 to [fd00::2]:8082"),
        ("icmpv6_ns", ns6, "ICMPv6 neighbor solicitation with source link-layer option"),
        ("icmpv6_echo", echo6, "ICMPv6 echo request (ping -6)"),
        ("ipv6_frag_first", frag6a, "first IPv6 fragment of a 3000-byte ping -6"),
        ("ipv6_frag_later", frag6b, "non-first IPv6 fragment of a 3000-byte ping -6"),
    ):
        write(name, bytes(p)[:1514], f"{what};\n{CAPTURED}.")

    ack = bytes(ack54)
    write("tcp_ack_padded", ack + bytes([0xde, 0xad, 0xbe, 0xef, 0x55, 0xaa]),
          "tcp_ack_54 (captured, see there) padded to the 60-byte Ethernet minimum\n"
          "with NON-ZERO bytes de ad be ef 55 aa, as a NIC or switch may pad it.\n"
          "The TCP checksum must verify over the IP datagram only; l2_pad_len 6.")

    # VLAN variants derived from captured frames with scapy.
    e = Ether(bytes(echo))
    dot1q = Ether(src=e.src, dst=e.dst) / Dot1Q(prio=5, vlan=100) / e.payload
    write("vlan_8021q_icmp", bytes(dot1q),
          "icmp_echo (captured) re-tagged with scapy: Ether()/Dot1Q(prio=5, vlan=100)/IP")
    s = Ether(bytes(syn))
    qinq = Ether(src=s.src, dst=s.dst, type=0x88a8) / Dot1AD(vlan=10) / Dot1Q(prio=3, vlan=20) / s.payload
    write("qinq_tcp_syn", bytes(qinq),
          "tcp_syn_options (captured) re-tagged with scapy:\n"
          "Ether(type=0x88a8)/Dot1AD(vlan=10)/Dot1Q(prio=3, vlan=20)/IP/TCP")

    # Malformed frames, each derived from a captured one.
    write("bad_truncated_ethernet", ack[:13],
          "first 13 bytes of tcp_ack_54 (captured): Ethernet header cut short",
          expect="truncated")
    write("bad_truncated_ipv4", ack[:14 + 19],
          "tcp_ack_54 cut 19 bytes into the IPv4 header", expect="truncated")
    big = bytearray(ack)
    big[16:18] = (len(ack) - 14 + 20).to_bytes(2, "big")
    write("bad_ipv4_total_length", bytes(big),
          "tcp_ack_54 with IPv4 total length raised to 60 in a 40-byte datagram",
          expect="length_exceeds_frame")
    ihl = bytearray(ack)
    ihl[14] = 0x44
    write("bad_ipv4_ihl", bytes(ihl),
          "tcp_ack_54 with IHL 4 (16-byte header, below the 20-byte minimum)",
          expect="length_too_short")
    ver = bytearray(ack)
    ver[14] = 0x55
    write("bad_ipv4_version", bytes(ver),
          "tcp_ack_54 with the IP version nibble set to 5 under ethertype 0x0800",
          expect="bad_version")
    vl = bytes(Ether(src=e.src, dst=e.dst) / Dot1Q(vlan=100))[:16]
    write("bad_vlan_nothing_behind", vl,
          "Ether()/Dot1Q(vlan=100) built with scapy, cut right after the TPID and\n"
          "2 bytes of TCI: a VLAN tag with nothing behind it", expect="bad_vlan")
    three = Ether(src=s.src, dst=s.dst, type=0x88a8) / Dot1AD(vlan=10) / Dot1Q(vlan=20) / Dot1Q(vlan=30) / s.payload
    write("bad_third_vlan", bytes(three),
          "tcp_syn_options re-tagged with three tags (scapy Dot1AD/Dot1Q/Dot1Q)",
          expect="too_many_vlans")
    t = bytearray(ack[:14 + 20 + 12])
    t[16:18] = (32).to_bytes(2, "big")
    ip = IP(bytes(t[14:]))
    del ip.chksum
    t[14:34] = bytes(ip)[:20]
    write("bad_truncated_tcp", bytes(t),
          "tcp_ack_54 cut after 12 bytes of TCP header; IPv4 total length set\n"
          "to 32 and header checksum recomputed (scapy) so only TCP is short",
          expect="truncated")
    doff = bytearray(ack)
    doff[14 + 20 + 12] = 0x40
    write("bad_tcp_data_offset", bytes(doff),
          "tcp_ack_54 with TCP data offset 4 (16 bytes)", expect="length_too_short")
    u = bytearray(bytes(udp4))
    u[14 + 20 + 4:14 + 20 + 6] = (4).to_bytes(2, "big")
    write("bad_udp_length", bytes(u),
          "udp_ipv4 (captured) with UDP length 4", expect="length_too_short")

    # Geneve (UDP payloads), built with scapy's GENEVE layer.
    inner = bytes(echo)
    g = GENEVE(vni=0x123456, proto=0x6558, critical=1,
               options=[GeneveOptions(classid=0x0102, type=0x80, data=b"\xde\xad\xbe\xef"),
                        GeneveOptions(classid=0xffff, type=0x01, data=bytes(range(1, 9)))]) / Raw(inner)
    gb = bytes(g)
    write("geneve_options", gb,
          "Geneve VNI 0x123456, proto 0x6558, C=1, options (0x0102, 0x80, 4 bytes)\n"
          "and (0xffff, 0x01, 8 bytes), inner frame icmp_echo; built with scapy\n"
          "GENEVE/GeneveOptions; the UDP payload only", target="geneve")
    bad = bytearray(gb)
    bad[0] = (bad[0] & 0x3f) | 0x40
    write("bad_geneve_version", bytes(bad),
          "geneve_options with the version field set to 1", expect="bad_version",
          target="geneve")
    cut = gb[:8 + 10]
    write("bad_geneve_options_cut", cut,
          "geneve_options cut 10 bytes into its 20-byte options block",
          expect="length_exceeds_frame", target="geneve")


if __name__ == "__main__":
    main()
