//! Builds (or finds in the cache) every Kubernetes release the tests run, and says where each is and
//! what getting it cost: `.ci/run` calls it before the tests, so a cold build shows up as its own step.

use hearth_tests::kubernetes;

fn main() -> anyhow::Result<()> {
    for release in kubernetes::releases()? {
        let how = if release.built { "built" } else { "cached" };
        println!(
            "Kubernetes {}: {how} in {:.0} s, {}",
            release.version,
            release.took.as_secs_f64(),
            release.dir.display()
        );
    }
    Ok(())
}
