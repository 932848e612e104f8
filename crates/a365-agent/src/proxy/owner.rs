//! Whose connection a loopback TCP client is: the same user as the agent,
//! another user, or unknown (then the route asks for its secret).

use std::net::SocketAddr;
#[cfg(target_os = "linux")]
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Who is on the other end of a route's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// The agent's own user.
    Owner,
    /// Someone else (said in the refusal, e.g. "uid 1001").
    Foreign(String),
    /// Cannot be told here: the route's secret decides.
    Unknown,
}

/// The owner of the client socket connected from `peer` to our `local`.
pub(crate) fn of_tcp(local: SocketAddr, peer: SocketAddr) -> Access {
    #[cfg(target_os = "linux")]
    {
        let me = rustix::process::geteuid().as_raw();
        match linux_owner(local, peer) {
            Some(uid) if uid == me => Access::Owner,
            Some(uid) => Access::Foreign(format!("uid {uid}")),
            None => Access::Unknown,
        }
    }
    #[cfg(windows)]
    {
        match a365_proto::peer::check_tcp(local, peer) {
            Ok(_) => Access::Owner,
            Err(a365_proto::peer::NotMe::Other { who, .. }) => Access::Foreign(who),
            Err(a365_proto::peer::NotMe::Unknown(_)) => Access::Unknown,
        }
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        let _ = (local, peer);
        Access::Unknown
    }
}

/// The uid of the socket whose local end is `peer` and remote end
/// `local`: the client's socket, as `/proc/net/tcp{,6}` lists it.
#[cfg(target_os = "linux")]
fn linux_owner(local: SocketAddr, peer: SocketAddr) -> Option<u32> {
    let (local, peer) = (plain(local), plain(peer));
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|file| {
        let text = std::fs::read_to_string(file).ok()?;
        text.lines().skip(1).find_map(|line| {
            let (from, to, uid) = parse_line(line)?;
            (plain(from) == peer && plain(to) == local).then_some(uid)
        })
    })
}

/// An IPv4-mapped IPv6 address as the IPv4 one: a v6 client socket
/// connected to a v4 listener lists the mapped form.
#[cfg(target_os = "linux")]
fn plain(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// `sl local rem st queues tr retrnsmt uid ...` → (local, remote, uid).
#[cfg(target_os = "linux")]
fn parse_line(line: &str) -> Option<(SocketAddr, SocketAddr, u32)> {
    let mut fields = line.split_ascii_whitespace();
    let _sl = fields.next()?;
    let local = parse_addr(fields.next()?)?;
    let remote = parse_addr(fields.next()?)?;
    let uid = fields.nth(4)?.parse().ok()?;
    Some((local, remote, uid))
}

/// `0100007F:1F90` (IPv4) or 32 hex digits (IPv6): words of 4 bytes, each
/// printed as the host-order value of its bytes.
#[cfg(target_os = "linux")]
fn parse_addr(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_net_lines() {
        let v4 = "   3: 0100007F:A1B2 0100007F:1CED 01 00000000:00000000 00:00000000 00000000  1000        0 123 1";
        let (from, to, uid) = parse_line(v4).unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(from, "127.0.0.1:41394".parse().unwrap());
            assert_eq!(to, "127.0.0.1:7405".parse().unwrap());
        }
        assert_eq!(uid, 1000);
        let v6 = "   0: 0000000000000000FFFF00000100007F:A1B2 00000000000000000000000001000000:1CED 01 00000000:00000000 00:00000000 00000000  0        0 9 1";
        let (from, to, uid) = parse_line(v6).unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(plain(from), "127.0.0.1:41394".parse().unwrap());
            assert_eq!(to, "[::1]:7405".parse().unwrap());
        }
        assert_eq!(uid, 0);
        assert!(parse_line("sl local rem").is_none());
    }

    /// A real loopback connection of this process is found and is ours.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_connection_of_our_own_is_ours() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(of_tcp(server.local_addr().unwrap(), peer), Access::Owner);
    }
}
