//! `cargo bench -p hearth-server --bench render`: how long rendering a cluster takes, for a small cluster
//! and a large one. The templates use ResourceGroups, so the time must not grow with the node count
//! (target: under 10 ms either way). Prints the median and the spread of repeated runs.

use hearth_server::bundle;
use hearth_server::model::{self, Cluster, ClusterTemplate};
use hearth_server::settings::Loaded;
use std::path::Path;
use std::time::{Duration, Instant};

const RUNS: usize = 200;

fn main() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let settings = Loaded::load(&examples.join("settings.yaml")).unwrap();
    let template: ClusterTemplate = model::load(&examples.join("cluster-template-ha.yaml")).unwrap();
    let base: Cluster = model::load(&examples.join("cluster-ha.yaml")).unwrap();
    let out = tempfile::tempdir().unwrap();
    for (masters, minions) in [(1, 1), (5, 500)] {
        let cluster = Cluster { master_count: Some(masters), node_count: Some(minions), ..base.clone() };
        let mut render_times = Vec::with_capacity(RUNS);
        let mut write_times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let start = Instant::now();
            let rendered = bundle::render(&template, &cluster, &settings).unwrap();
            let rendered_at = Instant::now();
            rendered.write(out.path()).unwrap();
            write_times.push(rendered_at.elapsed());
            render_times.push(rendered_at - start);
        }
        let rendered = bundle::render(&template, &cluster, &settings).unwrap();
        println!(
            "{masters} master(s) / {minions} minion(s): render {}; write (5 files, fsync'd) {}; \
             user-data master {} B ({} base64), minion {} B ({} base64)",
            spread(&mut render_times),
            spread(&mut write_times),
            rendered.master.filled_bytes,
            rendered.master.filled_base64,
            rendered.minion.filled_bytes,
            rendered.minion.filled_base64,
        );
    }
}

/// Median, 10th and 90th percentile.
fn spread(times: &mut [Duration]) -> String {
    times.sort();
    let n = times.len();
    format!(
        "median {:.2} ms (p10 {:.2}, p90 {:.2}, {n} runs)",
        ms(times[n / 2]),
        ms(times[n / 10]),
        ms(times[n * 9 / 10])
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
