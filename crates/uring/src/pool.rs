//! A pool of connections: up to N clients per address (see
//! [`fastwire_common::pool`] for the policy).

/// Up to N [`Client`](crate::Client)s per address: `pool.client(addr).call(name, value)`.
pub type Pool = fastwire_common::Pool<crate::Client>;

/// One client over many servers (power of two choices on calls in flight,
/// failover, servers found by name): see [`fastwire_common::balance`].
pub type Balanced = fastwire_common::Balanced<crate::client::RingThread>;
