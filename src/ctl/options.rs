//! The operator's `key=value` text, turned into the typed settings of the
//! switch API.
//!
//! `vswitchctl add-port br0 vm1 type=tap tag=100`, a `[[bridge.port]]`
//! table in the configuration file and (later) an OVSDB row all end up as
//! the same [`PortSpec`]; this module is the one place where the text forms
//! are read. Every error names the offending token and nothing is applied
//! before every token parsed.

pub use super::api::OptionError;
use super::api::{BridgeSettings, CtLimit, CtSettings, CtTimeouts, PortSettings, PortSpec};
use crate::conntrack::{ChecksumPolicy, IpFamily, IpfSettings, TimeoutKind};
use crate::ofproto::{PortKind, VlanMode};

fn value_err(k: &str, v: &str, expected: impl Into<String>) -> OptionError {
    OptionError::Value {
        key: k.to_string(),
        value: v.to_string(),
        expected: expected.into(),
    }
}

/// Splits `key=value` (a bare `key` has an empty value).
pub fn split(tok: &str) -> (&str, &str) {
    match tok.split_once('=') {
        Some((k, v)) => (k.trim(), v.trim()),
        None => (tok.trim(), ""),
    }
}

/// Splits `key=value`, refusing a bare key.
fn split_kv<'a>(tok: &'a str, expected: &'static str) -> Result<(&'a str, &'a str), OptionError> {
    tok.split_once('=')
        .map(|(k, v)| (k.trim(), v.trim()))
        .ok_or_else(|| OptionError::Syntax {
            token: tok.to_string(),
            expected,
        })
}

/// `true|yes|on|1` or `false|no|off|0`.
pub fn parse_bool(k: &str, v: &str) -> Result<bool, OptionError> {
    match v {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(value_err(k, v, "expected true or false")),
    }
}

/// A number of type `T`, described as `what` in the error.
pub fn parse_num<T: core::str::FromStr>(k: &str, v: &str, what: &str) -> Result<T, OptionError> {
    v.parse()
        .map_err(|_| value_err(k, v, format!("expected {what}")))
}

fn parse_vid(k: &str, v: &str) -> Result<u16, OptionError> {
    let n: u16 = parse_num(k, v, "a VLAN id (0..4095)")?;
    if n > 4095 {
        return Err(value_err(k, v, "a VLAN id is 0..4095"));
    }
    Ok(n)
}

/// One port-policy token into `s`; `Ok(false)` when the key is not a
/// policy key (the port type may know it).
fn port_setting(s: &mut PortSettings, k: &str, v: &str) -> Result<bool, OptionError> {
    match (k, v) {
        ("tag", "" | "none" | "[]") => s.tag = Some(None),
        ("tag", v) => s.tag = Some(Some(parse_vid(k, v)?)),
        ("trunks", v) => {
            let mut t = Vec::new();
            for x in v
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
            {
                t.push(parse_vid(k, x)?);
            }
            s.trunks = Some(t);
        }
        ("vlan_mode", "" | "none" | "[]") => s.vlan_mode = Some(None),
        ("vlan_mode", v) => {
            s.vlan_mode = Some(Some(VlanMode::parse(v).ok_or_else(|| {
                value_err(
                    k,
                    v,
                    "expected access, trunk, native-tagged or native-untagged",
                )
            })?))
        }
        ("bpdu_guard", v) => s.bpdu_guard = Some(parse_bool(k, v)?),
        ("mac_limit", v) => s.mac_limit = Some(parse_num(k, v, "a number of addresses")?),
        ("flood", v) => s.flood = Some(parse_bool(k, v)?),
        ("no-flood" | "no_flood", "") => s.flood = Some(false),
        ("enable", "") => s.enable = Some(true),
        ("disable", "") => s.enable = Some(false),
        ("mtu", v) => s.mtu = Some(parse_num(k, v, "an MTU in bytes")?),
        _ => return Ok(false),
    }
    Ok(true)
}

const PORT_KEYS: &str = " (tag, trunks, vlan_mode, bpdu_guard, mac_limit, flood, no-flood, \
                         enable, disable, mtu)";

/// `set-port` settings.
pub fn port_settings(opts: &[String]) -> Result<PortSettings, OptionError> {
    let mut s = PortSettings::default();
    for tok in opts {
        let (k, v) = split(tok);
        if !port_setting(&mut s, k, v)? {
            return Err(OptionError::Unknown {
                what: "port setting",
                token: tok.clone(),
                hint: PORT_KEYS.to_string(),
            });
        }
    }
    Ok(s)
}

