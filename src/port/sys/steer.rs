//! A TAP's queue chosen by the program the device runs for each frame its
//! kernel side sends: socket-filter eBPF programs for
//! `TUNSETSTEERINGEBPF`.
//!
//! A multi-queue TAP puts each frame its kernel side sends (a VM's
//! transmit) on one of its queues. Without a program the kernel chooses
//! the queue its flow was last written on, else one by flow hash; with one
//! it takes the program's return value modulo the number of queues.
//!
//! There are two programs, and a device that has one always has one of
//! them (`port::steering` swaps them, in one ioctl that the kernel makes
//! atomic):
//!
//! * [`Mode::Busy`]: every IP frame goes by a hash of its addresses, and of
//!   its ports when it is an unfragmented TCP or UDP frame. The hash is
//!   symmetric (a reply has the request's hash), so both directions of a
//!   connection meet on the same worker, as the kernel's flow table makes
//!   them. A frame that is not IP goes to queue 0.
//! * [`Mode::Quiet`]: an ICMP or ICMPv6 frame (a ping), a UDP datagram to
//!   or from a DNS, DHCP, NTP or DHCPv6 port, or a frame that is not IP
//!   (ARP) goes to the queue of the worker pinned to the CPU the sender
//!   runs on, so the worker woken for it wakes on that CPU. Everything
//!   else (TCP, other UDP, which may be a tunnel carrying TCP, and any IP
//!   frame whose protocol we cannot see past an IPv6 extension header)
//!   goes by the same hash as in `Busy`. On a VM host waking a thread on
//!   an idle vCPU costs tens of microseconds (the host must run the
//!   halted vCPU again); a wakeup on the running CPU does not.
//!
//! So a TCP connection, or any flow but those few, keeps its queue
//! whichever program runs, and swapping them never reorders it: the
//! kernel's own choice (no program) would put a flow on its last-written
//! queue, which no program can know. The frames that do move are pings,
//! ARP and small service requests, whose order nothing promises. A VLAN
//! tag (one, 802.1Q) is looked through.
//!
//! The programs read the frame with `LD_ABS`/`LD_IND` and need no map. We
//! assemble them here: they are a few dozen instructions, and a loader
//! crate (aya, libbpf-rs) would bring a toolchain or a C library for one
//! `BPF_PROG_LOAD`.

use super::cvt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `BPF_PROG_LOAD`.
const BPF_PROG_LOAD: libc::c_int = 5;
/// `BPF_PROG_TYPE_SOCKET_FILTER`: the type TUNSETSTEERINGEBPF takes.
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
/// `BPF_FUNC_get_smp_processor_id`.
const BPF_FUNC_GET_SMP_PROCESSOR_ID: i32 = 8;
/// `TUNSETSTEERINGEBPF`: `_IOR('T', 224, int)`.
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;

/// Most CPUs the quiet program names one by one (the kernel's limit is
/// 4,096 instructions); CPUs past it fall back to their number modulo
/// queues.
pub const MAX_CPUS: usize = 1024;

/// Which of the two programs (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Datagrams and non-IP frames by the sender's CPU, the rest by hash.
    Quiet,
    /// Everything by hash.
    Busy,
}

