//! The vswitchctl protocol's front end: each [`Request`] read into the
//! switch API's typed arguments, the API called, its typed reply turned
//! into a [`Response`] (its `Display` as text, its serde form as JSON).
//!
//! One small function per request kind; nothing here decides anything the
//! API does not.

use super::api::{Api, Cancel, CaptureSpec, Error, FlowsReply, TraceRequest};
use super::openflow::{FailMode, Target};
use super::proto::{Request, Response};
use super::{flowtext, options};
use crate::flow::parse::FlowCmd;
use crate::flow::PortNames;
use crate::port::geneve::TlvMapping;
use serde::Serialize;
use std::fmt::Display;
use std::time::Instant;

/// A reply: what `vswitchctl` prints and what `--json` shows.
fn reply<R: Serialize + Display>(r: R) -> Response {
    match serde_json::to_value(&r) {
        Ok(json) => Response::ok(r.to_string(), json),
        Err(e) => Response::err(
            format!("internal error: reply not serializable: {e}"),
            "internal",
        ),
    }
}

/// A reply with nothing to print, and `json` for scripts.
fn done(json: serde_json::Value) -> Response {
    Response::ok(String::new(), json)
}

/// Handles one request. `cancel` is set when the client goes away or the
/// daemon stops; only requests that wait look at it.
pub fn handle(api: &Api, req: Request, cancel: &Cancel) -> Response {
    match dispatch(api, req, cancel, Instant::now()) {
        Ok(r) => r,
        Err(e) => Response::err(e.to_string(), e.kind()),
    }
}

fn dispatch(api: &Api, req: Request, cancel: &Cancel, now: Instant) -> Result<Response, Error> {
    use Request as R;
    match req {
        r @ (R::Version
        | R::Show { .. }
        | R::AddBr { .. }
        | R::DelBr { .. }
        | R::SetBridge { .. }
        | R::SetController { .. }
        | R::SetFailMode { .. }) => bridges(api, r, now),
        r @ (R::AddPort { .. }
        | R::DelPort { .. }
        | R::SetPort { .. }
        | R::DumpPorts { .. }
        | R::Inject { .. }
        | R::DummySent { .. }
        | R::Capture { .. }) => ports(api, r, cancel),
        r @ (R::AddFlow { .. }
        | R::AddFlows { .. }
        | R::ModFlows { .. }
        | R::DelFlows { .. }
        | R::DumpFlows { .. }
        | R::DumpDrops { .. }
        | R::DumpDpFlows { .. }
        | R::Trace { .. }) => flows(api, r, now),
        r @ (R::DumpConntrack { .. }
        | R::FlushConntrack { .. }
        | R::CtStats { .. }
        | R::SetCt { .. }
        | R::CtSetLimits { .. }
        | R::CtSetTimeout { .. }
        | R::IpfStatus { .. }
        | R::IpfSet { .. }) => conntrack(api, r, now),
        r @ (R::FdbShow { .. }
        | R::FdbFlush { .. }
        | R::AddTlvMap { .. }
        | R::DelTlvMap { .. }
        | R::DumpTlvMap { .. }) => tables(api, r, now),
        // The control server runs it on the connection itself.
        R::Handover => Err(Error::Internal(
            "handover is only served on the control socket".into(),
        )),
    }
}

/// A request routed to the wrong group: a defect of [`dispatch`],
/// answered as an error rather than a panic.
fn misrouted(r: &Request) -> Error {
    Error::Internal(format!("request {r:?} reached the wrong handler"))
}

