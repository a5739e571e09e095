//! Helpers for sonde end-to-end tests.
