//! The conformance suite: one suite, every backend plugged in.
//!
//! Each scenario is a function taking the backend under test; the
//! `conformance!` macro at the bottom instantiates every scenario for every
//! server backend compiled in, so `cargo test --test conformance std::` runs
//! one backend's suite. Everything runs over real TCP on 127.0.0.1, bounded
//! in count and time.
//!
//! * `replay`: the connections recorded from Go fastrpc, replayed byte for byte.
//! * `matrix`: every client against every server, each compression, sniff
//!   header and version, fire-and-forget, values up to the 1 MiB limit, and
//!   10,000 calls in flight over 4 connections.
//! * `hostile`: clients that break the protocol or the rules; the server
//!   closes them and keeps serving everyone else.
//! * `faults`: servers that die, come back, or shut down under load.

#[path = "../../crates/proto/tests/common/mod.rs"]
mod vectors;

mod faults;
mod hostile;
mod matrix;
mod replay;
mod util;

use fastwire::BackendKind;

macro_rules! conformance {
    ($($module:ident => $kind:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            const KIND: BackendKind = $kind;

            #[test] fn replays_recorded_go_exchanges() { replay::recorded_exchanges(KIND) }
            #[test] fn every_client_every_compression() { matrix::every_client_every_compression(KIND) }
            #[test] fn sniff_header_and_version() { matrix::sniff_header_and_version(KIND) }
            #[test] fn values_up_to_the_limit() { matrix::values_up_to_the_limit(KIND) }
            #[test] fn fire_and_forget() { matrix::fire_and_forget(KIND) }
            #[test] fn ten_thousand_in_flight_over_four_connections() { matrix::ten_thousand_in_flight(KIND) }
            #[test] fn client_matches_out_of_order_responses() { matrix::out_of_order_responses(KIND) }
            #[test] fn client_rejects_over_the_pending_limit() { matrix::pending_limit(KIND) }
            #[test] fn client_call_deadline() { matrix::call_deadline(KIND) }
            #[test] fn pool_spreads_and_caps_connections() { matrix::pool(KIND) }

            #[test] fn hostile_garbage_bytes() { hostile::garbage(KIND) }
            #[test] fn hostile_wrong_version() { hostile::wrong_version(KIND) }
            #[test] fn hostile_wrong_sniff_header() { hostile::wrong_sniff(KIND) }
            #[test] fn hostile_unknown_compression() { hostile::unknown_compression(KIND) }
            #[test] fn hostile_tls_requested() { hostile::tls_requested(KIND) }
            #[test] fn hostile_oversized_name() { hostile::oversized_name(KIND) }
            #[test] fn hostile_oversized_value() { hostile::oversized_value(KIND) }
            #[test] fn hostile_truncated_then_closed() { hostile::truncated_then_closed(KIND) }
            #[test] fn hostile_reset_mid_message() { hostile::reset_mid_message(KIND) }
            #[test] fn hostile_corrupt_flate() { hostile::corrupt_flate(KIND) }
            #[test] fn hostile_corrupt_snappy() { hostile::corrupt_snappy(KIND) }
            #[test] fn hostile_never_finishes_handshake() { hostile::never_finishes_handshake(KIND) }
            #[test] fn hostile_never_reads() { hostile::never_reads(KIND) }
            #[test] fn hostile_connect_close_cycles() { hostile::connect_close_cycles(KIND) }
            #[test] fn hostile_over_the_connection_limit() { hostile::over_connection_limit(KIND) }

            #[test] fn fault_server_dies_mid_call() { faults::server_dies_mid_call(KIND) }
            #[test] fn fault_server_comes_back() { faults::server_comes_back(KIND) }
            #[test] fn fault_graceful_shutdown_under_load() { faults::graceful_shutdown_under_load(KIND) }
            #[test] fn fault_idle_connections_are_closed() { faults::idle_timeout(KIND) }
        }
    )*};
}

#[cfg(all(feature = "std", feature = "tokio", feature = "mio"))]
conformance!(
    std => BackendKind::Std,
    tokio => BackendKind::Tokio,
    tokio_per_core => BackendKind::TokioPerCore,
    mio => BackendKind::Mio,
    mio_acceptor => BackendKind::MioAcceptor,
);
