//! Which addresses a webhook may reach (against SSRF), and the DNS resolver
//! that enforces it: the addresses it checks are the addresses the
//! connection uses, so a second lookup (DNS rebinding) cannot swap them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is not a public one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    Loopback,
    /// 10/8, 172.16/12, 192.168/16 (and the deprecated IPv6 site-local
    /// fec0::/10).
    Private,
    /// 169.254/16, fe80::/10 (cloud metadata services live here).
    LinkLocal,
    /// fc00::/7.
    UniqueLocal,
    /// 0.0.0.0/8 and `::` (Linux connects 0.0.0.0 to the local host).
    Unspecified,
    Broadcast,
    Multicast,
    /// 100.64/10, carrier-grade NAT.
    SharedAddressSpace,
    /// 240/4, reserved for future use.
    Reserved,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forbidden::Loopback => "a loopback address",
            Forbidden::Private => "a private address",
            Forbidden::LinkLocal => "a link-local address",
            Forbidden::UniqueLocal => "a unique-local address",
            Forbidden::Unspecified => "an unspecified address",
            Forbidden::Broadcast => "a broadcast address",
            Forbidden::Multicast => "a multicast address",
            Forbidden::SharedAddressSpace => "a shared (carrier-grade NAT) address",
            Forbidden::Reserved => "a reserved address",
        })
    }
}

/// Why `ip` may not be a webhook target, `None` when it is public. IPv6
/// forms that carry an IPv4 address (mapped `::ffff:a.b.c.d`, compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) are judged by that address.
pub fn forbidden(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<Forbidden> {
    let [a, b, ..] = ip.octets();
    Some(match (a, b) {
        _ if ip.is_broadcast() => Forbidden::Broadcast,
        (0, _) => Forbidden::Unspecified,
        (127, _) => Forbidden::Loopback,
        (10, _) | (172, 16..=31) | (192, 168) => Forbidden::Private,
        (169, 254) => Forbidden::LinkLocal,
        (100, 64..=127) => Forbidden::SharedAddressSpace,
        // IETF protocol assignments (192.0.0.0/24) and the benchmarking
        // range (198.18.0.0/15): never a public service.
        (192, 0) if ip.octets()[2] == 0 => Forbidden::Reserved,
        (198, 18..=19) => Forbidden::Reserved,
        (224..=239, _) => Forbidden::Multicast,
        (240..=255, _) => Forbidden::Reserved,
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    if ip.is_unspecified() {
        return Some(Forbidden::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Forbidden::Loopback);
    }
    let segments = ip.segments();
    let embedded_v4 = || {
        let [.., c, d] = segments;
        Ipv4Addr::from((u32::from(c) << 16) | u32::from(d))
    };
    match segments {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
        [0, 0, 0, 0, 0, 0xffff | 0, _, _] => return forbidden_v4(embedded_v4()),
        // ::ffff:0:a.b.c.d (IPv4-translated, SIIT).
        [0, 0, 0, 0, 0xffff, 0, _, _] => return forbidden_v4(embedded_v4()),
        // NAT64, well-known and local-use prefixes: a gateway would connect
        // to the embedded IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => return forbidden_v4(embedded_v4()),
        [0x64, 0xff9b, 1, ..] => return Some(Forbidden::Private),
        // 6to4: the relay would connect to the IPv4 address in segments 1–2.
        [0x2002, hi, lo, ..] => {
            return forbidden_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)))
        }
        _ => {}
    }
    let first = segments[0];
    Some(match first {
        _ if first & 0xff00 == 0xff00 => Forbidden::Multicast,
        _ if first & 0xffc0 == 0xfe80 => Forbidden::LinkLocal,
        _ if first & 0xffc0 == 0xfec0 => Forbidden::Private,
        _ if first & 0xfe00 == 0xfc00 => Forbidden::UniqueLocal,
        _ => return None,
    })
}

/// A webhook target refused because it is not public.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RefusedTarget {
    /// The URL's host as written (a name or an address).
    host: String,
    address: IpAddr,
    why: Forbidden,
}

impl RefusedTarget {
    /// `Some` when `address` (the host itself, or what `host` resolved to)
    /// is not public.
    pub fn check(host: &str, address: IpAddr) -> Option<RefusedTarget> {
        forbidden(address).map(|why| RefusedTarget {
            host: host.to_owned(),
            address,
            why,
        })
    }
}

impl fmt::Display for RefusedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<IpAddr>().ok() == Some(self.address) {
            write!(f, "webhook target {} is {}", self.address, self.why)?;
        } else {
            write!(
                f,
                "webhook target {host} resolves to {}, {}",
                self.address, self.why
            )?;
        }
        f.write_str("; set allow_private_addresses on the provider to allow it")
    }
}

