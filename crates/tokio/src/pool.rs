//! A pool of connections: up to N clients per address (see
//! [`fastwire_common::pool`] for the policy).

use std::net::SocketAddr;

use fastwire_common::PoolClient;
use fastwire_proto::ClientConfig;

use crate::Client;

/// Up to N [`Client`]s per address: `pool.client(addr).call(name, value).await`.
pub type Pool = fastwire_common::Pool<Client>;

impl PoolClient for Client {
    fn create(addr: SocketAddr, config: ClientConfig) -> Self {
        Client::new(addr, config)
    }

    fn pending(&self) -> usize {
        Client::pending(self)
    }

    fn close(&self) {
        Client::close(self)
    }
}
