//! The conformance suite: one suite, every backend plugged in.
//!
//! Each scenario is a function taking the backend under test; the
//! `conformance!` macro at the bottom instantiates every scenario for every
//! server backend compiled in, so `cargo test --test suite conformance::std::`
//! runs one backend's suite. Everything runs over real TCP on 127.0.0.1, bounded
//! in count and time.
//!
//! * `replay`: the connections recorded from Go fastrpc, replayed byte for byte.
//! * `matrix`: every client against every server, each compression, sniff
//!   header and version, fire-and-forget, values up to the 1 MiB limit, and
//!   10,000 calls in flight over 4 connections.
//! * `hostile`: clients that break the protocol or the rules; the server
//!   closes them and keeps serving everyone else.
//! * `faults`: servers that die, come back, or shut down under load.
//! * `tls`: every client against every server over TLS, mutual TLS, and
//!   the hostile TLS cases.
//! * `settings`: the settings the others leave untested (the client's
//!   timeouts, backoff, batch delay and buffer size, the flate level, the
//!   worker pool).
//! * `waiting`: handlers that wait (deferred, worker pool, async), panic, or
//!   meet the concurrency limit.
//! * `tower`: the tokio client through `tower::Service` (one of every
//!   server's clients in `matrix`), and `tower_server::`, the tokio server
//!   serving a `tower::Service`.

mod faults;
mod hostile;
mod matrix;
mod replay;
mod settings;
mod tls;
mod tower;
mod util;
mod waiting;

use fastwire_bench::BackendKind;

macro_rules! conformance {
    ($($module:ident => $kind:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            const KIND: BackendKind = $kind;

            /// Runs a scenario, or says why this backend cannot run here.
            fn run(scenario: fn(BackendKind)) {
                match KIND.unavailable() {
                    Some(why) => eprintln!("skipped: {why}"),
                    None => scenario(KIND),
                }
            }

            #[test] fn replays_recorded_go_exchanges() { run(replay::recorded_exchanges) }
            #[test] fn every_client_every_compression() { run(matrix::every_client_every_compression) }
            #[test] fn sniff_header_and_version() { run(matrix::sniff_header_and_version) }
            #[test] fn values_up_to_the_limit() { run(matrix::values_up_to_the_limit) }
            #[test] fn fire_and_forget() { run(matrix::fire_and_forget) }
            #[test] fn ten_thousand_in_flight_over_four_connections() { run(matrix::ten_thousand_in_flight) }
            #[test] fn client_matches_out_of_order_responses() { run(matrix::out_of_order_responses) }
            #[test] fn client_rejects_over_the_pending_limit() { run(matrix::pending_limit) }
            #[test] fn client_call_deadline() { run(matrix::call_deadline) }
            #[test] fn pool_spreads_and_caps_connections() { run(matrix::pool) }
            #[test] fn batch_delay_gathers_a_batch() { run(matrix::batch_delay) }
            #[test] fn setting_client_connect_timeout() { run(settings::client_connect_timeout) }
            #[test] fn setting_client_handshake_timeout() { run(settings::client_handshake_timeout) }
            #[test] fn setting_client_idle_timeout() { run(settings::client_idle_timeout) }
            #[test] fn setting_client_reconnect_backoff() { run(settings::client_reconnect_backoff) }
            #[test] fn setting_client_batch_delay() { run(settings::client_batch_delay) }
            #[test] fn setting_client_buffer_size() { run(settings::client_buffer_size) }
            #[test] fn setting_flate_level() { run(settings::flate_level) }
            #[test] fn setting_server_buffer_size() { run(settings::server_buffer_size) }
            #[test] fn setting_blocking_threads() { run(settings::blocking_threads) }

            #[test] fn hostile_garbage_bytes() { run(hostile::garbage) }
            #[test] fn hostile_wrong_version() { run(hostile::wrong_version) }
            #[test] fn hostile_wrong_sniff_header() { run(hostile::wrong_sniff) }
            #[test] fn hostile_unknown_compression() { run(hostile::unknown_compression) }
            #[test] fn hostile_tls_requested() { run(hostile::tls_requested) }
            #[test] fn hostile_oversized_name() { run(hostile::oversized_name) }
            #[test] fn hostile_oversized_value() { run(hostile::oversized_value) }
            #[test] fn hostile_truncated_then_closed() { run(hostile::truncated_then_closed) }
            #[test] fn hostile_reset_mid_message() { run(hostile::reset_mid_message) }
            #[test] fn hostile_corrupt_flate() { run(hostile::corrupt_flate) }
            #[test] fn hostile_corrupt_snappy() { run(hostile::corrupt_snappy) }
            #[test] fn hostile_never_finishes_handshake() { run(hostile::never_finishes_handshake) }
            #[test] fn hostile_never_reads() { run(hostile::never_reads) }
            #[test] fn hostile_stopped_reading_is_cut_off() { run(hostile::stopped_reading_is_cut_off) }
            #[test] fn hostile_connect_close_cycles() { run(hostile::connect_close_cycles) }
            #[test] fn hostile_over_the_connection_limit() { run(hostile::over_connection_limit) }

            #[test] fn tls_every_client_every_compression() { run(tls::every_client_every_compression) }
            #[test] fn tls_mutual() { run(tls::mutual) }
            #[test] fn tls_plaintext_client_to_tls_server() { run(tls::plaintext_client_to_tls_server) }
            #[test] fn tls_client_to_plaintext_server() { run(tls::tls_client_to_plaintext_server) }
            #[test] fn tls_wrong_name_or_unknown_authority() { run(tls::wrong_name_or_unknown_authority) }
            #[test] fn tls_hostile_garbage_records() { run(tls::garbage_records) }
            #[test] fn tls_handshake_never_finishes() { run(tls::handshake_never_finishes) }
            #[test] fn tls_never_reads() { run(tls::never_reads) }

            #[test] fn fault_server_dies_mid_call() { run(faults::server_dies_mid_call) }
            #[test] fn fault_server_comes_back() { run(faults::server_comes_back) }
            #[test] fn fault_graceful_shutdown_under_load() { run(faults::graceful_shutdown_under_load) }
            #[test] fn fault_shutdown_with_a_client_that_never_closes() { run(faults::shutdown_with_a_client_that_never_closes) }
            #[test] fn fault_idle_connections_are_closed() { run(faults::idle_timeout) }

            #[test] fn wait_deferred_out_of_order() { run(waiting::deferred_out_of_order) }
            #[test] fn wait_thousand_waiting_calls_on_one_connection() { run(waiting::thousand_waiting_calls) }
            #[test] fn wait_disconnect_with_deferred_pending() { run(waiting::disconnect_with_deferred_pending) }
            #[test] fn wait_concurrency_limit_backpressure() { run(waiting::concurrency_limit_backpressure) }
            #[test] fn wait_concurrency_limit_reject() { run(waiting::concurrency_limit_reject) }
            #[test] fn wait_shutdown_with_deferred_in_flight() { run(waiting::shutdown_with_deferred_in_flight) }
            #[test] fn wait_responder_after_close() { run(waiting::responder_after_close) }
            #[test] fn wait_dropped_responder() { run(waiting::dropped_responder) }
            #[test] fn wait_in_flight_limit_with_deferred_calls() { run(waiting::in_flight_limit_with_deferred_calls) }
            #[test] fn wait_pool_answers_out_of_order() { run(waiting::pool_answers_out_of_order) }
            #[test] fn wait_async_answers_out_of_order() { run(waiting::async_answers_out_of_order) }
            #[test] fn wait_never_reads_with_deferred_calls() { run(waiting::never_reads_with_deferred_calls) }
            #[test] fn stats_peer_address_and_byte_counts() { run(waiting::peer_address_and_byte_counts) }
            #[test] fn panic_inline_handler() { run(waiting::inline_handler_panics) }
            #[test] fn panic_pool_handler() { run(waiting::pool_handler_panics) }
            #[test] fn panic_async_handler() { run(waiting::async_handler_panics) }
        }
    )*};
}

