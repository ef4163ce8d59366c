//! Prints the planner's balance and movement figures for 10,000 applications on 2 to 32 nodes.
//!
//! `cargo run --release -p flotilla-shard --example shard_figures [-- <shard count> [<apps>]]`

use std::collections::BTreeSet;
use std::time::Instant;

use flotilla_shard::{plan, shard_weights, NodeId, PlanConfig, ShardMap, DEFAULT_SHARD_COUNT};

fn next(
    map: &ShardMap,
    members: &[NodeId],
    alive: &[NodeId],
    weights: &[u64],
) -> (ShardMap, usize) {
    let alive: BTreeSet<NodeId> = alive.iter().copied().collect();
    match plan(map, members, &alive, weights, &PlanConfig::default()) {
        Ok(Some(p)) => (p.map, p.moves.len()),
        Ok(None) => (map.clone(), 0),
        Err(e) => panic!("plan failed: {e}"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let shards: u32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(DEFAULT_SHARD_COUNT);
    let apps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let keys: Vec<String> = (0..apps)
        .map(|i| format!("ns-{}/app-{i}", i % 50))
        .collect();
    let weights = shard_weights(keys.iter().map(String::as_str), shards);
    println!(
        "S={shards} apps={apps} max shard weight={}",
        weights.iter().max().unwrap_or(&0)
    );
    println!(
        " N  grown busiest/mean  fresh busiest/mean  add moves/(S/N)  kill: moved=owned  plan ms"
    );
    let mut map = next(&ShardMap::unassigned(shards), &[1], &[1], &weights).0;
    let (mut worst_grown, mut worst_fresh, mut worst_add) = (0f64, 0f64, 0f64);
    for n in 2..=32u64 {
        let members: Vec<NodeId> = (1..=n).collect();
        let (grown, added) = next(&map, &members, &members, &weights);
        map = grown;
        let started = Instant::now();
        let (fresh, _) = next(&ShardMap::unassigned(shards), &members, &members, &weights);
        let plan_ms = started.elapsed().as_secs_f64() * 1e3;
        let mean = apps as f64 / n as f64;
        let busiest =
            |m: &ShardMap| m.loads(&weights).values().map(|l| l.0).max().unwrap_or(0) as f64 / mean;
        let (g, f) = (busiest(&map), busiest(&fresh));
        let add = added as f64 / (f64::from(shards) / n as f64);
        let victim = n / 2 + 1;
        let rest: Vec<NodeId> = members.iter().copied().filter(|&m| m != victim).collect();
        let (_, killed) = next(&map, &members, &rest, &weights);
        let owned = map.owned_by(victim).len();
        println!(
            "{n:2}  {g:17.4}  {f:18.4}  {add:15.4}  {:>17}  {plan_ms:7.1}",
            format!("{killed}={owned}")
        );
        if n <= 16 {
            worst_grown = worst_grown.max(g);
            worst_fresh = worst_fresh.max(f);
        }
        worst_add = worst_add.max(add);
    }
    println!("N=2..16: worst busiest/mean grown {worst_grown:.4}, fresh {worst_fresh:.4}; N=2..32 worst add {worst_add:.4} x S/N");
}
