//! A real OpenFlow controller drives vswitchd: a small L2-learning app
//! written for os-ken (the controller framework of OpenStack's Neutron
//! agent, PyPI `os-ken`, installed by scripts/test.sh into
//! target/osken-venv, started by a launcher written here), connected with `vswitchctl set-controller`. Two
//! namespace VMs on TAP ports reach each other only through the flows the
//! app installs from packet-ins. Then the controller dies: with
//! `fail_mode=secure` the flows it left keep forwarding; with `standalone`
//! the bridge fails open to NORMAL.

mod common;

use common::vms::two_vms;
use common::{repo_path, require_root, wait_until, Lab};
use std::path::PathBuf;
use std::time::Duration;

const APP: &str = r#"
from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_3
from os_ken.lib.packet import packet, ethernet


class L2(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.macs = {}

    def add_flow(self, dp, priority, match, actions):
        p, o = dp.ofproto_parser, dp.ofproto
        inst = [p.OFPInstructionActions(o.OFPIT_APPLY_ACTIONS, actions)]
        dp.send_msg(p.OFPFlowMod(datapath=dp, priority=priority, match=match,
                                 instructions=inst))

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def features(self, ev):
        dp = ev.msg.datapath
        p, o = dp.ofproto_parser, dp.ofproto
        self.add_flow(dp, 0, p.OFPMatch(),
                      [p.OFPActionOutput(o.OFPP_CONTROLLER, o.OFPCML_NO_BUFFER)])

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        p, o = dp.ofproto_parser, dp.ofproto
        in_port = msg.match['in_port']
        eth = packet.Packet(msg.data).get_protocol(ethernet.ethernet)
        self.macs[eth.src] = in_port
        out = self.macs.get(eth.dst, o.OFPP_FLOOD)
        actions = [p.OFPActionOutput(out)]
        if out != o.OFPP_FLOOD:
            self.add_flow(dp, 1, p.OFPMatch(in_port=in_port, eth_dst=eth.dst,
                                            eth_src=eth.src), actions)
        dp.send_msg(p.OFPPacketOut(datapath=dp, buffer_id=o.OFP_NO_BUFFER,
                                   in_port=in_port, actions=actions,
                                   data=msg.data))
"#;

/// Runs apps the way `osken-manager` did (os-ken 4 ships no manager
/// command): `python run.py HOST PORT APP.py PIDFILE`.
const RUN: &str = r#"
import os, sys
from os_ken import cfg
from os_ken.base import app_manager
import os_ken.controller.ofp_handler  # registers the OpenFlow listener options
host, port, app, pidfile = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
with open(pidfile, 'w') as f:
    f.write(str(os.getpid()))
cfg.CONF(args=['--ofp-listen-host', host, '--ofp-tcp-listen-port', port], project='os_ken')
app_manager.AppManager.run_apps([app, 'os_ken.controller.ofp_handler'])
"#;

/// The python of the venv scripts/test.sh makes, with os-ken in it;
/// `None` (with a message, or a failure when required) when it is missing.
fn osken(test: &str) -> Option<PathBuf> {
    let p = repo_path("target/osken-venv/bin/python");
    let ok = std::process::Command::new(&p)
        .args(["-c", "import os_ken.base.app_manager"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(p);
    }
    if std::env::var("VSWITCH_REQUIRE_OVS").as_deref() == Ok("1") {
        panic!("{test}: needs os-ken in target/osken-venv (scripts/test.sh installs it) and VSWITCH_REQUIRE_OVS=1");
    }
    eprintln!("skipping {test}: os-ken not installed (run scripts/test.sh once)");
    None
}

#[test]
fn an_os_ken_learning_switch_drives_vswitchd_and_fail_modes_hold() {
    const T: &str = "an_os_ken_learning_switch_drives_vswitchd_and_fail_modes_hold";
    if !require_root(T) {
        return;
    }
    let Some(python) = osken(T) else { return };
    let mut lab = Lab::new();
    let (v, d) = two_vms(&mut lab, 71);
    let app = d.dir.path().join("l2_app.py");
    std::fs::write(&app, APP).unwrap();
    let run = d.dir.path().join("run_osken.py");
    std::fs::write(&run, RUN).unwrap();
    let pidfile = d.dir.path().join("osken.pid");
    // Kills the controller (it wrote its pid) and reaps it.
    let kill_app = |lab: &mut Lab, idx: usize| {
        let pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        let _ = lab.wait(idx);
    };
    // The controller runs in the host namespace, where vswitchd's
    // loopback is.
    lab.sh_ok(&v.host, 5, "ip link set lo up");
    let port = 16653 + (std::process::id() % 1000) as u16;
    let start_app = |lab: &mut Lab| {
        lab.spawn(
            &v.host,
            120,
            &format!(
                "exec {} {} 127.0.0.1 {port} {} {}",
                python.display(),
                run.display(),
                app.display(),
                pidfile.display()
            ),
        )
    };
    let mut ctl = start_app(&mut lab);
    // Only the controller's flows forward: no NORMAL flow, secure mode.
    d.ctl(&["set-fail-mode", "br0", "secure"]);
    d.ctl(&["del-flows", "br0"]);
    d.ctl(&["set-controller", "br0", &format!("tcp:127.0.0.1:{port}")]);
    let connected = wait_until(Duration::from_secs(30), || {
        d.ctl(&["show", "br0"]).contains("(connected)")
    });
    assert!(connected, "no controller session:\n{}", d.log());
    assert!(
        lab.ping_until(&v.vm1, &v.ip2, Duration::from_secs(20)),
        "vm1 cannot reach vm2 through the app's flows\n{}\n{}",
        d.ctl(&["dump-flows", "br0"]),
        d.ctl(&["dump-drops", "br0"])
    );
    assert!(lab.ping(&v.vm2, &v.ip1, 3));
    let flows = d.ctl(&["dump-flows", "br0"]);
    assert!(
        flows.contains("priority=0 actions=CONTROLLER:65535"),
        "{flows}"
    );
    assert!(flows.contains("priority=1,in_port=1,dl_src="), "{flows}");
    assert!(flows.contains("priority=1,in_port=2,dl_src="), "{flows}");

    // The controller dies: secure keeps forwarding with the flows it left.
    kill_app(&mut lab, ctl);
    let gone = wait_until(Duration::from_secs(10), || {
        d.ctl(&["show", "br0"]).contains("(not connected)")
    });
    assert!(gone);
    assert!(
        lab.ping(&v.vm1, &v.ip2, 3),
        "secure: the flows keep forwarding"
    );
    assert!(!d.ctl(&["show", "br0"]).contains("fail-open"));

    // Standalone without a controller fails open to NORMAL, even with no
    // flow at all, after three times the largest inactivity probe (15 s
    // with the default 5 s, as Open vSwitch; `vswitchctl set-controller`
    // has no probe setting to shorten it); a controller coming back ends
    // it.
    d.ctl(&["del-flows", "br0"]);
    d.ctl(&["set-fail-mode", "br0", "standalone"]);
    let show = d.ctl(&["show", "br0"]);
    assert!(
        show.contains("fails open after 15 s without a controller"),
        "{show}"
    );
    let open = wait_until(Duration::from_secs(30), || {
        d.ctl(&["show", "br0"])
            .contains("fail-open now: no controller for 15 s")
    });
    assert!(open, "standalone never failed open:\n{}", d.log());
    assert!(lab.ping(&v.vm1, &v.ip2, 3), "standalone: NORMAL forwarding");
    ctl = start_app(&mut lab);
    let closed = wait_until(Duration::from_secs(30), || {
        let s = d.ctl(&["show", "br0"]);
        s.contains("(connected)") && !s.contains("fail-open")
    });
    assert!(
        closed,
        "fail-open did not end when the controller came back"
    );
    kill_app(&mut lab, ctl);
}
