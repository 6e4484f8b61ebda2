//! The learned scheduling decision (`miso simulate --policy rl`, `miso serve --scheduler rl`):
//! the policy network on one observation, and one whole decision — four candidate GPUs with
//! 2–4 running jobs each, the optimizer's gain on each, the features, the network — as the
//! simulator and the controller make it at every arrival. The target is < 100 µs per decision.

use criterion::{criterion_group, criterion_main, Criterion};

use miso::gpu::{self, Layout};
use miso::optimizer::{optimize, GpuState, OptJob, Options};
use miso::perf;
use miso::policy::rl::{self, PolicyModel, QueueView};

fn bench(c: &mut Criterion) {
    let g = gpu::gpu("a100-40gb").unwrap();
    let opts = Options::default();
    let model = PolicyModel::builtin().unwrap();
    let cat = perf::catalog();
    // Four GPUs running 2, 3, 4 and 3 jobs of measured workloads, each on its optimal layout.
    let states: Vec<GpuState> = [2usize, 3, 4, 3]
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let mut jobs: Vec<OptJob> = (0..n)
                .map(|i| {
                    let w = &cat[(k * 7 + i * 3) % cat.len()];
                    OptJob {
                        remaining_s: Some(600.0 * (i + 1) as f64),
                        restart_s: 10.0,
                        ..OptJob::new(format!("g{k}j{i}"), w.perf())
                    }
                })
                .collect();
            let d = optimize(g, &jobs, &Layout::empty(), &opts).unwrap();
            for (j, job) in jobs.iter_mut().enumerate() {
                job.current = d.instance_of(j);
            }
            GpuState {
                gpu: g,
                layout: d.layout.clone(),
                jobs,
            }
        })
        .collect();
    let newcomer = OptJob {
        remaining_s: Some(60.0),
        ..OptJob::new("new", cat[5].perf())
    };
    let q = QueueView {
        waiting: 3,
        head_min_kind: 0,
        head_wait_s: 30.0,
        idle_gpus: 0,
        gpus: 8,
        running: 12,
    };
    let since = vec![Some(120.0); states.len()];
    let obs = rl::Observation::new(&q, rl::candidates(&states, &newcomer, &opts, &since));
    assert_eq!(obs.candidates.len(), 4);
    c.bench_function("policy_network_one_observation", |b| {
        b.iter(|| model.decide(std::hint::black_box(&obs)))
    });
    c.bench_function("policy_whole_decision_4_gpus", |b| {
        b.iter(|| {
            let cands = rl::candidates(std::hint::black_box(&states), &newcomer, &opts, &since);
            model.decide(&rl::Observation::new(&q, cands))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
