//! Any native config the agent accepts renders to text that parses to the same config.
#![no_main]

use hearth_fragments::config::native;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(config) = native::parse(text, "fuzz", None) else { return };
    let again = native::render(&config);
    let second = native::parse(&again, "rendered", Some(config.role))
        .unwrap_or_else(|e| panic!("rendered native config refused:\n{again}\n{e}"));
    assert_eq!(config, second, "native round trip changed the config:\n{again}");
});
