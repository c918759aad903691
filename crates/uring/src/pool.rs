//! A pool of connections: up to N clients per address (see
//! [`fastwire_common::pool`] for the policy).

/// Up to N [`Client`](crate::Client)s per address: `pool.client(addr).call(name, value)`.
pub type Pool = fastwire_common::Pool<crate::Client>;