/// `add-port NAME OPTIONS...`: the type, the OpenFlow number, the policy,
/// and the options the port type reads itself (`remote_ip=`, ...), which
/// the port's own configuration checks when it opens.
pub fn port_spec(name: &str, opts: &[String]) -> Result<PortSpec, OptionError> {
    let mut spec = PortSpec::new(name, PortKind::System);
    for tok in opts {
        let (k, v) = split(tok);
        match k {
            "type" => {
                spec.kind = PortKind::parse(v).ok_or_else(|| {
                    let all: Vec<&str> = PortKind::ALL.iter().map(|k| k.name()).collect();
                    value_err(
                        k,
                        v,
                        format!("unknown port type (supported: {})", all.join(", ")),
                    )
                })?
            }
            "ofport" | "ofport_request" => {
                let n: u32 = parse_num(k, v, "a port number (1..65279)")?;
                if n == 0 || n >= crate::flow::ofp_port::MAX {
                    return Err(value_err(k, v, "port numbers are 1..65279"));
                }
                spec.ofport = Some(n);
            }
            _ if port_setting(&mut spec.settings, k, v)? => {}
            _ if !v.is_empty() => spec.type_options.push((k.to_string(), v.to_string())),
            _ => {
                return Err(OptionError::Unknown {
                    what: "port option",
                    token: tok.clone(),
                    hint: String::new(),
                })
            }
        }
    }
    Ok(spec)
}

/// A conntrack policy setting (`checksum=`, `tcp_liberal=`, ...), with or
/// without the `ct_` prefix `set-bridge` uses.
fn ct_setting(c: &mut CtSettings, tok: &str, k: &str, v: &str) -> Result<(), OptionError> {
    match k.strip_prefix("ct_").unwrap_or(k) {
        "checksum" => {
            c.checksum = Some(
                v.parse::<ChecksumPolicy>()
                    .map_err(|e| value_err(k, v, e.to_string()))?,
            )
        }
        "tcp_liberal" => c.tcp_liberal = Some(parse_bool(k, v)?),
        "tcp_seq_check" => c.tcp_seq_check = Some(parse_bool(k, v)?),
        "max_conns" => c.max_conns = Some(parse_num(k, v, "a number of connections")?),
        _ => {
            return Err(OptionError::Unknown {
                what: "conntrack setting",
                token: tok.to_string(),
                hint: " (checksum, tcp_liberal, tcp_seq_check, max_conns)".to_string(),
            })
        }
    }
    Ok(())
}

/// `set-ct` settings.
pub fn ct_settings(opts: &[String]) -> Result<CtSettings, OptionError> {
    let mut c = CtSettings::default();
    for tok in opts {
        let (k, v) = split_kv(tok, "key=value")?;
        ct_setting(&mut c, tok, k, v)?;
    }
    Ok(c)
}

/// `set-bridge` settings.
pub fn bridge_settings(opts: &[String]) -> Result<BridgeSettings, OptionError> {
    let mut s = BridgeSettings::default();
    for tok in opts {
        let (k, v) = split_kv(tok, "key=value")?;
        match k {
            "forward_bpdu" | "forward-bpdu" => s.forward_bpdu = Some(parse_bool(k, v)?),
            "mac_aging" | "mac-aging-time" => s.mac_aging_secs = Some(parse_num(k, v, "seconds")?),
            "mac_table_size" | "mac-table-size" => {
                let n: usize = parse_num(k, v, "a number of entries")?;
                // Open vSwitch's bounds: at least 10, at most a million.
                if !(10..=1_000_000).contains(&n) {
                    return Err(value_err(k, v, "a MAC table holds 10..1000000 entries"));
                }
                s.mac_table_size = Some(n);
            }
            k if k.starts_with("ct_") => ct_setting(&mut s.ct, tok, k, v)?,
            _ => {
                return Err(OptionError::Unknown {
                    what: "bridge setting",
                    token: tok.clone(),
                    hint:
                        " (forward_bpdu, mac_aging, mac_table_size, ct_checksum, ct_tcp_liberal, \
                           ct_tcp_seq_check, ct_max_conns)"
                            .to_string(),
                })
            }
        }
    }
    Ok(s)
}

/// `ipf-set` tokens: an optional `v4`/`v6` (the family `enabled` and
/// `min_frag_size` apply to), `enabled=BOOL`, `max_frags=N`,
/// `min_frag_size=N`.
pub fn ipf_settings(opts: &[String]) -> Result<IpfSettings, OptionError> {
    let mut s = IpfSettings::default();
    for tok in opts {
        let (k, v) = split(tok);
        match (k, v) {
            ("v4", "") => s.family = Some(IpFamily::V4),
            ("v6", "") => s.family = Some(IpFamily::V6),
            ("enabled", v) => s.enabled = Some(parse_bool(k, v)?),
            ("max_frags", v) => s.max_frags = Some(parse_num(k, v, "a number of fragments")?),
            ("min_frag_size", v) => s.min_frag_size = Some(parse_num(k, v, "bytes")?),
            _ => {
                return Err(OptionError::Unknown {
                    what: "ipf setting",
                    token: tok.clone(),
                    hint: " (v4, v6, enabled, max_frags, min_frag_size)".to_string(),
                })
            }
        }
    }
    Ok(s)
}

