//! The synthetic addresses of the stub DNS: one per allowed name, from
//! 198.18.0.0/15 (RFC 2544 benchmarking space, never routed on the
//! internet), never reused during a run. A connect to one is a connect to
//! the name: the policy is checked against the name the program asked for,
//! and the supervisor connects to the addresses it resolved for that name
//! once, when it was first looked up. Pure.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

/// The first synthetic address handed out (198.18.0.0 itself is skipped).
const FIRST: u32 = u32::from_be_bytes([198, 18, 0, 1]);
/// One past the last address of 198.18.0.0/15.
const END: u32 = u32::from_be_bytes([198, 20, 0, 0]);

/// Whether `ip` is in 198.18.0.0/15 (or its IPv4-mapped IPv6 form).
pub fn is_synthetic(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => (FIRST - 1..END).contains(&u32::from(v4)),
        IpAddr::V6(_) => false,
    }
}

/// A name the stub answered, and what it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameEntry {
    /// The name, normalised.
    pub name: String,
    /// What the host's resolver returned for it, once.
    pub addrs: Vec<IpAddr>,
}

/// The run's names and their synthetic addresses.
#[derive(Debug)]
pub struct Names {
    next: u32,
    max: usize,
    by_name: HashMap<String, Ipv4Addr>,
    by_addr: HashMap<Ipv4Addr, NameEntry>,
}

/// The run has used up its names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the run looked up more than {0} different names; the stub DNS answers no more")]
pub struct NamesFull(pub usize);

impl Names {
    /// An empty map that holds at most `max` names.
    pub fn new(max: usize) -> Self {
        Names { next: FIRST, max, by_name: HashMap::new(), by_addr: HashMap::new() }
    }

    /// The synthetic address of `name`, if it has one.
    pub fn address_of(&self, name: &str) -> Option<Ipv4Addr> {
        self.by_name.get(name).copied()
    }

    /// Gives `name` its address (the same one every time), remembering
    /// `addrs` the first time.
    pub fn assign(&mut self, name: &str, addrs: Vec<IpAddr>) -> Result<Ipv4Addr, NamesFull> {
        if let Some(a) = self.by_name.get(name) {
            return Ok(*a);
        }
        if self.by_name.len() >= self.max || self.next >= END {
            return Err(NamesFull(self.max));
        }
        let addr = Ipv4Addr::from(self.next);
        self.next += 1;
        // Skip .0 and .255: some programs take them for network and
        // broadcast addresses.
        while matches!(self.next & 0xff, 0 | 0xff) {
            self.next += 1;
        }
        self.by_name.insert(name.to_owned(), addr);
        self.by_addr.insert(addr, NameEntry { name: name.to_owned(), addrs });
        Ok(addr)
    }

    /// The name behind a synthetic address.
    pub fn lookup(&self, ip: IpAddr) -> Option<&NameEntry> {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.by_addr.get(&v4),
            IpAddr::V6(_) => None,
        }
    }

    /// How many names have an address.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_name.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_per_name_never_reused() {
        let mut n = Names::new(1000);
        let pub_ip: IpAddr = "93.184.216.34".parse().unwrap();
        let a = n.assign("example.com", vec![pub_ip]).unwrap();
        assert_eq!(a, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(n.assign("example.com", vec![]).unwrap(), a, "same name, same address");
        assert_eq!(n.lookup(IpAddr::V4(a)).unwrap().addrs, vec![pub_ip], "first resolution kept");
        let b = n.assign("example.org", vec![]).unwrap();
        assert_ne!(a, b);
        assert_eq!(n.lookup("::ffff:198.18.0.1".parse().unwrap()).unwrap().name, "example.com");
        assert_eq!(n.address_of("example.org"), Some(b));
        assert!(n.lookup("198.18.0.99".parse().unwrap()).is_none());
        let mut seen = std::collections::HashSet::new();
        for i in 0..600 {
            let a = n.assign(&format!("n{i}.test"), vec![]).unwrap();
            assert!(seen.insert(a));
            assert!(!matches!(a.octets()[3], 0 | 255), "{a}");
            assert!(is_synthetic(IpAddr::V4(a)));
        }
    }

    #[test]
    fn the_map_is_bounded() {
        let mut n = Names::new(2);
        n.assign("a", vec![]).unwrap();
        n.assign("b", vec![]).unwrap();
        assert_eq!(n.assign("c", vec![]), Err(NamesFull(2)));
        assert!(n.assign("a", vec![]).is_ok());
        assert_eq!(n.len(), 2);
    }

    #[test]
    fn synthetic_range() {
        for (ip, yes) in [
            ("198.18.0.0", true),
            ("198.19.255.255", true),
            ("198.17.255.255", false),
            ("198.20.0.0", false),
            ("::ffff:198.18.1.1", true),
            ("2001:db8::1", false),
        ] {
            assert_eq!(is_synthetic(ip.parse().unwrap()), yes, "{ip}");
        }
    }
}
