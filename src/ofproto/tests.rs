//! Translation and flow-mod tests, with flows built directly (the text
//! syntax has its own tests).

// This whole file is test code (declared `#[cfg(test)] mod tests;`).
#[cfg(test)]
use super::*;

use crate::flow::{CtAction, FieldSlice};

fn of_with_ports(n: u32) -> Ofproto {
    let of = Ofproto::new("br0", Instant::now());
    for i in 1..=n {
        of.add_port(PortInfo::new(i, &format!("p{i}"), PortKind::Dummy));
    }
    of
}

fn flow(table: u8, priority: u16, m: Match, actions: Vec<Action>) -> FlowMod {
    FlowMod {
        cmd: FlowModCmd::Add,
        spec: FlowSpec {
            table,
            priority,
            matches: m,
            actions,
            ..FlowSpec::default()
        },
        table: Some(table),
    }
}

/// `priority=0,actions=NORMAL` in table 0.
fn normal_flow() -> FlowMod {
    flow(
        0,
        0,
        Match::default(),
        vec![Action::Output(ofp_port::NORMAL)],
    )
}

fn m_in_port(p: u32) -> Match {
    let mut m = Match::default();
    m.set_exact(Field::InPort, u128::from(p));
    m
}

fn m_ip() -> Match {
    let mut m = Match::default();
    m.set_exact(Field::DlType, 0x0800);
    m
}

fn key(in_port: u32, src: u64, dst: u64) -> FlowKey {
    let mut k = FlowKey::default();
    k.set_in_port(in_port);
    k.set_dl_src_u64(src);
    k.set_dl_dst_u64(dst);
    k.set_dl_type(0x0800);
    k.set_nw_proto(6);
    k.set_nw_ttl(64);
    k
}

fn outputs(t: &Translation) -> Vec<u32> {
    t.actions
        .iter()
        .filter_map(|a| match a {
            DpAction::Output(p) => Some(*p),
            _ => None,
        })
        .collect()
}

#[test]
fn table_miss_is_no_match() {
    let of = of_with_ports(2);
    let t = of.translate(&key(1, 2, 3), Instant::now());
    assert!(t.actions.is_empty());
    assert_eq!(t.drop, Some(XlateError::NoMatch));
}

#[test]
fn explicit_drop_is_pipeline_drop() {
    let of = of_with_ports(2);
    of.flow_mods(&[flow(0, 1, Match::default(), vec![])], Instant::now())
        .unwrap();
    let t = of.translate(&key(1, 2, 3), Instant::now());
    assert_eq!(t.drop, Some(XlateError::PipelineDrop));
    assert_eq!(t.rules.len(), 1);
}

#[test]
fn normal_floods_then_learns() {
    let of = of_with_ports(3);
    let now = Instant::now();
    of.flow_mods(&[normal_flow()], now).unwrap();
    let a = 0x0200_0000_000a;
    let b = 0x0200_0000_000b;
    // A -> B: B unknown, flood to 2 and 3; A learned on 1.
    let t = of.translate(&key(1, a, b), now);
    assert_eq!(outputs(&t), vec![2, 3]);
    assert!(t.uses_normal);
    assert_eq!(t.mask.dl_src_u64(), 0xffff_ffff_ffff);
    // B -> A: A known on 1; B learned on 2.
    let t = of.translate(&key(2, b, a), now);
    assert_eq!(outputs(&t), vec![1]);
    // A -> B now unicast.
    let t = of.translate(&key(1, a, b), now);
    assert_eq!(outputs(&t), vec![2]);
    // B "appears" on 1 where A is: destination on input port.
    let t = of.translate(&key(1, b, a), now);
    assert_eq!(t.drop, Some(XlateError::NormalLearnedOnInPort));
}