/// One `ct-set-limits` token: `default=N` or `zone=Z,limit=N` (N = 0 means
/// unlimited, as Open vSwitch; `limit=none` removes a zone's own limit).
pub fn ct_limit(tok: &str) -> Result<CtLimit, OptionError> {
    const SHAPE: &str = "default=N or zone=Z,limit=N";
    let mut zone = None;
    let mut limit = None;
    let mut is_default = false;
    for part in tok.split(',') {
        let (k, v) = split_kv(part, SHAPE)?;
        match k {
            "default" => {
                is_default = true;
                let n: u32 = parse_num(k, v, "a connection count")?;
                limit = Some((n != 0).then_some(n));
            }
            "zone" => zone = Some(parse_num::<u16>(k, v, "a zone (0..65535)")?),
            "limit" if v == "none" => limit = Some(None),
            "limit" => {
                let n: u32 = parse_num(k, v, "a connection count")?;
                limit = Some(Some(if n == 0 { u32::MAX } else { n }));
            }
            _ => {
                return Err(OptionError::Unknown {
                    what: "limit key",
                    token: tok.to_string(),
                    hint: format!(" ({SHAPE})"),
                })
            }
        }
    }
    match (is_default, zone, limit) {
        (true, None, Some(l)) => Ok(CtLimit {
            zone: None,
            limit: l,
        }),
        (false, Some(z), Some(l)) => Ok(CtLimit {
            zone: Some(z),
            limit: l,
        }),
        _ => Err(OptionError::Syntax {
            token: tok.to_string(),
            expected: SHAPE,
        }),
    }
}

/// `ct-set-timeout` tokens: `NAME=SECONDS`.
pub fn ct_timeouts(zone: Option<u16>, opts: &[String]) -> Result<CtTimeouts, OptionError> {
    let mut t = CtTimeouts {
        zone,
        set: Vec::new(),
    };
    for tok in opts {
        let (k, v) = split_kv(tok, "NAME=SECONDS")?;
        let kind = k.parse::<TimeoutKind>().map_err(|e| OptionError::Unknown {
            what: "timeout",
            token: tok.clone(),
            hint: format!(" ({e})"),
        })?;
        let secs: u32 = parse_num(k, v, "seconds")?;
        if secs == 0 {
            return Err(value_err(k, v, "a timeout must be at least 1 second"));
        }
        t.set.push((kind, secs));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn port_spec_types_and_policy() {
        let p = port_spec(
            "vm1",
            &s(&["type=tap", "tag=100", "ofport=7", "vnet_hdr=false"]),
        )
        .unwrap();
        assert_eq!(p.kind, PortKind::Tap);
        assert_eq!(p.ofport, Some(7));
        assert_eq!(p.settings.tag, Some(Some(100)));
        assert_eq!(p.type_options, vec![("vnet_hdr".into(), "false".into())]);
        // Open vSwitch's empty type is a system interface.
        assert_eq!(
            port_spec("eth1", &s(&["type="])).unwrap().kind,
            PortKind::System
        );
        let e = port_spec("x", &s(&["type=vxlan"])).unwrap_err();
        assert_eq!(e.token(), "type=vxlan");
        assert!(e.to_string().contains("supported: dummy, tap"), "{e}");
        assert!(port_spec("x", &s(&["ofport=0"])).is_err());
        assert!(port_spec("x", &s(&["tag=5000"])).is_err());
        assert!(port_spec("x", &s(&["bogus"])).is_err());
    }

    #[test]
    fn settings_point_at_the_token() {
        let e = port_settings(&s(&["tag=1", "colour=red"])).unwrap_err();
        assert_eq!(e.token(), "colour=red");
        let e = bridge_settings(&s(&["forward_bpdu=maybe"])).unwrap_err();
        assert_eq!(e.token(), "forward_bpdu=maybe");
        let b = bridge_settings(&s(&["ct_checksum=skip", "mac_aging=30"])).unwrap();
        assert_eq!(b.ct.checksum, Some(ChecksumPolicy::Skip));
        assert_eq!(b.mac_aging_secs, Some(30));
        let b = bridge_settings(&s(&["mac-table-size=100"])).unwrap();
        assert_eq!(b.mac_table_size, Some(100));
        for bad in [
            "mac_table_size=9",
            "mac_table_size=1000001",
            "mac_table_size=x",
        ] {
            assert!(bridge_settings(&s(&[bad])).is_err(), "{bad}");
        }
        assert!(ct_settings(&s(&["max_conns"])).is_err());
    }

    #[test]
    fn limits_and_timeouts() {
        assert_eq!(
            ct_limit("default=0").unwrap(),
            CtLimit {
                zone: None,
                limit: None
            }
        );
        assert_eq!(
            ct_limit("zone=5,limit=10").unwrap(),
            CtLimit {
                zone: Some(5),
                limit: Some(10)
            }
        );
        assert!(ct_limit("zone=5").is_err());
        assert!(ct_limit("zone=5,limit=x").is_err());
        let t = ct_timeouts(Some(3), &s(&["tcp_established=60"])).unwrap();
        assert_eq!(t.set.len(), 1);
        assert!(ct_timeouts(None, &s(&["tcp_established=0"])).is_err());
        assert!(ct_timeouts(None, &s(&["nonsense=5"])).is_err());
    }
}
