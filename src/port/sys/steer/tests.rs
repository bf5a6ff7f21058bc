//! The programs' shape, and what the kernel runs them to
//! (`BPF_PROG_TEST_RUN`) for each kind of frame, from every CPU.

use super::*;
use crate::port::sys::sched;

/// Where the jump at `at` lands, if it is one.
fn target(p: &[[u8; 8]], at: usize) -> Option<usize> {
    let code = p[at][0];
    if code & 0x07 != 0x05 || code == CALL || code == EXIT {
        return None;
    }
    let off = i16::from_ne_bytes([p[at][2], p[at][3]]);
    Some((at as isize + 1 + off as isize) as usize)
}

#[test]
fn every_instruction_is_reached_and_every_path_ends_in_exit() {
    for mode in [Mode::Quiet, Mode::Busy] {
        let p = program(&[3, 7], mode);
        // The kernel's verifier refuses a program with an instruction no
        // path reaches, or a path that runs off the end.
        let mut seen = vec![false; p.len()];
        let mut todo = vec![0];
        while let Some(at) = todo.pop() {
            assert!(at < p.len(), "{mode:?}: a path runs off the end");
            if std::mem::replace(&mut seen[at], true) {
                continue;
            }
            let code = p[at][0];
            if let Some(t) = target(&p, at) {
                todo.push(t);
            }
            if code != EXIT && code != JA {
                todo.push(at + 1);
            }
        }
        assert!(
            seen.iter().all(|&s| s),
            "{mode:?}: unreachable instructions"
        );
        // r6 = the context, for LD_ABS; the EtherType at 12.
        assert_eq!(p[0], [MOV64_REG, 0x16, 0, 0, 0, 0, 0, 0]);
        assert_eq!(p[2], [LD_ABS_H, 0, 0, 0, 12, 0, 0, 0]);
        assert_eq!(*p.last().unwrap(), encode(EXIT, 0, 0, 0, 0));
    }
    // Quiet ends in the CPU table: CPU 3 -> queue 0, CPU 7 -> queue 1,
    // another CPU -> its number.
    let p = program(&[3, 7], Mode::Quiet);
    let n = p.len();
    assert_eq!(p[n - 7], encode(JNE_IMM, 0, 0, 2, 3));
    assert_eq!(p[n - 6], encode(MOV64_IMM, 0, 0, 0, 0));
    assert_eq!(p[n - 4], encode(JNE_IMM, 0, 0, 2, 7));
    assert_eq!(p[n - 3], encode(MOV64_IMM, 0, 0, 0, 1));
    assert_eq!(
        p[n - 8],
        encode(CALL, 0, 0, 0, BPF_FUNC_GET_SMP_PROCESSOR_ID)
    );
    assert_eq!(
        program(&vec![0; 5000], Mode::Quiet).len(),
        n - 6 + 3 * MAX_CPUS
    );
    assert!(program(&vec![0; 5000], Mode::Quiet).len() < 4096);
}

/// `union bpf_attr` as BPF_PROG_TEST_RUN reads it.
#[repr(C)]
#[derive(Default)]
struct TestRun {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    /// Explicit, so it is zero: the kernel refuses nonzero bytes past the
    /// fields it knows.
    pad: u32,
}

/// What `prog` returns for `frame`, run by the kernel on this thread's CPU.
fn run(prog: BorrowedFd<'_>, frame: &[u8]) -> u32 {
    // A socket filter's test run takes the first 14 bytes as the Ethernet
    // header and hands the program what follows: our whole frame. (Its
    // EtherType is the local experimental one: the kernel checks what
    // follows an IP one.)
    let mut data = vec![0u8; 14];
    data[12..14].copy_from_slice(&[0x88, 0xb5]);
    data.extend_from_slice(frame);
    let mut attr = TestRun {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: data.len() as u32,
        data_in: data.as_ptr() as u64,
        repeat: 1,
        ..TestRun::default()
    };
    // SAFETY: BPF_PROG_TEST_RUN reads `attr` (the kernel's layout) and
    // `data`, alive across the call, and writes `retval` into `attr`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            10,
            &mut attr as *mut TestRun,
            std::mem::size_of::<TestRun>() as libc::c_uint,
        )
    };
    assert!(
        r == 0,
        "BPF_PROG_TEST_RUN of {frame:02x?}: {}",
        io::Error::last_os_error()
    );
    attr.retval
}

const MAC: [u8; 12] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];

/// An Ethernet frame: `vlan` tags it; `l3` follows the EtherType.
fn eth(vlan: bool, ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = MAC.to_vec();
    if vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

/// An IPv4 packet with options (IHL 6) and an L4 header with ports.
fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], frag: u16, sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0x46, 0, 0, 48, 0, 0];
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&[1, 0, 0, 0]);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0; 20]);
    p
}

fn ipv6(next: u8, src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 28, next, 64];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0; 24]);
    p
}

/// The hash the programs compute, written again plainly: the addresses'
/// 32-bit words (as the loads read them, in host order) and the ports,
/// XORed, multiplied, high half.
fn hash(words: &[u32], ports: Option<(u16, u16)>) -> u32 {
    let mut h = words.iter().fold(0, |h, w| h ^ w);
    if let Some((s, d)) = ports {
        h ^= u32::from(s ^ d);
    }
    h.wrapping_mul(MIX) >> 16
}