/// Bridges: version, show, add/del/set bridge.
fn bridges(api: &Api, req: Request, now: Instant) -> Result<Response, Error> {
    use serde_json::json;
    Ok(match req {
        Request::Version => reply(api.version(now)),
        Request::Show { bridge } => reply(api.show(bridge.as_deref())?),
        Request::AddBr { bridge } => {
            api.add_br(&bridge, now)?;
            done(json!({ "bridge": bridge }))
        }
        Request::DelBr { bridge } => {
            api.del_br(&bridge)?;
            done(json!({ "bridge": bridge }))
        }
        Request::SetBridge { bridge, options } => {
            let s = options::bridge_settings(&options)?;
            done(json!(api.set_bridge(&bridge, &s)?))
        }
        Request::SetController { bridge, targets } => {
            let t = targets
                .iter()
                .map(|t| t.parse::<Target>())
                .collect::<Result<Vec<_>, _>>()?;
            api.set_controller(&bridge, &t)?;
            done(json!({ "bridge": bridge, "controllers": targets }))
        }
        Request::SetFailMode { bridge, mode } => {
            let m = FailMode::parse(&mode).ok_or_else(|| {
                Error::Option(options::OptionError::Value {
                    key: "fail_mode".into(),
                    value: mode.clone(),
                    expected: "expected standalone or secure".into(),
                })
            })?;
            api.set_fail_mode(&bridge, m)?;
            done(json!({ "bridge": bridge, "fail_mode": m }))
        }
        other => return Err(misrouted(&other)),
    })
}

/// Ports: attach, detach, policy, counters, dummy ports, capture.
fn ports(api: &Api, req: Request, cancel: &Cancel) -> Result<Response, Error> {
    use serde_json::json;
    Ok(match req {
        Request::AddPort {
            bridge,
            port,
            options,
        } => reply(api.add_port(&bridge, &options::port_spec(&port, &options)?)?),
        Request::DelPort { bridge, port } => {
            api.del_port(&bridge, &port)?;
            done(json!({ "port": port }))
        }
        Request::SetPort {
            bridge,
            port,
            options,
        } => {
            let s = options::port_settings(&options)?;
            done(json!(api.set_port(&bridge, &port, &s)?))
        }
        Request::DumpPorts { bridge, port } => reply(api.dump_ports(&bridge, port.as_deref())?),
        Request::Inject { bridge, port, hex } => {
            let frame = super::api::hex_decode(&hex)?;
            api.inject(&bridge, &port, &frame)?;
            done(json!({ "port": port, "bytes": frame.len() }))
        }
        Request::DummySent { bridge, port } => reply(api.dummy_sent(&bridge, &port)?),
        Request::Capture {
            bridge,
            port,
            count,
            seconds,
            file,
        } => {
            let spec = CaptureSpec {
                port,
                count,
                seconds,
                file: file.into(),
            };
            reply(api.capture(&bridge, &spec, cancel)?)
        }
        other => return Err(misrouted(&other)),
    })
}

/// Flow tables and the datapath's view of them.
fn flows(api: &Api, req: Request, now: Instant) -> Result<Response, Error> {
    Ok(match req {
        Request::AddFlow { bridge, flow } => flow_mod(api, &bridge, &flow, FlowCmd::Add, now)?,
        Request::AddFlows {
            bridge,
            text,
            source,
        } => add_flows(api, &bridge, &text, &source, now)?,
        Request::ModFlows {
            bridge,
            flow,
            strict,
        } => {
            let cmd = if strict {
                FlowCmd::ModifyStrict
            } else {
                FlowCmd::Modify
            };
            flow_mod(api, &bridge, &flow, cmd, now)?
        }
        Request::DelFlows {
            bridge,
            matches,
            strict,
        } => {
            let cmd = if strict {
                FlowCmd::DeleteStrict
            } else {
                FlowCmd::Delete
            };
            flow_mod(api, &bridge, &matches.unwrap_or_default(), cmd, now)?
        }
        Request::DumpFlows {
            bridge,
            matches,
            names,
        } => dump_flows(api, &bridge, matches.as_deref(), names, now)?,
        Request::DumpDrops { bridge } => reply(api.dump_drops(&bridge)?),
        Request::DumpDpFlows { bridge } => reply(api.dump_dp_flows(&bridge)?),
        Request::Trace {
            bridge,
            flow,
            packet,
            ct_next,
        } => reply(api.trace(
            &bridge,
            &TraceRequest {
                flow,
                packet,
                ct_next,
            },
            now,
        )?),
        other => return Err(misrouted(&other)),
    })
}

