//! The underlay MTU: which device the kernel routes a tunnel's peer
//! through (a parser of `/proc/net/route`, pure so it is testable) and that
//! device's MTU.

use crate::port::sys::netdev;
use std::net::Ipv4Addr;

/// The device the main routing table uses for `dst`, from the text of
/// `/proc/net/route` (longest prefix, then lowest metric).
pub fn route_device(table: &str, dst: Ipv4Addr) -> Option<String> {
    let d = u32::from(dst);
    let mut best: Option<(u32, u32, &str)> = None;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(dev), Some(net), Some(metric), Some(mask)) =
            (f.first(), f.get(1), f.get(6), f.get(7))
        else {
            continue;
        };
        // The kernel prints each __be32 as the hex of its in-memory value.
        let hex = |s: &str| {
            u32::from_str_radix(s, 16)
                .ok()
                .map(|v| u32::from(Ipv4Addr::from(v.to_ne_bytes())))
        };
        let (Some(net), Some(mask), Ok(metric)) = (hex(net), hex(mask), metric.parse::<u32>())
        else {
            continue;
        };
        if d & mask != net & mask {
            continue;
        }
        let better = match best {
            None => true,
            Some((m, met, _)) => mask.count_ones() > m || (mask.count_ones() == m && metric < met),
        };
        if better {
            best = Some((mask.count_ones(), metric, dev));
        }
    }
    best.map(|(_, _, dev)| dev.to_string())
}

pub(super) fn underlay_mtu(target: Option<Ipv4Addr>) -> u32 {
    let dev = target.and_then(|a| {
        let table = std::fs::read_to_string("/proc/net/route").ok()?;
        route_device(&table, a)
    });
    match dev {
        Some(d) if d != "lo" => netdev::mtu(&d).unwrap_or(1500),
        _ => 1500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_lookup_longest_prefix() {
        // /proc/net/route as Linux prints it on a little-endian machine:
        // default via 10.0.0.1 dev eth0, 10.0.0.0/8 dev eth0,
        // 10.251.0.0/24 dev ul0 (metric 0), 10.251.0.0/24 dev ul1 (metric 5).
        let t =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                 eth0\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n\
                 ul1\t0000FB0A\t00000000\t0001\t0\t0\t5\t00FFFFFF\t0\t0\t0\n\
                 ul0\t0000FB0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        if cfg!(target_endian = "little") {
            assert_eq!(
                route_device(t, "10.251.0.2".parse().unwrap()).as_deref(),
                Some("ul0")
            );
            assert_eq!(
                route_device(t, "10.9.9.9".parse().unwrap()).as_deref(),
                Some("eth0")
            );
            assert_eq!(
                route_device(t, "192.0.2.1".parse().unwrap()).as_deref(),
                Some("eth0")
            );
        }
        assert_eq!(route_device("Iface\n", "10.0.0.1".parse().unwrap()), None);
    }
}
