//! SHA-256 as the tools that publish and check programs write it (`sha256sum`, dl.k8s.io's `.sha256`
//! files, the settings' `agent.sha256`): 64 lower-case hexadecimal digits.

pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_sha256sum() {
        // `printf abc | sha256sum`
        assert_eq!(super::sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