// Opcodes (`linux/bpf_common.h`, `linux/bpf.h`).
/// `BPF_LD | BPF_ABS | BPF_H`: r0 = the frame's 16 bits at `imm`, in host
/// order. Like every `LD_ABS`/`LD_IND`, it ends the program returning 0
/// when the frame is shorter, and clobbers r1-r5.
const LD_ABS_H: u8 = 0x28;
/// `BPF_LD | BPF_IND | BPF_W`: r0 = the frame's 32 bits at `src + imm`.
const LD_IND_W: u8 = 0x40;
/// `BPF_LD | BPF_IND | BPF_H`.
const LD_IND_H: u8 = 0x48;
/// `BPF_LD | BPF_IND | BPF_B`.
const LD_IND_B: u8 = 0x50;
/// `BPF_ALU64 | BPF_MOV | BPF_K`.
const MOV64_IMM: u8 = 0xb7;
/// `BPF_ALU64 | BPF_MOV | BPF_X`.
const MOV64_REG: u8 = 0xbf;
/// `BPF_ALU64 | BPF_ADD | BPF_K`.
const ADD64_IMM: u8 = 0x07;
/// `BPF_ALU64 | BPF_ADD | BPF_X`.
const ADD64_REG: u8 = 0x0f;
/// `BPF_ALU | BPF_MOV | BPF_X`.
const MOV32_REG: u8 = 0xbc;
/// `BPF_ALU | BPF_AND | BPF_K`.
const AND32_IMM: u8 = 0x54;
/// `BPF_ALU | BPF_LSH | BPF_K`.
const LSH32_IMM: u8 = 0x64;
/// `BPF_ALU | BPF_RSH | BPF_K`.
const RSH32_IMM: u8 = 0x74;
/// `BPF_ALU | BPF_XOR | BPF_X`.
const XOR32_REG: u8 = 0xac;
/// `BPF_ALU | BPF_MUL | BPF_K`.
const MUL32_IMM: u8 = 0x24;
/// `BPF_JMP | BPF_JA`.
const JA: u8 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
const JEQ_IMM: u8 = 0x15;
/// `BPF_JMP | BPF_JNE | BPF_K`.
const JNE_IMM: u8 = 0x55;
/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// `BPF_JMP | BPF_EXIT`.
const EXIT: u8 = 0x95;

// Registers. r6 holds the context (LD_ABS/LD_IND read the frame through
// it); r6-r9 survive loads and calls.
const R0: u8 = 0;
const R1: u8 = 1;
const R6: u8 = 6;
/// The offset of the header being read: L3, then L4.
const R7: u8 = 7;
/// The hash, as it is folded.
const R8: u8 = 8;
/// The IP protocol (next header).
const R9: u8 = 9;

const IPPROTO_ICMP: i32 = 1;
const IPPROTO_TCP: i32 = 6;
const IPPROTO_UDP: i32 = 17;
const IPPROTO_ICMPV6: i32 = 58;
/// UDP ports whose datagrams the quiet program steers by CPU: the
/// request/response services a VM waits on (DNS, DHCP, NTP, DHCPv6). Any
/// other UDP flow goes by its hash, as TCP does: it may be a tunnel
/// carrying TCP (VXLAN, Geneve, WireGuard, a guest's own overlay), whose
/// frames a multi-queue guest sends from several CPUs and which must not
/// be reordered either.
const SERVICE_PORTS: [i32; 6] = [53, 67, 68, 123, 546, 547];
/// Fibonacci hashing's multiplier (2^32 / phi): the product's high bits
/// mix every bit of the folded addresses and ports.
const MIX: u32 = 0x9e37_79b1;

/// Where a jump goes, bound to an instruction as the program is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    EtherType,
    Ipv4,
    Ipv6,
    L4,
    Fragment,
    Service,
    Ports,
    Hash,
    NonIpBusy,
    ByCpu,
}

/// The instructions written so far, and the jumps still to resolve.
#[derive(Default)]
struct Asm {
    insns: Vec<[u8; 8]>,
    bound: Vec<(Label, usize)>,
    jumps: Vec<(usize, Label)>,
}

/// One `struct bpf_insn`: opcode, registers (dst in the low nibble, src in
/// the high), offset, immediate.
fn encode(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = dst | (src << 4);
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    b
}

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, imm: i32) {
        self.insns.push(encode(code, dst, src, 0, imm));
    }

    /// r0 = the frame at r7 + `off` (`code`: one of the `LD_IND`s).
    fn load(&mut self, code: u8, off: i32) {
        self.op(code, 0, R7, off);
    }

    /// `if dst <code> imm goto to` (`JA`: always).
    fn jump(&mut self, code: u8, dst: u8, imm: i32, to: Label) {
        self.jumps.push((self.insns.len(), to));
        self.op(code, dst, 0, imm);
    }

    fn bind(&mut self, l: Label) {
        debug_assert!(self.bound.iter().all(|&(b, _)| b != l));
        self.bound.push((l, self.insns.len()));
    }

    /// The program, every jump resolved. A jump to a label never bound is
    /// a bug in [`program`], which its tests catch.
    fn finish(mut self) -> Vec<[u8; 8]> {
        for &(at, to) in &self.jumps {
            let target = self
                .bound
                .iter()
                .find(|&&(l, _)| l == to)
                .map(|&(_, i)| i)
                .expect("every label the program jumps to is bound");
            let off = i16::try_from(target as isize - at as isize - 1)
                .expect("the program is shorter than 32k instructions");
            self.insns[at][2..4].copy_from_slice(&off.to_ne_bytes());
        }
        self.insns
    }
}

