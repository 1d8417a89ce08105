//! CIDRs as labels give them. Both the rules and the mapping read them, so both must agree on what one is.

use ipnet::IpNet;

/// A network in CIDR form. Host bits are refused rather than masked, so that the network a label names is
/// the one it reads as.
pub fn parse(text: &str) -> Result<IpNet, String> {
    let net: IpNet = text.trim().parse().map_err(|_| "not a CIDR such as 10.254.0.0/16".to_string())?;
    if net.trunc() != net {
        return Err(format!("host bits set: the network is {}", net.trunc()));
    }
    Ok(net)
}