fn words(addrs: &[&[u8]]) -> Vec<u32> {
    addrs
        .iter()
        .flat_map(|a| a.chunks(4))
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn tcp_keeps_its_hash_in_both_programs_and_pings_and_services_follow_the_cpu_while_quiet() {
    let cpus = match sched::allowed_cpus() {
        Ok(c) if !c.is_empty() => c,
        other => panic!("allowed CPUs: {other:?}"),
    };
    let progs = match CpuSteering::load(&cpus) {
        Ok(p) => p,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            eprintln!("skipped: loading a BPF program needs CAP_BPF ({e})");
            return;
        }
        Err(e) => panic!("BPF_PROG_LOAD refused a steering program: {e}"),
    };
    assert!(CpuSteering::load(&[]).is_err());
    let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let (a6, b6) = (
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    );
    let v4 = words(&[&a, &b]);
    let v6 = words(&[&a6, &b6]);
    let mf = 0x2000;
    // (frame, what both programs return; `None`: by CPU while quiet, and
    // this while busy).
    let cases: Vec<(&str, Vec<u8>, Option<u32>, u32)> = vec![
        (
            "tcp",
            eth(false, 0x0800, &ipv4(6, a, b, 0, 40000, 80)),
            Some(hash(&v4, Some((40000, 80)))),
            0,
        ),
        (
            "tcp reply",
            eth(false, 0x0800, &ipv4(6, b, a, 0, 80, 40000)),
            Some(hash(&v4, Some((40000, 80)))),
            0,
        ),
        (
            "tcp vlan",
            eth(true, 0x0800, &ipv4(6, a, b, 0, 40000, 80)),
            Some(hash(&v4, Some((40000, 80)))),
            0,
        ),
        (
            "tcp fragment",
            eth(false, 0x0800, &ipv4(6, a, b, mf, 40000, 80)),
            Some(hash(&v4, None)),
            0,
        ),
        (
            "tcp6",
            eth(false, 0x86dd, &ipv6(6, a6, b6, 5000, 22)),
            Some(hash(&v6, Some((5000, 22)))),
            0,
        ),
        (
            "hop-by-hop6",
            eth(false, 0x86dd, &ipv6(0, a6, b6, 5000, 22)),
            Some(hash(&v6, None)),
            0,
        ),
        (
            "gre",
            eth(false, 0x0800, &ipv4(47, a, b, 0, 1, 2)),
            Some(hash(&v4, None)),
            0,
        ),
        (
            "udp",
            eth(false, 0x0800, &ipv4(17, a, b, 0, 68, 67)),
            None,
            hash(&v4, Some((68, 67))),
        ),
        (
            "udp vlan",
            eth(true, 0x0800, &ipv4(17, b, a, 0, 67, 68)),
            None,
            hash(&v4, Some((68, 67))),
        ),
        (
            "udp fragment",
            eth(false, 0x0800, &ipv4(17, a, b, 185, 68, 67)),
            Some(hash(&v4, None)),
            0,
        ),
        (
            "icmp fragment",
            eth(false, 0x0800, &ipv4(1, a, b, mf, 0x0800, 7)),
            None,
            hash(&v4, None),
        ),
        (
            "dns reply",
            eth(false, 0x0800, &ipv4(17, b, a, 0, 53, 33000)),
            None,
            hash(&v4, Some((33000, 53))),
        ),
        (
            "ntp",
            eth(false, 0x0800, &ipv4(17, a, b, 0, 123, 123)),
            None,
            hash(&v4, Some((123, 123))),
        ),
        (
            "vxlan",
            eth(false, 0x0800, &ipv4(17, a, b, 0, 51000, 4789)),
            Some(hash(&v4, Some((51000, 4789)))),
            0,
        ),
        (
            "udp elsewhere",
            eth(false, 0x0800, &ipv4(17, a, b, 0, 6768, 6767)),
            Some(hash(&v4, Some((6768, 6767)))),
            0,
        ),
        (
            "icmp",
            eth(false, 0x0800, &ipv4(1, a, b, 0, 0x0800, 7)),
            None,
            hash(&v4, None),
        ),
        (
            "udp6",
            eth(false, 0x86dd, &ipv6(17, a6, b6, 546, 547)),
            None,
            hash(&v6, Some((546, 547))),
        ),
        (
            "icmp6",
            eth(false, 0x86dd, &ipv6(58, a6, b6, 0x8000, 1)),
            None,
            hash(&v6, None),
        ),
        ("arp", eth(false, 0x0806, &[0; 28]), None, 0),
        ("short ipv4", eth(false, 0x0800, &[0x45, 0, 0]), Some(0), 0),
    ];
    for (i, &cpu) in cpus.iter().enumerate() {
        sched::pin_to_cpu(cpu).unwrap();
        for (name, frame, both, busy) in &cases {
            let quiet_got = run(progs.prog(Mode::Quiet), frame);
            let busy_got = run(progs.prog(Mode::Busy), frame);
            match both {
                Some(h) => {
                    assert_eq!(quiet_got, *h, "{name} quiet on CPU {cpu}");
                    assert_eq!(busy_got, *h, "{name} busy on CPU {cpu}");
                }
                None => {
                    assert_eq!(quiet_got as usize, i, "{name} quiet on CPU {cpu}");
                    assert_eq!(busy_got, *busy, "{name} busy on CPU {cpu}");
                }
            }
        }
    }
    // The hash spreads flows: 64 connections from one VM's ports land on
    // both of two queues, about evenly.
    let odd = (0..64u16)
        .filter(|p| {
            let f = eth(false, 0x0800, &ipv4(6, a, b, 0, 40000 + p, 80));
            run(progs.prog(Mode::Busy), &f) % 2 == 1
        })
        .count();
    assert!((16..=48).contains(&odd), "{odd} of 64 flows on queue 1");
}
