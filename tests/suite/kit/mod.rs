//! The suite's kit: the workspace's test kit (`fastwire-testkit`: raw
//! frames, scripted peers, sockets and waits, the recorded Go vectors) and
//! the backend matrix, which needs the tool's list of backends.

pub mod backends;

pub use fastwire_testkit::{frame, net, scripted};
