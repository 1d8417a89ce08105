//! Builds (or finds in the cache) every Kubernetes release, the add-ons' programs and the cloud provider
//! the tests run, and says where each is and what getting it cost: `.ci/run` calls it before the tests,
//! so a cold build shows up as its own step.

use hearth_tests::kubernetes;

fn main() -> anyhow::Result<()> {
    let mut all = kubernetes::releases()?;
    all.push(kubernetes::addons()?);
    all.push(kubernetes::cloud_provider()?);
    for programs in all {
        let how = if programs.built { "built" } else { "cached" };
        println!("{}: {how} in {:.0} s, {}", programs.what, programs.took.as_secs_f64(), programs.dir.display());
    }
    Ok(())
}
