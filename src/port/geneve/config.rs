//! How a Geneve port is configured: the `add-port ... type=geneve`
//! options (Open vSwitch's names and defaults) as a [`GeneveConfig`], and
//! the receive policy that follows from it.

use super::codec::DecapPolicy;
use super::parse_int;
use crate::port::{parse_bool, Error};
use crate::wire::geneve as wg;
use std::net::{Ipv4Addr, SocketAddr};

/// Where encapsulated packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    /// Always this host (and only datagrams from it are accepted).
    Ip(Ipv4Addr),
    /// The packet's `tun_dst` (datagrams from anyone are accepted).
    Flow,
}

/// The VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// This VNI (on receive: only this VNI is accepted).
    Vni(u32),
    /// From / into the packet's `tun_id`.
    Flow,
}

/// How to open a Geneve port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneveConfig {
    /// Port name (not a device).
    pub name: String,
    /// `remote_ip=`.
    pub remote: Remote,
    /// `local_ip=`: the address to bind (and the outer source); `None`
    /// binds every address and lets the kernel pick the source.
    pub local: Option<Ipv4Addr>,
    /// Accepted VNI (`in_key=`, or `key=`).
    pub in_key: Key,
    /// Sent VNI (`out_key=`, or `key=`).
    pub out_key: Key,
    /// `dst_port=` (6081).
    pub dst_port: u16,
    /// `csum=true`: compute the outer UDP checksum (off by default).
    pub csum: bool,
    /// `ttl=` of the outer header (64).
    pub ttl: u8,
    /// `tos=` of the outer header (0).
    pub tos: u8,
    /// `df_default=` (true): set DF on the outer header.
    pub df: bool,
    /// `gso=` (true): send a TSO super-frame's segments as one UDP GSO
    /// sendmsg. Off for a peer that reads a virtual underlay (a veth) with
    /// a packet socket, as Open vSwitch's userspace datapath does: there
    /// the GSO packet arrives uncut, too big for it (a NIC cuts it before
    /// the wire, so physical underlays never show this).
    pub gso: bool,
}

impl GeneveConfig {
    /// Defaults for a port to `remote`.
    pub fn new(name: &str, remote: Remote) -> GeneveConfig {
        GeneveConfig {
            name: name.to_string(),
            remote,
            local: None,
            in_key: Key::Vni(0),
            out_key: Key::Vni(0),
            dst_port: wg::UDP_PORT,
            csum: false,
            ttl: 64,
            tos: 0,
            df: true,
            gso: true,
        }
    }

