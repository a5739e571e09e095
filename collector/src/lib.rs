//! `sonde-collector` library: the `Store` boundary and its embedded SQLite
//! implementation. The binary (`main.rs`) holds the commands.
#![warn(missing_docs)]

pub mod store;
