//! Reading a rendered bundle as the nodes will: shared by the tests that look inside user-data.

/// The master's node config as its user-data carries it (`gz+b64` in the `#cloud-config`).
pub fn master_node_config(environment: &str) -> String {
    use base64::Engine as _;
    use std::io::Read as _;
    let environment: serde_yaml::Value = serde_yaml::from_str(environment).unwrap();
    let user_data: serde_yaml::Value =
        serde_yaml::from_str(environment["parameters"]["master_user_data"].as_str().unwrap()).unwrap();
    let file = user_data["write_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/etc/hearth/node.json")
        .expect("the user-data writes the node config");
    let zipped = base64::engine::general_purpose::STANDARD.decode(file["content"].as_str().unwrap()).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&zipped[..]).read_to_string(&mut text).unwrap();
    text
}