#[test]
fn resubmit_and_goto_and_megaflow_mask() {
    let of = of_with_ports(3);
    let now = Instant::now();
    let mut m1 = m_ip();
    m1.set(Field::NwDst, 0x0a00_0000, 0xff00_0000);
    of.flow_mods(
        &[
            flow(
                0,
                10,
                m_in_port(1),
                vec![Action::Resubmit {
                    in_port: None,
                    table: Some(1),
                }],
            ),
            flow(1, 10, m1, vec![Action::GotoTable(2)]),
            flow(2, 1, Match::default(), vec![Action::Output(3)]),
        ],
        now,
    )
    .unwrap();
    let mut k = key(1, 1, 2);
    k.set_nw_dst(0x0a01_0203);
    k.set_tp_dst(80);
    let t = of.translate(&k, now);
    assert_eq!(outputs(&t), vec![3]);
    assert_eq!(t.rules.len(), 3);
    assert_eq!(t.mask.nw_dst(), 0xff00_0000, "only the prefix is pinned");
    assert_eq!(t.mask.tp_dst(), 0, "tp_dst never looked at");
    assert_eq!(t.mask.in_port(), u32::MAX);
}

/// A table that loops back to itself is cut at the depth limit, and the
/// packet goes nowhere: not once per level to the port named before the
/// loop, as executing what was gathered up to the limit would send it.
#[test]
fn resubmit_loop_is_bounded_and_sends_nothing() {
    let of = of_with_ports(2);
    of.flow_mods(
        &[flow(
            0,
            1,
            Match::default(),
            vec![
                Action::Output(2),
                Action::Resubmit {
                    in_port: None,
                    table: Some(0),
                },
            ],
        )],
        Instant::now(),
    )
    .unwrap();
    let t = of.translate(&key(1, 1, 2), Instant::now());
    assert_eq!(t.drop, None, "a Drop action stops it");
    assert_eq!(t.actions, vec![DpAction::Drop(XlateError::ResubmitDepth)]);
}

#[test]
fn output_to_in_port_is_skipped_unless_in_port() {
    let of = of_with_ports(2);
    let now = Instant::now();
    of.flow_mods(
        &[flow(0, 1, Match::default(), vec![Action::Output(1)])],
        now,
    )
    .unwrap();
    let t = of.translate(&key(1, 1, 2), now);
    assert_eq!(t.drop, Some(XlateError::OutputToInPort));
    of.flow_mods(
        &[flow(
            0,
            1,
            Match::default(),
            vec![Action::Output(ofp_port::IN_PORT)],
        )],
        now,
    )
    .unwrap();
    let t = of.translate(&key(1, 1, 2), now);
    assert_eq!(outputs(&t), vec![1]);
}

#[test]
fn set_fields_commit_before_output_and_registers_stay_in_translation() {
    let of = of_with_ports(2);
    let now = Instant::now();
    of.flow_mods(
        &[
            flow(
                0,
                1,
                m_ip(),
                vec![
                    Action::ModDlSrc([2, 0, 0, 0, 0, 9]),
                    Action::SetField {
                        field: Field::Reg(0),
                        value: 7,
                        mask: 0xffff_ffff,
                    },
                    Action::Resubmit {
                        in_port: None,
                        table: Some(1),
                    },
                ],
            ),
            {
                let mut m = m_ip();
                m.set_exact(Field::Reg(0), 7);
                m.set_exact(Field::DlSrc, 0x0200_0000_0009);
                flow(1, 1, m, vec![Action::DecTtl, Action::Output(2)])
            },
        ],
        now,
    )
    .unwrap();
    let t = of.translate(&key(1, 1, 2), now);
    assert_eq!(
        t.actions,
        vec![
            DpAction::SetField {
                field: Field::DlSrc,
                value: 0x0200_0000_0009,
                mask: Field::DlSrc.full_mask()
            },
            DpAction::SetField {
                field: Field::NwTtl,
                value: 63,
                mask: 0xff
            },
            DpAction::Output(2),
        ]
    );
    assert_eq!(t.mask.nw_ttl(), 0xff, "dec_ttl read the TTL");
    let mut k = key(1, 1, 2);
    k.set_nw_ttl(1);
    let t = of.translate(&k, now);
    assert!(matches!(
        t.actions.last(),
        Some(DpAction::Drop(XlateError::TtlExceeded))
    ));
}

