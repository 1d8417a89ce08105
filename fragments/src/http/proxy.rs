//! Which hosts skip the proxy: `no_proxy` matching, as curl and Go read it.

use ipnet::IpNet;
use std::net::IpAddr;

/// Whether `host` (a name or an IP, IPv6 with or without brackets) skips the proxy per `no_proxy`:
/// comma-separated entries, each `*` (everything), an IP, a CIDR, or a domain matching itself and its
/// subdomains (a leading `.` or `*.` changes nothing). Case and trailing dots are ignored.
pub fn bypass_proxy(host: &str, no_proxy: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    no_proxy.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        let bare = entry.trim_start_matches('[').trim_end_matches(']');
        if let Ok(net) = bare.parse::<IpNet>() {
            return host_ip.is_some_and(|ip| net.contains(&ip));
        }
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return host_ip == Some(ip);
        }
        let domain = entry.trim_start_matches("*.").trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase();
        !domain.is_empty()
            && host_ip.is_none()
            && (host == domain || host.strip_suffix(&domain).is_some_and(|rest| rest.ends_with('.')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_no_proxy_matching() {
        let list = "localhost, .svc.cluster.local,example.com,*.corp.test, 10.0.0.0/8,192.168.1.5,fd00::/8,[::1]";
        for host in [
            "localhost",
            "LOCALHOST.",
            "kubernetes.default.svc.cluster.local",
            "example.com",
            "api.example.com",
            "x.corp.test",
            "corp.test",
            "10.1.2.3",
            "192.168.1.5",
            "fd00::1",
            "[fd00::1]",
            "::1",
        ] {
            assert!(bypass_proxy(host, list), "{host} should bypass");
        }
        for host in ["notexample.com", "example.com.evil", "192.168.1.6", "11.0.0.1", "fe80::1", "svc.cluster"] {
            assert!(!bypass_proxy(host, list), "{host} should use the proxy");
        }
        assert!(bypass_proxy("anything.example", " * "));
        assert!(!bypass_proxy("anything.example", ""));
        assert!(!bypass_proxy("anything.example", " , ,"));
        assert!(!bypass_proxy("10.0.0.1", "0.0.10.in-addr.arpa"), "an IP host matches IP entries only");
    }
}