/// The tokio server serving a `tower::Service`, in the cases about how
/// calls are answered (every client, the tower client included, each
/// compression, values up to the limit, fire-and-forget, the recorded Go
/// exchanges).
#[cfg(feature = "tokio")]
mod tower_server {
    use super::*;

    #[test]
    fn replays_recorded_go_exchanges() {
        replay::recorded_exchanges_on("tower", &tower::start)
    }
    #[test]
    fn every_client_every_compression() {
        matrix::every_client_every_compression_on("tower", &tower::start)
    }
    #[test]
    fn values_up_to_the_limit() {
        matrix::values_up_to_the_limit_on("tower", &tower::start)
    }
    #[test]
    fn fire_and_forget() {
        matrix::fire_and_forget_on(&tower::start)
    }
}

#[cfg(all(feature = "std", feature = "tokio", feature = "mio", feature = "glommio", feature = "uring"))]
conformance!(
    std => BackendKind::Std,
    tokio => BackendKind::Tokio,
    tokio_per_core => BackendKind::TokioPerCore,
    mio => BackendKind::Mio,
    mio_reuseport => BackendKind::MioReuseport,
    glommio => BackendKind::Glommio,
    glommio_reuseport => BackendKind::GlommioReuseport,
    uring => BackendKind::Uring,
    uring_sqpoll => BackendKind::UringSqpoll,
    uring_fixed => BackendKind::UringFixed,
    uring_reuseport => BackendKind::UringReuseport,
    tokio_per_core_reuseport => BackendKind::TokioPerCoreReuseport,
);