#[test]
fn vlan_push_pop_and_double_push() {
    let of = of_with_ports(2);
    let now = Instant::now();
    of.flow_mods(
        &[flow(
            0,
            1,
            m_in_port(1),
            vec![
                Action::PushVlan(0x8100),
                Action::ModVlanVid(10),
                Action::Output(2),
            ],
        )],
        now,
    )
    .unwrap();
    let t = of.translate(&key(1, 1, 2), now);
    assert_eq!(
        t.actions,
        vec![
            DpAction::PushVlan {
                tpid: 0x8100,
                tci: 10
            },
            DpAction::Output(2)
        ]
    );
    // Already tagged: an 802.1Q push is refused.
    let mut k = key(1, 1, 2);
    k.set_vlan_tci(0x1000 | 5);
    let t = of.translate(&k, now);
    assert!(matches!(
        t.actions.last(),
        Some(DpAction::Drop(XlateError::DoubleVlanPush))
    ));
    // QinQ on purpose works.
    of.flow_mods(
        &[flow(
            0,
            1,
            m_in_port(1),
            vec![
                Action::PushVlan(0x88a8),
                Action::ModVlanVid(20),
                Action::Output(2),
            ],
        )],
        now,
    )
    .unwrap();
    let t = of.translate(&k, now);
    assert_eq!(
        t.actions,
        vec![
            DpAction::PushVlan {
                tpid: 0x88a8,
                tci: 20
            },
            DpAction::Output(2)
        ]
    );
    // pop on untagged is a counted drop.
    of.flow_mods(
        &[flow(
            0,
            1,
            m_in_port(1),
            vec![Action::PopVlan, Action::Output(2)],
        )],
        now,
    )
    .unwrap();
    let t = of.translate(&key(1, 1, 2), now);
    assert!(matches!(
        t.actions.last(),
        Some(DpAction::Drop(XlateError::PopVlanUntagged))
    ));
    let t = of.translate(&k, now);
    assert_eq!(t.actions, vec![DpAction::PopVlan, DpAction::Output(2)]);
    // mod_vlan_vid on an untagged frame adds a tag (Open vSwitch semantics).
    of.flow_mods(
        &[flow(
            0,
            1,
            m_in_port(1),
            vec![Action::ModVlanVid(7), Action::Output(2)],
        )],
        now,
    )
    .unwrap();
    let t = of.translate(&key(1, 1, 2), now);
    assert_eq!(
        t.actions,
        vec![
            DpAction::PushVlan {
                tpid: 0x8100,
                tci: 7
            },
            DpAction::Output(2)
        ]
    );
    let t = of.translate(&k, now);
    assert_eq!(
        t.actions,
        vec![
            DpAction::SetVlanTci {
                tci: 7,
                mask: 0xefff
            },
            DpAction::Output(2)
        ]
    );
}

#[test]
fn two_dot1q_pushes_rejected_at_add() {
    let of = of_with_ports(2);
    let err = of
        .flow_mods(
            &[flow(
                0,
                1,
                Match::default(),
                vec![Action::PushVlan(0x8100), Action::PushVlan(0x8100)],
            )],
            Instant::now(),
        )
        .unwrap_err();
    assert!(
        err.error.to_string().contains("two 802.1Q"),
        "{}",
        err.error
    );
    assert_eq!(of.n_flows(), 0, "nothing changed");
}

#[test]
fn ct_table_freezes_registers_and_thaws() {
    let of = of_with_ports(2);
    let now = Instant::now();
    let ct = CtAction {
        commit: false,
        force: false,
        zone: CtZone::Field(FieldSlice {
            field: Field::Reg(0),
            ofs: 0,
            n_bits: 16,
        }),
        table: Some(1),
        exec: vec![],
    };
    let mut trk = m_ip();
    trk.set(Field::CtState, 0x20, 0x21);
    trk.set_exact(Field::Reg(0), 5);
    of.flow_mods(
        &[
            flow(
                0,
                1,
                m_ip(),
                vec![
                    Action::SetField {
                        field: Field::Reg(0),
                        value: 5,
                        mask: 0xffff_ffff,
                    },
                    Action::Ct(Box::new(ct)),
                ],
            ),
            flow(1, 1, trk, vec![Action::Output(2)]),
        ],
        now,
    )
    .unwrap();
    let t = of.translate(&key(1, 1, 2), now);
    let id = match t.actions.as_slice() {
        [DpAction::Ct {
            zone: 5,
            commit: false,
            ..
        }, DpAction::Recirc(id)] => *id,
        other => panic!("unexpected {other:?}"),
    };
    // The packet comes back tracked (est) with the recirc id.
    let mut k = key(1, 1, 2);
    k.set_recirc_id(id);
    k.set_ct_state(0x22);
    let t = of.translate(&k, now);
    assert_eq!(outputs(&t), vec![2], "registers were thawed");
    // ct without an ip match is refused, as ovs-ofctl does.
    let bad = CtAction {
        commit: true,
        force: false,
        zone: CtZone::Imm(0),
        table: None,
        exec: vec![],
    };
    assert!(of
        .flow_mods(
            &[flow(
                0,
                1,
                Match::default(),
                vec![Action::Ct(Box::new(bad))]
            )],
            now
        )
        .is_err());
}

