//! The demo service: what `fastwire serve`, the tests and the benchmarks
//! answer, as the Go server that recorded the test vectors did.

use crate::{Request, ResponseWriter};

/// The response body of fastrpc's own benchmark (`server_timing_test.go`):
/// 261 bytes, answered to a request with an empty name and value `foobar`.
pub const FASTRPC_BENCH_BODY: &[u8; 261] = b"Hello world foobar baz aaa bbb ccc ddd eee gklj kljsdfsdfsdfasdaf asdf asdf dsa fasd fdasf afsgfdsg ertytrshdsf fds gfdfagsf asglsdkflaskdflkqowqiot asdkljlp 0293 4u09u0sd9fulksj lksfj lksdfj sdfsfjkko9u iodjsf-[9j lksdjf;lkasdj02r fsd fhjas;klfj asd;lfjwjfsd; ";

/// The request value of fastrpc's benchmark (with an empty name).
pub const FASTRPC_BENCH_VALUE: &[u8] = b"foobar";

/// The demo handler used by `fastwire serve`, the tests and the benchmarks:
/// it answers an empty name with [`FASTRPC_BENCH_BODY`] and any other name
/// with `re:` followed by the value, as the Go server that recorded the test
/// vectors did.
pub fn demo_handler(request: Request<'_>, response: &mut ResponseWriter<'_>) {
    if request.name.is_empty() {
        response.extend_from_slice(FASTRPC_BENCH_BODY);
    } else {
        response.extend_from_slice(b"re:");
        response.extend_from_slice(request.value);
    }
}
