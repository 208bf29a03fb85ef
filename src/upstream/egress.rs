//! Where the gateway may connect to (the SSRF guard). A gateway URL comes
//! from whoever may register gateways; without a guard it could point the
//! gateway at a cloud metadata service or at services on the gateway's own
//! network that were never meant to be reachable from outside.
//!
//! - Always refused: link-local addresses (169.254.0.0/16, fe80::/10) and
//!   cloud metadata endpoints (169.254.169.254, fd00:ec2::254,
//!   `metadata.google.internal`).
//! - Refused unless `--allow-private-upstreams`: loopback, private (RFC 1918),
//!   shared (100.64.0.0/10), unique-local (fc00::/7) and unspecified addresses.
//!
//! Enforced twice: at registration, resolving the host and checking every
//! address (a clear 422); and on every connection, by the resolver the
//! upstream HTTP client uses and a check of IP-literal URLs before connecting
//! — so a name that is re-pointed after registration (DNS rebinding) still
//! cannot reach a refused address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Host names of metadata services that do not resolve to a link-local address everywhere.
const METADATA_NAMES: [&str; 2] = ["metadata.google.internal", "metadata.goog"];
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an upstream address is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("{host} is a cloud metadata endpoint; upstreams may never point there")]
    Metadata { host: String },
    #[error("{host} resolves to {addr}, a link-local address (where cloud metadata services live); upstreams may never point there")]
    LinkLocal { host: String, addr: IpAddr },
    #[error("{host} resolves to {addr}, a {kind} address; start the gateway with --allow-private-upstreams to allow that")]
    Private {
        host: String,
        addr: IpAddr,
        kind: &'static str,
    },
    #[error("cannot resolve {host}: {reason}")]
    Unresolvable { host: String, reason: String },
}

/// The egress policy: which addresses upstream connections may reach.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub allow_private: bool,
}

impl Policy {
    /// Checks one address `host` resolved to.
    pub fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), EgressError> {
        let addr = canonical(addr);
        let refuse_private = |kind| {
            if self.allow_private {
                Ok(())
            } else {
                Err(EgressError::Private {
                    host: host.to_owned(),
                    addr,
                    kind,
                })
            }
        };
        match addr {
            IpAddr::V6(v6) if v6 == AWS_METADATA_V6 => Err(EgressError::Metadata {
                host: host.to_owned(),
            }),
            IpAddr::V4(v4) if v4.is_link_local() => Err(EgressError::LinkLocal {
                host: host.to_owned(),
                addr,
            }),
            IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => {
                Err(EgressError::LinkLocal {
                    host: host.to_owned(),
                    addr,
                })
            }
            a if a.is_loopback() => refuse_private("loopback"),
            a if a.is_unspecified() => refuse_private("unspecified (this host)"),
            IpAddr::V4(v4) if v4.is_private() => refuse_private("private"),
            IpAddr::V4(v4) if is_shared(v4) => refuse_private("shared (carrier-grade NAT)"),
            IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 => {
                refuse_private("unique-local")
            }
            _ => Ok(()),
        }
    }

    /// Checks a host by name before any lookup: metadata names, and IP literals.
    pub fn check_host(&self, host: &str) -> Result<Option<IpAddr>, EgressError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let lower = bare.trim_end_matches('.').to_ascii_lowercase();
        if METADATA_NAMES.contains(&lower.as_str()) {
            return Err(EgressError::Metadata {
                host: host.to_owned(),
            });
        }
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.check_addr(host, ip).map(|()| Some(ip)),
            Err(_) => Ok(None),
        }
    }

    /// Resolves the URL's host and checks every address it resolves to (any
    /// one refused refuses the URL: a connection may pick any of them).
    pub async fn check_url(&self, url: &reqwest::Url) -> Result<(), EgressError> {
        let host = url.host_str().unwrap_or_default();
        if self.check_host(host)?.is_some() {
            return Ok(());
        }
        let port = url.port_or_known_default().unwrap_or(80);
        for addr in lookup(host, port).await? {
            self.check_addr(host, addr.ip())?;
        }
        Ok(())
    }

    /// What an upstream client's resolver does: resolves `host` and refuses
    /// it if any address is refused. The port is left 0 for the caller to set.
    async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, EgressError> {
        self.check_host(host)?;
        let addrs = lookup(host, 0).await?;
        for a in &addrs {
            self.check_addr(host, a.ip())?;
        }
        Ok(addrs)
    }
}

async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
    let unresolvable = |reason: String| EgressError::Unresolvable {
        host: host.to_owned(),
        reason,
    };
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| unresolvable("timed out".into()))?
        .map_err(|e| unresolvable(e.to_string()))?
        .collect::<Vec<_>>();
    if found.is_empty() {
        return Err(unresolvable("no addresses".into()));
    }
    Ok(found)
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are checked as the IPv4 address they reach.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// 100.64.0.0/10 (RFC 6598).
fn is_shared(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    a == 100 && (b & 0xc0) == 64
}

/// The upstream HTTP client's resolver: resolves as usual, then refuses the
/// connection if any address is one the policy refuses.
pub struct GuardedResolver {
    pub policy: Policy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let addrs = policy.resolve(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The same resolver for the plain-HTTP pool (`plain.rs`), which takes a
/// `tower` service rather than reqwest's trait.
#[derive(Clone, Copy)]
pub struct GuardedDns {
    pub policy: Policy,
}

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for GuardedDns {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = EgressError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, EgressError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), EgressError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let policy = self.policy;
        Box::pin(async move { Ok(policy.resolve(name.as_str()).await?.into_iter()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classification() {
        let strict = Policy {
            allow_private: false,
        };
        let open = Policy {
            allow_private: true,
        };
        for always in [
            "169.254.169.254",
            "169.254.1.1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            assert!(open.check_addr("h", ip(always)).is_err(), "{always}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd12::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
        ] {
            assert!(strict.check_addr("h", ip(private)).is_err(), "{private}");
            assert!(open.check_addr("h", ip(private)).is_ok(), "{private}");
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1", "100.128.0.1"] {
            assert!(strict.check_addr("h", ip(public)).is_ok(), "{public}");
        }
        assert!(open.check_host("Metadata.Google.Internal.").is_err());
        assert!(open.check_host("[fe80::1]").is_err());
        assert_eq!(open.check_host("example.com"), Ok(None));
    }
}
