//! Certificates made for a run: a test authority, a server certificate for
//! `localhost`, `127.0.0.1` and `::1` signed by it, and a client
//! certificate for mutual TLS, generated with `rcgen` in memory (no private
//! key is ever committed or written unless asked for).
//!
//! `fastwire compare --tls` and the tests use [`TestPki::shared`], made once
//! per process: generating keys takes a few milliseconds, and a
//! measurement should time handshakes, not key generation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use fastwire_proto::tls::{TlsClient, TlsServer};

/// A test authority and the certificates it signed, all PEM.
#[derive(Clone, Debug)]
pub struct TestPki {
    /// The authority's certificate (what clients and a mutual-TLS server trust).
    pub ca_cert: String,
    /// The server's certificate, for `localhost`, `fastwire.test`, `127.0.0.1` and `::1`.
    pub server_cert: String,
    /// The server's private key.
    pub server_key: String,
    /// A client certificate signed by the authority.
    pub client_cert: String,
    /// The client's private key.
    pub client_key: String,
}

/// The name the server's certificate carries and clients verify by default.
pub const SERVER_NAME: &str = "localhost";

impl TestPki {
    /// A new authority and certificates.
    pub fn generate() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
            SanType,
        };
        let ca_key = KeyPair::generate().expect("key generation");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("no names");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "fastwire test authority");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).expect("self-signed authority");
        let leaf = |names: &[&str], ips: &[&str], usage| {
            let key = KeyPair::generate().expect("key generation");
            let mut params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("valid names");
            for ip in ips {
                params.subject_alt_names.push(SanType::IpAddress(ip.parse().expect("literal address")));
            }
            params.distinguished_name.push(DnType::CommonName, names[0]);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("signed by the authority");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) =
            leaf(&[SERVER_NAME, "fastwire.test"], &["127.0.0.1", "::1"], ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = leaf(&["client.fastwire.test"], &[], ExtendedKeyUsagePurpose::ClientAuth);
        TestPki { ca_cert: ca_cert.pem(), server_cert, server_key, client_cert, client_key }
    }

    /// One set for the whole process.
    pub fn shared() -> &'static TestPki {
        static PKI: OnceLock<TestPki> = OnceLock::new();
        PKI.get_or_init(TestPki::generate)
    }

    /// A server with this certificate (TLS required of every client).
    pub fn server(&self) -> TlsServer {
        TlsServer::from_pem(self.server_cert.as_bytes(), self.server_key.as_bytes(), None).expect("valid test pki")
    }

    /// A server that also requires client certificates signed by the authority.
    pub fn server_mutual(&self) -> TlsServer {
        TlsServer::from_pem(self.server_cert.as_bytes(), self.server_key.as_bytes(), Some(self.ca_cert.as_bytes()))
            .expect("valid test pki")
    }

    /// A client trusting the authority and verifying `server_name`.
    pub fn client(&self, server_name: &str) -> TlsClient {
        TlsClient::from_pem(Some(self.ca_cert.as_bytes()), server_name, None).expect("valid test pki")
    }

    /// A client that also presents the client certificate.
    pub fn client_mutual(&self, server_name: &str) -> TlsClient {
        TlsClient::from_pem(
            Some(self.ca_cert.as_bytes()),
            server_name,
            Some((self.client_cert.as_bytes(), self.client_key.as_bytes())),
        )
        .expect("valid test pki")
    }

    /// A client that resumes no session: every connection is a full
    /// handshake (what a new client pays; the `handshakes` workload measures
    /// that, not a resumption).
    pub fn client_full_handshakes(&self, server_name: &str) -> TlsClient {
        let client = self.client(server_name);
        let mut config = rustls::ClientConfig::clone(client.config());
        config.resumption = rustls::client::Resumption::disabled();
        TlsClient::new(Arc::new(config), server_name).expect("valid name")
    }

    /// Writes the PEM files into `dir` (for `fastwire serve --tls-cert` and
    /// its tests) and returns their paths: `ca.pem`, `server.pem`,
    /// `server.key`, `client.pem`, `client.key`.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<PkiFiles> {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map(|()| path)
        };
        Ok(PkiFiles {
            ca_cert: write("ca.pem", &self.ca_cert)?,
            server_cert: write("server.pem", &self.server_cert)?,
            server_key: write("server.key", &self.server_key)?,
            client_cert: write("client.pem", &self.client_cert)?,
            client_key: write("client.key", &self.client_key)?,
        })
    }
}

/// Where [`TestPki::write_to`] put each file.
#[derive(Clone, Debug)]
pub struct PkiFiles {
    /// The authority's certificate.
    pub ca_cert: PathBuf,
    /// The server's certificate.
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// The client's certificate.
    pub client_cert: PathBuf,
    /// The client's key.
    pub client_key: PathBuf,
}

/// TLS for one measurement: what the server serves (when the harness starts
/// it) and what the clients ask for.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecTls {
    /// The server's settings; `None` when the server is not the harness's
    /// (`fastwire load` against any server).
    pub server: Option<TlsServer>,
    /// The clients' settings.
    pub client: TlsClient,
}

impl SpecTls {
    /// The run's shared certificates, made once (see [`TestPki::shared`]).
    pub fn for_run() -> SpecTls {
        static TLS: OnceLock<SpecTls> = OnceLock::new();
        TLS.get_or_init(|| {
            let pki = TestPki::shared();
            SpecTls { server: Some(pki.server()), client: pki.client_full_handshakes(SERVER_NAME) }
        })
        .clone()
    }
}