/// Resolves names with the system resolver and, unless private addresses
/// are allowed, fails the lookup with a [`RefusedTarget`] when any address
/// is not public. (IP-literal hosts never reach a resolver: the adapter
/// checks them itself.)
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private_addresses: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private_addresses;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private {
                // One private address refuses the name: the connector may
                // try any of them.
                if let Some(refused) = addresses
                    .iter()
                    .find_map(|address| RefusedTarget::check(&host, address.ip()))
                {
                    return Err(refused.into());
                }
            }
            let addresses: Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect(text)
    }

    #[test]
    fn every_non_public_range_is_named_at_its_edges() {
        use Forbidden::*;
        for (address, expected) in [
            ("0.0.0.0", Unspecified),
            ("0.255.255.255", Unspecified),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.0.0.0", Private),
            ("10.255.255.255", Private),
            ("172.16.0.0", Private),
            ("172.31.255.255", Private),
            ("192.168.0.1", Private),
            ("192.168.255.255", Private),
            ("169.254.169.254", LinkLocal),
            ("169.254.0.0", LinkLocal),
            ("100.64.0.0", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("224.0.0.1", Multicast),
            ("239.255.255.255", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.255", Broadcast),
            ("::", Unspecified),
            ("::1", Loopback),
            ("fe80::1", LinkLocal),
            ("febf:ffff::1", LinkLocal),
            ("fec0::1", Private),
            ("fc00::1", UniqueLocal),
            ("fd12:3456:789a::1", UniqueLocal),
            ("ff02::1", Multicast),
            ("ff0e::1", Multicast),
            // IPv4 inside IPv6 is judged as IPv4.
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:100.64.0.1", SharedAddressSpace),
            ("::ffff:0.0.0.0", Unspecified),
            ("::ffff:255.255.255.255", Broadcast),
            ("::127.0.0.1", Loopback),
            ("::192.168.1.1", Private),
            ("64:ff9b::10.0.0.1", Private),
            ("64:ff9b::7f00:1", Loopback),
            ("::ffff:0:127.0.0.1", Loopback),
            ("::ffff:0:10.1.2.3", Private),
            ("64:ff9b:1::1", Private),
            ("2002:7f00:1::1", Loopback),
            ("2002:c0a8:101::1", Private),
            ("192.0.0.8", Reserved),
            ("198.18.0.1", Reserved),
            ("198.19.255.255", Reserved),
        ] {
            assert_eq!(forbidden(ip(address)), Some(expected), "{address}");
        }
    }

    #[test]
    fn public_addresses_just_outside_the_ranges_are_allowed() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "fe7f::1",
            "fbff::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.0",
        ] {
            assert_eq!(forbidden(ip(address)), None, "{address}");
        }
    }

    #[test]
    fn the_refusal_names_the_address_and_the_setting() {
        let refused = RefusedTarget::check("127.0.0.1", ip("127.0.0.1")).expect("refused");
        assert_eq!(
            refused.to_string(),
            "webhook target 127.0.0.1 is a loopback address; \
             set allow_private_addresses on the provider to allow it"
        );
        let refused = RefusedTarget::check("[::ffff:a00:1]", ip("::ffff:10.0.0.1")).expect("v6");
        assert_eq!(
            refused.to_string(),
            "webhook target ::ffff:10.0.0.1 is a private address; \
             set allow_private_addresses on the provider to allow it"
        );
        let refused = RefusedTarget::check("hooks.internal", ip("10.0.0.7")).expect("name");
        assert_eq!(
            refused.to_string(),
            "webhook target hooks.internal resolves to 10.0.0.7, a private address; \
             set allow_private_addresses on the provider to allow it"
        );
        assert_eq!(RefusedTarget::check("one.one", ip("1.1.1.1")), None);
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_of_the_local_host_unless_allowed() {
        let name = |text: &str| text.parse::<Name>().expect("a name");
        let guarded = GuardedResolver {
            allow_private_addresses: false,
        };
        let error = match guarded.resolve(name("localhost")).await {
            Ok(addresses) => panic!("resolved to {:?}", addresses.collect::<Vec<_>>()),
            Err(error) => error,
        };
        let refused = error
            .downcast_ref::<RefusedTarget>()
            .expect("a RefusedTarget");
        assert!(
            refused
                .to_string()
                .starts_with("webhook target localhost resolves to "),
            "{refused}"
        );

        let open = GuardedResolver {
            allow_private_addresses: true,
        };
        let addresses: Vec<SocketAddr> = open
            .resolve(name("localhost"))
            .await
            .expect("resolved")
            .collect();
        assert!(
            addresses.iter().all(|a| a.ip().is_loopback()),
            "{addresses:?}"
        );
        assert!(!addresses.is_empty());
    }
}
