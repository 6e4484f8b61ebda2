//! One single-GPU decision at 1..7 jobs on an A100-40GB, and a re-plan of a 1,000-GPU cluster
//! after one job finished on every GPU. Jobs are measured MISO workloads, drawn with a fixed
//! seed so every run benchmarks the same decisions.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use miso::gpu::{self, Layout};
use miso::optimizer::{optimize, plan, OptJob, Options};
use miso::perf;

/// Small deterministic generator (xorshift) so the bench needs no RNG crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `n` jobs that fit one A100 together: workloads that fit 1g.5gb (so 7 can share).
fn jobs(rng: &mut Rng, n: usize) -> Vec<OptJob> {
    let small: Vec<_> = perf::catalog()
        .iter()
        .filter(|w| w.iter_s[0].is_some())
        .collect();
    (0..n)
        .map(|i| {
            let w = small[(rng.next() % small.len() as u64) as usize];
            OptJob::new(format!("j{i}"), w.perf())
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let g = gpu::gpu("a100-40gb").unwrap();
    let opts = Options::default();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut group = c.benchmark_group("decision_a100");
    for n in 1..=7 {
        let js = jobs(&mut rng, n);
        // Warm the per-GPU layout cache outside the timing.
        optimize(g, &js, &Layout::empty(), &opts).unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(n), &js, |b, js| {
            b.iter(|| optimize(g, std::hint::black_box(js), &Layout::empty(), &opts).unwrap())
        });
    }
    group.finish();

    // 1,000 GPUs, each running 2..7 jobs placed by a first decision; one job finishes on
    // every GPU and each GPU is re-planned around the remaining ones.
    let cluster: Vec<(Layout, Vec<OptJob>)> = (0..1000)
        .map(|_| {
            let n = 2 + (rng.next() % 6) as usize;
            let mut js = jobs(&mut rng, n);
            let d = optimize(g, &js, &Layout::empty(), &opts).unwrap();
            for (j, job) in js.iter_mut().enumerate() {
                job.current = d.instance_of(j);
            }
            js.remove(0);
            (d.layout, js)
        })
        .collect();
    c.bench_function("replan_1000_gpus", |b| {
        b.iter(|| {
            cluster
                .iter()
                .map(|(l, js)| plan(g, js, l, &opts).unwrap().restart.len())
                .sum::<usize>()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
