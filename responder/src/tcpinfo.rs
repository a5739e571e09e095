//! The two TCP_INFO fields the upload sink needs: data segments received and the
//! receive MSS of a connection. The responder's only `unsafe` (one getsockopt).

use std::os::fd::RawFd;

/// Data segments received so far and the largest segment payload seen, or `None` when
/// the socket cannot be read.
pub fn segments_in(fd: RawFd) -> Option<(u64, u32)> {
    // SAFETY: `info` is a zeroed `tcp_info` of the size passed in `len`; the kernel
    // writes at most `len` bytes. `fd` belongs to a connection that is still being
    // served (the caller holds its request), and getsockopt on anything else fails.
    #[allow(unsafe_code)]
    let (rc, info) = unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        (rc, info)
    };
    (rc == 0).then(|| (u64::from(info.tcpi_data_segs_in), info.tcpi_rcv_mss))
}
