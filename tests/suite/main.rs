//! The workspace's integration suite, one test binary (each binary links
//! the tool and every backend, so one binary builds and links once):
//!
//! * [`conformance`]: one suite, every server backend plugged in.
//! * Clients and servers beyond the matrix: [`hostile_servers`] (scripted
//!   servers that break the rules), [`leader`] (the blocking clients'
//!   leader/follower hand-overs), [`pool`] (the pool and the balanced
//!   client over many servers), [`from_listener`] (servers on listeners the
//!   application bound), [`tokio_codec`] (the tokio-util codecs).
//! * The tool as a user runs it, in processes of its own: [`cli`]
//!   (`fastwire serve`), [`harness`] (`compare` and `load`), [`load_truth`]
//!   (`load` never reports a success it did not have).
//! * The guide: [`docs`] (sources, figures, lengths, every Try it) and
//!   [`book`] (the rendered book's links).
//! * [`kit`]: what they share: raw frames, scripted peers, the backend matrix.
//!
//! Tests that need the whole process to themselves (a counting allocator,
//! the process's descriptors) are in `tests/process`. Run one part with
//! `cargo test --test suite <module>::`, e.g. `conformance::mio::`.

mod kit;

mod book;
mod cli;
mod conformance;
mod docs;
mod from_listener;
mod harness;
mod hostile_servers;
mod leader;
mod load_truth;
mod pool;
mod tokio_codec;
