//! The agent's sockets and what it reads from them: interfaces and sockets bound to
//! them, TCP_INFO, a direction's TCP-layer arrivals, the UDP echo train, and the
//! responder's address.

pub mod arrivals;
pub mod echo;
pub mod netif;
pub mod target;
