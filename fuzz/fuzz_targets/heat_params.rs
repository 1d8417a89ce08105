//! Any text Magnum's heat-params parser accepts means one node config, whichever format carries it:
//! rendered back as heat-params, or as our native config, it parses to the same config.
#![no_main]

use hearth_fragments::config::{heat_params, native};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(first) = heat_params::parse(text, "fuzz", None) else { return };
    let config = first.config;
    let again = heat_params::render(&config);
    let second = heat_params::parse(&again, "rendered", Some(config.role))
        .unwrap_or_else(|e| panic!("rendered heat-params refused:\n{again}\n{e}"));
    assert_eq!(config, second.config, "heat-params round trip changed the config:\n{again}");
    let as_native = native::render(&config);
    let from_native = native::parse(&as_native, "rendered", Some(config.role))
        .unwrap_or_else(|e| panic!("the native form of a heat-params config is refused:\n{as_native}\n{e}"));
    assert_eq!(config, from_native, "native round trip changed a heat-params config:\n{as_native}");
});
