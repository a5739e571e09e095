//! netlab: emulated FTTH, 4G and Wi-Fi links for sonde's end-to-end tests and its
//! accuracy benchmark. Real processes in network namespaces, joined by veth, shaped by
//! tbf (and ifb for the upload direction), with a userspace emulator on TUN devices for
//! what the kernel here cannot do: delay, jitter, loss and trace-driven capacity.
#![warn(missing_docs)]

pub mod accuracy;
pub mod capacity;
pub mod emulate;
pub mod profile;
pub mod topology;
pub mod tun;

pub use profile::{builtin, LinkSpec, PROFILES};
pub use topology::{find_bin, ShapedLoopback, Spec, Topology};