#[test]
fn modify_delete_strict_and_cookies() {
    let of = of_with_ports(3);
    let now = Instant::now();
    let mut a = flow(0, 10, m_in_port(1), vec![Action::Output(2)]);
    a.spec.cookie = 0x11;
    let mut b = flow(0, 20, m_in_port(1), vec![Action::Output(2)]);
    b.spec.cookie = 0x22;
    let c = flow(1, 10, m_in_port(2), vec![Action::Output(3)]);
    of.flow_mods(&[a.clone(), b, c], now).unwrap();
    assert_eq!(of.n_flows(), 3);

    // Non-strict modify with a wider match changes both table-0 flows.
    let mut m = FlowMod {
        cmd: FlowModCmd::Modify { strict: false },
        spec: FlowSpec {
            matches: Match::default(),
            actions: vec![Action::Output(3)],
            ..FlowSpec::default()
        },
        table: Some(0),
    };
    assert_eq!(of.flow_mods(&[m.clone()], now).unwrap().modified, 2);
    // Strict modify needs the same match and priority.
    m.cmd = FlowModCmd::Modify { strict: true };
    m.spec.matches = m_in_port(1);
    m.spec.priority = 10;
    assert_eq!(of.flow_mods(&[m], now).unwrap().modified, 1);

    // Delete by cookie mask across all tables.
    let d = FlowMod {
        cmd: FlowModCmd::Delete { strict: false },
        spec: FlowSpec {
            cookie: 0x22,
            cookie_mask: 0xff,
            ..FlowSpec::default()
        },
        table: None,
    };
    assert_eq!(of.flow_mods(&[d], now).unwrap().deleted, 1);
    // Delete with out_port.
    let d = FlowMod {
        cmd: FlowModCmd::Delete { strict: false },
        spec: FlowSpec {
            out_port: Some(3),
            ..FlowSpec::default()
        },
        table: None,
    };
    assert_eq!(of.flow_mods(&[d], now).unwrap().deleted, 2);
    assert_eq!(of.n_flows(), 0);
}

#[test]
fn atomic_batches() {
    let of = of_with_ports(2);
    let good = flow(0, 1, Match::default(), vec![Action::Output(2)]);
    let bad = flow(0, 1, Match::default(), vec![Action::GotoTable(0)]);
    let err = of
        .flow_mods(&[good.clone(), bad], Instant::now())
        .unwrap_err();
    assert_eq!(err.index, 1);
    assert_eq!(of.n_flows(), 0);
}

#[test]
fn generation_moves_on_flow_mod() {
    let of = of_with_ports(1);
    let g = of.generation();
    of.flow_mods(&[flow(0, 1, Match::default(), vec![])], Instant::now())
        .unwrap();
    assert!(of.generation() > g);
}

#[test]
fn timeouts_expire_flows() {
    let of = of_with_ports(2);
    let t0 = Instant::now();
    let mut f = flow(0, 1, Match::default(), vec![Action::Output(2)]);
    f.spec.hard_timeout = 10;
    let mut g = flow(0, 2, m_in_port(1), vec![Action::Output(2)]);
    g.spec.idle_timeout = 5;
    of.flow_mods(&[f, g], t0).unwrap();
    assert_eq!(of.expire(t0 + Duration::from_secs(4)), 0);
    // Traffic on the idle flow keeps it.
    let t = of.translate(&key(1, 1, 2), t0);
    for r in &t.rules {
        r.credit(1, 60, t0 + Duration::from_secs(4));
    }
    assert_eq!(of.expire(t0 + Duration::from_secs(8)), 0);
    assert_eq!(
        of.expire(t0 + Duration::from_secs(9)),
        1,
        "idle 5 s after last use"
    );
    assert_eq!(of.expire(t0 + Duration::from_secs(10)), 1, "hard timeout");
    assert_eq!(of.n_flows(), 0);
}

