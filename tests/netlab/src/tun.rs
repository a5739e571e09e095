//! The link emulator's I/O: attaches to two existing TUN devices and forwards packets
//! between them, one thread per direction, through an [`emulate::Path`] each. The only
//! `unsafe` of netlab lives here (TUNSETIFF, TUNSETOFFLOAD, ppoll and setpriority).
//!
//! With offload, both devices carry a virtio-net header before each packet and accept
//! TCP segmentation offload: the kernel hands over GRO-built super-packets of up to
//! 64 KB and takes them back whole, so a gigabit costs thousands of reads and writes a
//! second instead of a hundred thousand.

use crate::emulate::{wire_bytes, Path, PathSpec, PathStats, VNET_HDR_LEN};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6: partial checksums and TCP super-packets.
const TUN_OFFLOADS: libc::c_ulong = 0x1 | 0x2 | 0x4;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens the TUN device `name` (it must exist, e.g. from `ip tuntap add`), non-blocking;
/// with `offload`, with virtio-net headers and TCP segmentation offload.
pub fn attach(name: &str, offload: bool) -> std::io::Result<File> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::other(format!("bad TUN name {name:?}")));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TUN | IFF_NO_PI | if offload { IFF_VNET_HDR } else { 0 },
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `IfReq` has its layout
    // (16-byte name, short flags, padding to 40 bytes) and lives across the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if offload {
        // SAFETY: TUNSETOFFLOAD takes its flags as the integer argument itself.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETOFFLOAD, TUN_OFFLOADS) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(file)
}

/// Waits until `file` is readable or `timeout` passes.
fn wait_readable(file: &File, timeout: Duration) {
    let mut fds = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd and a valid timespec, both outliving the call; no
    // signal mask is passed.
    #[allow(unsafe_code)]
    unsafe {
        libc::ppoll(&mut fds, 1, &ts, std::ptr::null());
    }
}

/// Forwards `input` → `output` through `path` until `stop`; returns the counters.
/// With `offload`, frames carry a virtio-net header, passed through unchanged.
pub fn forward(
    mut input: File,
    mut output: File,
    mut path: Path,
    offload: bool,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) -> PathStats {
    let overhead = path.overhead_bytes();
    emulator_priority();
    let mut buf = vec![0u8; 65536 + VNET_HDR_LEN];
    // SONDE_NETLAB_VERBOSE: a line of counters per second, to see where a link loses.
    let verbose = std::env::var_os("SONDE_NETLAB_VERBOSE").is_some();
    let name = std::thread::current().name().unwrap_or("emu").to_string();
    let (mut last_report, mut last_stats, mut read_bytes) = (Instant::now(), path.stats, 0u64);
    let mut due = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let now = epoch.elapsed().as_nanos() as u64;
        let wait = path
            .next_wake()
            .map(|w| Duration::from_nanos(w.saturating_sub(now)))
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        if !wait.is_zero() {
            wait_readable(&input, wait);
        }
        for _ in 0..512 {
            match input.read(&mut buf) {
                Ok(n) if n > 0 => {
                    read_bytes += n as u64;
                    let now = epoch.elapsed().as_nanos() as u64;
                    if offload {
                        let wire = wire_bytes(&buf[..n], overhead);
                        path.push_sized(now, buf[..n].to_vec(), wire);
                    } else {
                        path.push(now, buf[..n].to_vec());
                    }
                }
                _ => break,
            }
        }
        path.advance(epoch.elapsed().as_nanos() as u64, &mut due);
        for packet in due.drain(..) {
            // A full TUN queue drops the packet, as a full link would.
            let _ = output.write(&packet);
        }
        if verbose && last_report.elapsed() >= Duration::from_secs(1) {
            let (s, l) = (path.stats, last_stats);
            let frames = s.received - l.received;
            eprintln!(
                "{name}: {frames} frames ({:.0} B each), {:.1} Mb/s on the wire, {} overflowed, {} lost, {} delivered",
                read_bytes as f64 / frames.max(1) as f64,
                (s.wire_bytes - l.wire_bytes) as f64 * 8.0 / 1e6 / last_report.elapsed().as_secs_f64(),
                s.overflowed - l.overflowed,
                s.lost - l.lost,
                s.delivered - l.delivered,
            );
            (last_report, last_stats, read_bytes) = (Instant::now(), s, 0);
        }
    }
    path.stats
}

/// Niceness of the forwarding threads: a link does not slow down when the machine is
/// busy, so the emulator is served before ordinary work (a 40 ms path once read 45 to
/// 47 ms while builds shared the 2 cores; two busy loops did not reproduce it, with or
/// without this). Root only; without it the threads keep the process's niceness.
const EMULATOR_NICE: i32 = -15;

/// Raises the calling thread's priority to [`EMULATOR_NICE`] (Linux applies
/// `setpriority` to one thread when given its id).
fn emulator_priority() {
    let tid = thread_id();
    #[allow(unsafe_code)]
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, EMULATOR_NICE) };
    if rc != 0 {
        say_default_priority();
    }
}

/// This thread's id.
fn thread_id() -> libc::id_t {
    #[allow(unsafe_code)]
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    tid as libc::id_t
}

/// Without the right (root), the emulator runs at the default priority: said once.
fn say_default_priority() {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| eprintln!("netlab: emulator threads keep the default priority (not root)"));
}

/// Runs both directions of a link between TUN devices `a` (agent side) and `b`
/// (responder side) until `stop`, calling `ready` once both are attached. Returns
/// (a→b, b→a) counters.
pub fn run_link(
    a: &str,
    b: &str,
    up: PathSpec,
    down: PathSpec,
    offload: bool,
    stop: Arc<AtomicBool>,
    ready: impl FnOnce(),
) -> std::io::Result<(PathStats, PathStats)> {
    let ta = attach(a, offload)?;
    let tb = attach(b, offload)?;
    ready();
    let epoch = Instant::now();
    let seed: u64 = rand::random();
    let (ta2, tb2) = (ta.try_clone()?, tb.try_clone()?);
    let stop2 = stop.clone();
    let up_thread = std::thread::Builder::new()
        .name("emu-up".into())
        .spawn(move || forward(ta, tb, Path::new(up, seed), offload, epoch, stop2))?;
    let down_thread = std::thread::Builder::new()
        .name("emu-down".into())
        .spawn(move || {
            let path = Path::new(down, seed ^ 0x5eed);
            forward(tb2, ta2, path, offload, epoch, stop)
        })?;
    let join = |t: std::thread::JoinHandle<PathStats>| {
        t.join()
            .map_err(|_| std::io::Error::other("a forwarding thread panicked"))
    };
    let (up_stats, down_stats) = (join(up_thread)?, join(down_thread)?);
    Ok((up_stats, down_stats))
}