/// The connection tracker.
fn conntrack(api: &Api, req: Request, now: Instant) -> Result<Response, Error> {
    use serde_json::json;
    Ok(match req {
        Request::DumpConntrack { bridge, zone } => reply(api.dump_conntrack(&bridge, zone, now)?),
        Request::FlushConntrack { bridge, zone } => reply(api.flush_conntrack(&bridge, zone)?),
        Request::CtStats { bridge } => reply(api.ct_stats(&bridge)?),
        Request::IpfStatus { bridge } => reply(api.ipf_status(&bridge)?),
        Request::IpfSet { bridge, options } => {
            reply(api.ipf_set(&bridge, &options::ipf_settings(&options)?)?)
        }
        Request::SetCt { bridge, options } => {
            reply(api.set_ct(&bridge, &options::ct_settings(&options)?)?)
        }
        Request::CtSetLimits { bridge, options } => {
            let limits = options
                .iter()
                .map(|t| options::ct_limit(t))
                .collect::<Result<Vec<_>, _>>()?;
            api.ct_set_limits(&bridge, &limits)?;
            done(json!({}))
        }
        Request::CtSetTimeout {
            bridge,
            zone,
            options,
        } => {
            api.ct_set_timeouts(&bridge, &options::ct_timeouts(zone, &options)?)?;
            done(json!({}))
        }
        other => return Err(misrouted(&other)),
    })
}

/// The MAC learning table and the Geneve TLV map.
fn tables(api: &Api, req: Request, now: Instant) -> Result<Response, Error> {
    use serde_json::json;
    Ok(match req {
        Request::FdbShow { bridge } => reply(api.fdb_show(&bridge, now)?),
        Request::FdbFlush { bridge } => {
            api.fdb_flush(&bridge)?;
            Response::ok("table successfully flushed\n", json!({}))
        }
        Request::AddTlvMap { bridge, mappings } => {
            let add = TlvMapping::parse_list(&mappings).map_err(Error::TlvMap)?;
            api.add_tlv_map(&bridge, &add)?;
            done(json!({ "bridge": bridge, "added": add }))
        }
        Request::DelTlvMap { bridge, mappings } => {
            let del = mappings
                .as_deref()
                .map(TlvMapping::parse_list)
                .transpose()
                .map_err(Error::TlvMap)?;
            api.del_tlv_map(&bridge, del.as_deref())?;
            done(json!({ "bridge": bridge }))
        }
        Request::DumpTlvMap { bridge } => reply(api.dump_tlv_map(&bridge)?),
        other => return Err(misrouted(&other)),
    })
}

/// `add-flow`, `mod-flows`, `del-flows`: one line, parsed with the
/// bridge's port names.
fn flow_mod(
    api: &Api,
    bridge: &str,
    text: &str,
    cmd: FlowCmd,
    now: Instant,
) -> Result<Response, Error> {
    let m = flowtext::one(text, cmd, &api.ports(bridge)?)?;
    Ok(reply(api.flow_mods(bridge, &[m], None, now)?))
}

/// `add-flows FILE`: every line, all or nothing.
fn add_flows(
    api: &Api,
    bridge: &str,
    text: &str,
    source: &str,
    now: Instant,
) -> Result<Response, Error> {
    let mods = flowtext::file(text, source, &api.ports(bridge)?)?;
    Ok(reply(api.flow_mods(bridge, &mods, Some(source), now)?))
}

fn dump_flows(
    api: &Api,
    bridge: &str,
    matches: Option<&str>,
    names: bool,
    now: Instant,
) -> Result<Response, Error> {
    let ports = api.ports(bridge)?;
    let flows = api.dump_flows(bridge, &flowtext::filter(matches, &ports)?, now)?;
    let nm: Option<&dyn PortNames> = if names { Some(&ports) } else { None };
    Ok(reply(FlowsReply::new(&flows, nm)))
}