#[test]
fn a_flow_given_a_timeout_by_replacement_expires() {
    let of = of_with_ports(2);
    let t0 = Instant::now();
    of.flow_mods(&[flow(0, 1, m_in_port(1), vec![Action::Output(2)])], t0)
        .unwrap();
    assert_eq!(of.expire(t0 + Duration::from_secs(100)), 0);
    let mut f = flow(0, 1, m_in_port(1), vec![Action::Output(2)]);
    f.spec.hard_timeout = 10;
    of.flow_mods(&[f], t0).unwrap();
    assert_eq!(of.expire(t0 + Duration::from_secs(11)), 1);
    assert_eq!(of.n_flows(), 0);
}

#[test]
fn bpdu_dropped_on_edge_ports_and_guard_disables() {
    let of = of_with_ports(2);
    let now = Instant::now();
    of.flow_mods(&[normal_flow()], now).unwrap();
    let stp = key(1, 0x0200_0000_0001, 0x0180_c200_0000);
    let t = of.translate(&stp, now);
    assert_eq!(t.drop, Some(XlateError::Bpdu));
    assert!(of.apply_bpdu_guard().is_empty());
    of.update_port(1, |p| p.bpdu_guard = true);
    let t = of.translate(&stp, now);
    assert_eq!(t.drop, Some(XlateError::Bpdu));
    assert_eq!(of.apply_bpdu_guard(), vec!["p1".to_string()]);
    let t = of.translate(&key(1, 0x0200_0000_0001, 0x0200_0000_0002), now);
    assert_eq!(t.drop, Some(XlateError::PortDisabled));
    // forward_bpdu turns the filter off.
    of.update_port(1, |p| p.enabled = true);
    of.set_config(BridgeConfig {
        forward_bpdu: true,
        ..BridgeConfig::default()
    });
    let t = of.translate(&stp, now);
    assert_eq!(outputs(&t), vec![2]);
}

#[test]
fn normal_vlan_access_and_trunk() {
    let of = Ofproto::new("br0", Instant::now());
    let now = Instant::now();
    let mut a1 = PortInfo::new(1, "a1", PortKind::Tap);
    a1.tag = Some(100);
    let mut a2 = PortInfo::new(2, "a2", PortKind::Tap);
    a2.tag = Some(100);
    let mut a3 = PortInfo::new(3, "a3", PortKind::Tap);
    a3.tag = Some(200);
    let trunk = PortInfo::new(4, "up", PortKind::System);
    for p in [a1, a2, a3, trunk] {
        of.add_port(p);
    }
    of.flow_mods(&[normal_flow()], now).unwrap();
    // Untagged from access port a1 floods to a2 (untagged) and the trunk
    // (tagged 100), not to a3 (VLAN 200).
    let t = of.translate(&key(1, 0x0200_0000_0001, 0xffff_ffff_ffff), now);
    assert_eq!(
        t.actions,
        vec![
            DpAction::Output(2),
            DpAction::PushVlan {
                tpid: 0x8100,
                tci: 100
            },
            DpAction::Output(4)
        ]
    );
    // A tagged frame on an access port is dropped.
    let mut k = key(1, 0x0200_0000_0001, 0xffff_ffff_ffff);
    k.set_vlan_tci(0x1000 | 100);
    assert_eq!(
        of.translate(&k, now).drop,
        Some(XlateError::VlanTaggedOnAccessPort)
    );
    // Tagged 100 from the trunk reaches a1 untagged (a1 was learned).
    let mut k = key(4, 0x0200_0000_0009, 0x0200_0000_0001);
    k.set_vlan_tci(0x1000 | 100);
    let t = of.translate(&k, now);
    assert_eq!(t.actions, vec![DpAction::PopVlan, DpAction::Output(1)]);
}