/// The program for `mode`, with worker `i` (which reads queue `i` of every
/// TAP) on `cpus[i]`.
fn program(cpus: &[usize], mode: Mode) -> Vec<[u8; 8]> {
    let quiet = mode == Mode::Quiet;
    // What a datagram, or a frame that is not IP, is steered by.
    let datagram = if quiet { Label::ByCpu } else { Label::Hash };
    let non_ip = if quiet {
        Label::ByCpu
    } else {
        Label::NonIpBusy
    };
    let mut a = Asm::default();
    a.op(MOV64_REG, R6, 1, 0);
    a.op(MOV64_IMM, R7, 0, 14);
    a.op(LD_ABS_H, 0, 0, 12);
    a.jump(JNE_IMM, R0, 0x8100, Label::EtherType);
    // One 802.1Q tag: the EtherType behind it, L3 four bytes on.
    a.op(MOV64_IMM, R7, 0, 18);
    a.op(LD_ABS_H, 0, 0, 16);
    a.bind(Label::EtherType);
    a.jump(JEQ_IMM, R0, 0x0800, Label::Ipv4);
    a.jump(JEQ_IMM, R0, 0x86dd, Label::Ipv6);
    a.jump(JA, 0, 0, non_ip);

    a.bind(Label::Ipv4);
    // r8 = source ^ destination; r9 = protocol.
    a.load(LD_IND_W, 12);
    a.op(MOV32_REG, R8, R0, 0);
    a.load(LD_IND_W, 16);
    a.op(XOR32_REG, R8, R0, 0);
    a.load(LD_IND_B, 9);
    a.op(MOV64_REG, R9, R0, 0);
    // A fragment (more fragments, or an offset) has no ports, or not in
    // every fragment: all of them go by the addresses alone.
    a.load(LD_IND_H, 6);
    a.op(AND32_IMM, R0, 0, 0x3fff);
    a.jump(
        JNE_IMM,
        R0,
        0,
        if quiet { Label::Fragment } else { Label::Hash },
    );
    // r7 += IHL * 4: the L4 header.
    a.load(LD_IND_B, 0);
    a.op(AND32_IMM, R0, 0, 0xf);
    a.op(LSH32_IMM, R0, 0, 2);
    a.op(ADD64_REG, R7, R0, 0);
    a.jump(JA, 0, 0, Label::L4);

    a.bind(Label::Ipv6);
    a.op(MOV64_IMM, R8, 0, 0);
    for word in 0..8 {
        a.load(LD_IND_W, 8 + 4 * word);
        a.op(XOR32_REG, R8, R0, 0);
    }
    a.load(LD_IND_B, 6);
    a.op(MOV64_REG, R9, R0, 0);
    a.op(ADD64_IMM, R7, 0, 40);

    a.bind(Label::L4);
    a.jump(JEQ_IMM, R9, IPPROTO_TCP, Label::Ports);
    a.jump(
        JEQ_IMM,
        R9,
        IPPROTO_UDP,
        if quiet { Label::Service } else { Label::Ports },
    );
    a.jump(JEQ_IMM, R9, IPPROTO_ICMP, datagram);
    a.jump(JEQ_IMM, R9, IPPROTO_ICMPV6, datagram);
    // Another protocol, or an IPv6 extension header (a TCP segment may be
    // behind it): the addresses alone.
    a.jump(JA, 0, 0, Label::Hash);

    if quiet {
        // A fragment: a ping's by CPU; a datagram's ports are not in every
        // fragment, so by its addresses.
        a.bind(Label::Fragment);
        a.jump(JEQ_IMM, R9, IPPROTO_ICMP, Label::ByCpu);
        a.jump(JA, 0, 0, Label::Hash);

        // UDP to or from a service port by CPU, any other by its hash
        // (falling through to the ports).
        a.bind(Label::Service);
        a.load(LD_IND_W, 0);
        a.op(MOV32_REG, R1, R0, 0);
        a.op(AND32_IMM, R1, 0, 0xffff);
        for port in SERVICE_PORTS {
            a.jump(JEQ_IMM, R1, port, Label::ByCpu);
        }
        a.op(RSH32_IMM, R0, 0, 16);
        for port in SERVICE_PORTS {
            a.jump(JEQ_IMM, R0, port, Label::ByCpu);
        }
    }

    a.bind(Label::Ports);
    // r8 ^= source port ^ destination port.
    a.load(LD_IND_W, 0);
    a.op(MOV32_REG, R1, R0, 0);
    a.op(RSH32_IMM, R1, 0, 16);
    a.op(XOR32_REG, R0, R1, 0);
    a.op(AND32_IMM, R0, 0, 0xffff);
    a.op(XOR32_REG, R8, R0, 0);

    a.bind(Label::Hash);
    a.op(MOV32_REG, R0, R8, 0);
    a.op(MUL32_IMM, R0, 0, MIX as i32);
    a.op(RSH32_IMM, R0, 0, 16);
    a.op(EXIT, 0, 0, 0);

    if quiet {
        a.bind(Label::ByCpu);
        a.op(CALL, 0, 0, BPF_FUNC_GET_SMP_PROCESSOR_ID);
        for (queue, &cpu) in cpus.iter().enumerate().take(MAX_CPUS) {
            // Both fit an i32: MAX_CPUS entries, CPU numbers below
            // CPU_SETSIZE.
            a.insns.push(encode(JNE_IMM, R0, 0, 2, cpu as i32));
            a.op(MOV64_IMM, R0, 0, queue as i32);
            a.op(EXIT, 0, 0, 0);
        }
        // A CPU without a worker: its number.
        a.op(EXIT, 0, 0, 0);
    } else {
        a.bind(Label::NonIpBusy);
        a.op(MOV64_IMM, R0, 0, 0);
        a.op(EXIT, 0, 0, 0);
    }
    a.finish()
}

