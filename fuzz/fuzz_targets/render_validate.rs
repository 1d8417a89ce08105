//! `validate` and `render` agree: a cluster template and cluster that render are valid, and a valid pair
//! renders (what validate passes, the nodes must not refuse). The input is the template's YAML, a NUL,
//! and the cluster's YAML; the settings are the bundled example's.
#![no_main]

use std::sync::OnceLock;

use hearth_server::model::{Cluster, ClusterTemplate};
use hearth_server::settings::Loaded;
use hearth_server::{bundle, validate};
use libfuzzer_sys::fuzz_target;

fn settings() -> &'static Loaded {
    static SETTINGS: OnceLock<Loaded> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/settings.yaml");
        Loaded::load(std::path::Path::new(path)).expect("the bundled settings load")
    })
}

fuzz_target!(|text: &str| {
    let Some((template, cluster)) = text.split_once('\0') else { return };
    let Ok(template) = serde_yaml::from_str::<ClusterTemplate>(template) else { return };
    let Ok(cluster) = serde_yaml::from_str::<Cluster>(cluster) else { return };
    let report = validate::validate(&template, &cluster, Some(settings()));
    let rendered = bundle::render(&template, &cluster, settings());
    match (&rendered, report.is_ok()) {
        (Ok(_), false) => panic!("rendered, yet validate says: {:?}", report.errors),
        (Err(e), true) => panic!("validate passed, yet render says: {e:#}"),
        _ => {}
    }
});
