//! Benchmark programs for Tenancy; scenarios land with the features they measure.

fn main() -> anyhow::Result<()> {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    anyhow::bail!("unknown scenario {scenario:?}")
}
