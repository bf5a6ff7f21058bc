//! A TAP's queue chosen by the CPU that sends the frame: a socket-filter
//! eBPF program for `TUNSETSTEERINGEBPF`.
//!
//! A multi-queue TAP puts each frame its kernel side sends (a VM's
//! transmit) on one of its queues; by default on the queue its flow used
//! last, else by flow hash. With this program attached the kernel puts it
//! on the queue of the worker pinned to the CPU the sender runs on, so the
//! worker woken for it wakes on that CPU. On a VM host waking a thread on
//! an idle vCPU costs tens of microseconds (the host must run the halted
//! vCPU again); a wakeup on the running CPU does not.
//!
//! The program is three instructions per CPU: `r0 = smp_processor_id();
//! if r0 == cpu { return queue }`, and for a CPU without a worker the CPU
//! number itself (the kernel takes it modulo the number of queues). A TCP
//! segment (the EtherType and IP protocol read with `LD_ABS`) keeps to
//! its flow's hash instead, so a TCP flow never has two workers. It needs
//! no map.

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

/// Most CPUs the program names one by one (the kernel's limit is 4,096
/// instructions); CPUs past it fall back to their number modulo queues.
pub const MAX_CPUS: usize = 1024;

/// One `struct bpf_insn`: opcode, registers (dst in the low nibble,
/// src in the high), offset, immediate.
fn insn_regs(code: u8, regs: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = regs;
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    b
}

/// An instruction on r0 alone.
fn insn(code: u8, off: i16, imm: i32) -> [u8; 8] {
    insn_regs(code, 0, off, imm)
}

/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// `BPF_JMP | BPF_JNE | BPF_K`.
const JNE_IMM: u8 = 0x55;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
const JEQ_IMM: u8 = 0x15;
/// `BPF_JMP | BPF_JA`.
const JA: u8 = 0x05;
/// `BPF_ALU64 | BPF_MOV | BPF_K`.
const MOV_IMM: u8 = 0xb7;
/// `BPF_ALU64 | BPF_MOV | BPF_X`.
const MOV_REG: u8 = 0xbf;
/// `BPF_LD | BPF_ABS | BPF_H`: r0 = the frame's 16 bits at `imm`, in host
/// order (the program ends, returning 0, when the frame is shorter).
const LD_ABS_H: u8 = 0x28;
/// `BPF_LD | BPF_ABS | BPF_B`.
const LD_ABS_B: u8 = 0x30;
/// `BPF_LDX | BPF_MEM | BPF_W`.
const LDX_W: u8 = 0x61;
/// `BPF_JMP | BPF_EXIT`.
const EXIT: u8 = 0x95;
/// Offset of `hash` in `struct __sk_buff` (the frame's flow hash; for a
/// VM's own TCP socket, the connection's).
const SKB_HASH: i16 = 68;
/// IPPROTO_TCP.
const TCP: i32 = 6;

/// The program's instructions. A TCP segment keeps to its flow's hash: a
/// TCP sender transmits both from its process's CPU and, clocked by
/// ACKs, from the CPU that took the ACK, and steered by CPU its segments
/// would be forwarded by two workers at once, and reordered. Any other
/// frame goes to queue `i` when sent on `cpus[i]`.
fn program(cpus: &[usize]) -> Vec<[u8; 8]> {
    let mut p = vec![
        // LD_ABS reads the frame through r6, the context.
        insn_regs(MOV_REG, 0x16, 0, 0),
        insn(LD_ABS_H, 0, 12),
        insn(JEQ_IMM, 2, 0x0800),
        insn(JEQ_IMM, 3, 0x86dd),
        insn(JA, 6, 0),
        // IPv4: the protocol byte.
        insn(LD_ABS_B, 0, 14 + 9),
        insn(JA, 1, 0),
        // IPv6: the next header (a TCP segment behind extension headers
        // is steered as any frame).
        insn(LD_ABS_B, 0, 14 + 6),
        insn(JNE_IMM, 2, TCP),
        // r0 = skb->hash.
        insn_regs(LDX_W, 0x60, SKB_HASH, 0),
        insn(EXIT, 0, 0),
        insn(CALL, 0, BPF_FUNC_GET_SMP_PROCESSOR_ID),
    ];
    for (queue, &cpu) in cpus.iter().enumerate().take(MAX_CPUS) {
        // Both fit an i32: MAX_CPUS entries, CPU numbers below CPU_SETSIZE.
        p.push(insn(JNE_IMM, 2, cpu as i32));
        p.push(insn(MOV_IMM, 0, queue as i32));
        p.push(insn(EXIT, 0, 0));
    }
    p.push(insn(EXIT, 0, 0));
    p
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

/// A loaded steering program (closed with its fd).
#[derive(Debug)]
pub struct CpuSteering {
    fd: OwnedFd,
}

impl CpuSteering {
    /// Loads the program for workers pinned to `cpus` (worker `i`, which
    /// reads queue `i` of every TAP, on `cpus[i]`). Needs `CAP_BPF` or
    /// `CAP_SYS_ADMIN`.
    pub fn load(cpus: &[usize]) -> io::Result<CpuSteering> {
        if cpus.is_empty() || cpus.iter().any(|&c| c >= libc::CPU_SETSIZE as usize) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "steering needs CPU numbers below CPU_SETSIZE",
            ));
        }
        let insns: Vec<u8> = program(cpus).concat();
        let license = b"GPL\0";
        let mut name = [0u8; 16];
        name[..9].copy_from_slice(b"vsw_steer");
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
            prog_name: name,
        };
        // SAFETY: BPF_PROG_LOAD reads `size_of::<ProgLoad>()` bytes of
        // `attr`, laid out as the kernel's `union bpf_attr`, and the
        // instructions and license it points to, all alive across the
        // call; it returns a new fd (close-on-exec) or -1.
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
        let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
        Ok(CpuSteering { fd })
    }
}