    /// From `add-port ... type=geneve` options: `remote_ip=IP|flow`
    /// (required), `local_ip=IP`, `key=VNI|flow` (default 0), `in_key=`,
    /// `out_key=`, `dst_port=N`, `csum=BOOL`, `ttl=N`, `tos=N`,
    /// `df_default=BOOL`, `gso=BOOL`.
    pub fn from_options(name: &str, opts: &[(&str, &str)]) -> Result<GeneveConfig, Error> {
        let mut c = GeneveConfig::new(name, Remote::Flow);
        let mut remote = None;
        let ip = |k: &str, v: &str| -> Result<Ipv4Addr, Error> {
            v.parse::<Ipv4Addr>().map_err(|_| {
                if v.parse::<std::net::Ipv6Addr>().is_ok() {
                    Error::config(
                        name,
                        format!("{k}={v}: IPv6 underlays are not supported (IPv4 only)"),
                    )
                } else {
                    Error::config(name, format!("{k}={v}: expected an IPv4 address"))
                }
            })
        };
        let key = |k: &str, v: &str| -> Result<Key, Error> {
            if v == "flow" {
                return Ok(Key::Flow);
            }
            parse_int(k, v, 0xff_ffff)
                .map(|n| Key::Vni(n as u32))
                .map_err(|e| {
                    Error::config(name, format!("{e} (a Geneve VNI is 24 bits), or 'flow'"))
                })
        };
        for &(k, v) in opts {
            match k {
                "remote_ip" if v == "flow" => remote = Some(Remote::Flow),
                "remote_ip" => remote = Some(Remote::Ip(ip(k, v)?)),
                "local_ip" => c.local = Some(ip(k, v)?),
                "key" => {
                    c.in_key = key(k, v)?;
                    c.out_key = c.in_key;
                }
                "in_key" => c.in_key = key(k, v)?,
                "out_key" => c.out_key = key(k, v)?,
                "dst_port" => {
                    c.dst_port = v.parse().ok().filter(|&p| p != 0).ok_or_else(|| {
                        Error::config(name, format!("{k}={v}: expected a UDP port"))
                    })?
                }
                "csum" => c.csum = parse_bool(name, k, v)?,
                "df_default" => c.df = parse_bool(name, k, v)?,
                "gso" => c.gso = parse_bool(name, k, v)?,
                "ttl" => {
                    c.ttl = v.parse().ok().filter(|&t| t != 0).ok_or_else(|| {
                        Error::config(name, format!("{k}={v}: expected a TTL (1..255)"))
                    })?
                }
                "tos" => {
                    c.tos = parse_int(k, v, 0xff).map_err(|e| {
                        Error::config(name, format!("{e} (tos=inherit is not supported)"))
                    })? as u8
                }
                _ => {
                    return Err(Error::config(
                        name,
                        format!(
                            "unknown option '{k}' for a geneve port (remote_ip, local_ip, key, \
                             in_key, out_key, dst_port, csum, ttl, tos, df_default, gso)"
                        ),
                    ))
                }
            }
        }
        c.remote = remote.ok_or_else(|| {
            Error::config(
                name,
                "remote_ip is required (an IPv4 address, or 'flow' to take tun_dst)",
            )
        })?;
        Ok(c)
    }

    pub(super) fn policy(&self, bound: SocketAddr) -> DecapPolicy {
        DecapPolicy {
            remote: match self.remote {
                Remote::Ip(a) => Some(a),
                Remote::Flow => None,
            },
            in_key: match self.in_key {
                Key::Vni(v) => Some(v),
                Key::Flow => None,
            },
            local: self.local,
            port: bound.port(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let o = |v: &[(&str, &str)]| GeneveConfig::from_options("t", v);
        let c = o(&[("remote_ip", "10.0.0.2"), ("key", "5000"), ("csum", "true")]).unwrap();
        assert_eq!(c.remote, Remote::Ip("10.0.0.2".parse().unwrap()));
        assert_eq!(
            (c.in_key, c.out_key, c.csum, c.dst_port),
            (Key::Vni(5000), Key::Vni(5000), true, 6081)
        );
        assert!(c.gso, "UDP GSO on by default");
        let c = o(&[("remote_ip", "10.0.0.2"), ("gso", "false")]).unwrap();
        assert!(!c.gso);
        let c = o(&[("remote_ip", "flow"), ("key", "flow"), ("out_key", "0x10")]).unwrap();
        assert_eq!(
            (c.remote, c.in_key, c.out_key),
            (Remote::Flow, Key::Flow, Key::Vni(16))
        );
        for (bad, why) in [
            (vec![("key", "1")], "remote_ip is required"),
            (vec![("remote_ip", "fe80::1")], "IPv6"),
            (
                vec![("remote_ip", "10.0.0.1"), ("key", "0x1000000")],
                "24 bits",
            ),
            (
                vec![("remote_ip", "10.0.0.1"), ("tos", "inherit")],
                "inherit",
            ),
            (
                vec![("remote_ip", "10.0.0.1"), ("color", "blue")],
                "unknown option 'color'",
            ),
            (vec![("remote_ip", "10.0.0.1"), ("ttl", "0")], "TTL"),
        ] {
            let e = o(&bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