/// `union bpf_attr` as BPF_PROG_LOAD reads it, up to `prog_name`.
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

fn load(insns: &[[u8; 8]], name: &[u8]) -> io::Result<OwnedFd> {
    let insns: Vec<u8> = insns.concat();
    let license = b"GPL\0";
    let mut prog_name = [0u8; 16];
    let n = name.len().min(15);
    prog_name[..n].copy_from_slice(&name[..n]);
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: (insns.len() / 8) as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
    };
    // SAFETY: BPF_PROG_LOAD reads `size_of::<ProgLoad>()` bytes of `attr`,
    // laid out as the kernel's `union bpf_attr`, and the instructions and
    // license it points to, all alive across the call; it returns a new
    // fd (close-on-exec) or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a successful BPF_PROG_LOAD returned a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// The two loaded programs (closed with their fds).
#[derive(Debug)]
pub struct CpuSteering {
    quiet: OwnedFd,
    busy: OwnedFd,
}

impl CpuSteering {
    /// Loads both programs for workers pinned to `cpus` (worker `i`, which
    /// reads queue `i` of every TAP, on `cpus[i]`). Needs `CAP_BPF` or
    /// `CAP_SYS_ADMIN`.
    pub fn load(cpus: &[usize]) -> io::Result<CpuSteering> {
        if cpus.is_empty() || cpus.iter().any(|&c| c >= libc::CPU_SETSIZE as usize) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "steering needs CPU numbers below CPU_SETSIZE",
            ));
        }
        Ok(CpuSteering {
            quiet: load(&program(cpus, Mode::Quiet), b"vsw_steer_quiet")?,
            busy: load(&program(cpus, Mode::Busy), b"vsw_steer_busy")?,
        })
    }

    /// The program for `mode`.
    pub fn prog(&self, mode: Mode) -> BorrowedFd<'_> {
        match mode {
            Mode::Quiet => self.quiet.as_fd(),
            Mode::Busy => self.busy.as_fd(),
        }
    }
}

/// Attaches `prog` as the steering program of the TAP `tap` is a queue of
/// (the whole device, replacing the one it had in one step), or with
/// `None` gives the choice back to the kernel.
pub fn set_steering(tap: BorrowedFd<'_>, prog: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let fd: libc::c_int = prog.map_or(-1, |p| p.as_raw_fd());
    // SAFETY: TUNSETSTEERINGEBPF reads one `int` (a BPF program fd, or -1)
    // through the pointer; `fd` is a live c_int.
    cvt(unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETSTEERINGEBPF as _, &fd) })?;
    Ok(())
}

#[cfg(test)]
mod tests;