impl AsFd for CpuSteering {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Attaches `prog` as the steering program of the TAP `tap` is a queue of
/// (the whole device), or with `None` gives the choice back to the kernel
/// (the flow's last queue, else its hash).
pub fn set_steering(tap: BorrowedFd<'_>, prog: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let fd: libc::c_int = prog.map_or(-1, |p| p.as_raw_fd());
    // SAFETY: TUNSETSTEERINGEBPF reads one `int` (a BPF program fd, or -1)
    // through the pointer; `fd` is a live c_int.
    cvt(unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETSTEERINGEBPF as _, &fd) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_names_each_cpu_then_falls_back_to_the_cpu_number() {
        const HEAD: usize = 12;
        let p = program(&[3, 7]);
        assert_eq!(p.len(), HEAD + 3 * 2 + 1);
        // r6 = r1 (the context, for LD_ABS), the EtherType at 12.
        assert_eq!(p[0], [MOV_REG, 0x16, 0, 0, 0, 0, 0, 0]);
        assert_eq!(p[1], [LD_ABS_H, 0, 0, 0, 12, 0, 0, 0]);
        // Where each jump lands: IPv4 -> its protocol byte (23), IPv6 ->
        // its next header (20), anything else and not TCP -> the CPU
        // table; TCP -> r0 = skb->hash, returned.
        let target = |at: usize| {
            let off = i16::from_ne_bytes([p[at][2], p[at][3]]);
            (at as isize + 1 + off as isize) as usize
        };
        assert_eq!(p[target(2)], insn(LD_ABS_B, 0, 23));
        assert_eq!(p[target(3)], insn(LD_ABS_B, 0, 20));
        assert_eq!(p[target(4)], insn(CALL, 0, BPF_FUNC_GET_SMP_PROCESSOR_ID));
        assert_eq!(p[target(6)], insn(JNE_IMM, 2, TCP));
        assert_eq!(p[target(8)], insn(CALL, 0, BPF_FUNC_GET_SMP_PROCESSOR_ID));
        assert_eq!(p[9], [LDX_W, 0x60, 68, 0, 0, 0, 0, 0]);
        assert_eq!(p[10], insn(EXIT, 0, 0));
        // CPU 3 -> queue 0, CPU 7 -> queue 1.
        assert_eq!(p[HEAD], [JNE_IMM, 0, 2, 0, 3, 0, 0, 0]);
        assert_eq!(p[HEAD + 1], [MOV_IMM, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(p[HEAD + 3], [JNE_IMM, 0, 2, 0, 7, 0, 0, 0]);
        assert_eq!(p[HEAD + 4], [MOV_IMM, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(*p.last().unwrap(), insn(EXIT, 0, 0));
        assert_eq!(program(&vec![0; 5000]).len(), HEAD + 1 + 3 * MAX_CPUS);
    }

    #[test]
    fn the_kernel_takes_the_program_when_we_may_load_one() {
        match CpuSteering::load(&[0, 1]) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!("skipped: loading a BPF program needs CAP_BPF ({e})")
            }
            Err(e) => panic!("BPF_PROG_LOAD refused the steering program: {e}"),
        }
        assert!(CpuSteering::load(&[]).is_err());
    }
}
