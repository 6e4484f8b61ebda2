//! Placed MIG layouts: a set of (profile, start) instances on one GPU, their validation against
//! the placement rules, and the enumeration of every valid and every maximal layout, derived
//! from the profile table (never from a hand-written list).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::catalog::{GpuModel, GPUS};
use super::GpuError;

/// One GPU instance: a profile (index into `GpuModel::profiles`) at a placement start.
/// Ordered by start first, so a sorted layout reads left to right across the memory slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Instance {
    pub start: u8,
    pub profile: u8,
}

impl Instance {
    pub fn new(profile: usize, start: u8) -> Instance {
        Instance {
            start,
            profile: profile as u8,
        }
    }

    /// Parse one instance, `3g.20gb@4` (syntax and profile name only, as [`Layout::parse`]).
    pub fn parse(gpu: &GpuModel, text: &str) -> Result<Instance, GpuError> {
        match Layout::parse(gpu, text)?.instances() {
            [i] => Ok(*i),
            _ => Err(GpuError::Syntax {
                input: text.to_string(),
                reason: "expected one instance, e.g. 3g.20gb@4".to_string(),
            }),
        }
    }

    /// `3g.20gb@4`
    pub fn label(&self, gpu: &GpuModel) -> String {
        format!(
            "{}@{}",
            gpu.profiles[self.profile as usize].name, self.start
        )
    }

    /// Bit mask of the memory slices the instance occupies.
    pub fn mask(&self, gpu: &GpuModel) -> u32 {
        let size = gpu.profiles[self.profile as usize].memory_slices as u32;
        ((1u32 << size) - 1) << self.start
    }

    /// The JSON view: `{"profile": "3g.20gb", "start": 4, "size": 4}`.
    pub fn view(&self, gpu: &GpuModel) -> InstanceView {
        let p = &gpu.profiles[self.profile as usize];
        InstanceView {
            profile: p.name.to_string(),
            start: self.start,
            size: p.memory_slices,
        }
    }
}

/// How an instance is written in JSON output and read from JSON input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    pub profile: String,
    pub start: u8,
    pub size: u8,
}

/// A placed layout: the instances of one GPU, kept sorted. It may be invalid until
/// [`Layout::validate`] says otherwise; layouts from [`enumerate`] are always valid.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Layout {
    instances: Vec<Instance>,
}

impl Layout {
    pub fn new(mut instances: Vec<Instance>) -> Layout {
        instances.sort();
        Layout { instances }
    }

    pub fn empty() -> Layout {
        Layout::default()
    }

    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Parse `4g.20gb@0,3g.20gb@4` (spaces allowed; `""` or `empty` is the empty layout).
    /// Checks the syntax and the profile names only; call [`Layout::validate`] for the rules.
    pub fn parse(gpu: &GpuModel, text: &str) -> Result<Layout, GpuError> {
        let t = text.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("empty") || t == "-" {
            return Ok(Layout::empty());
        }
        let mut instances = Vec::new();
        for item in t.split(',') {
            let item = item.trim();
            let (name, start) = item.split_once('@').ok_or_else(|| GpuError::Syntax {
                input: item.to_string(),
                reason: "expected <profile>@<start>, e.g. 3g.20gb@4".to_string(),
            })?;
            let (idx, _) = gpu
                .profile(name)
                .ok_or_else(|| GpuError::unknown_profile(gpu, name))?;
            let start: u8 = start.trim().parse().map_err(|_| GpuError::Syntax {
                input: item.to_string(),
                reason: format!(
                    "start `{}` is not a memory-slice number 0..{}",
                    start.trim(),
                    gpu.memory_slices - 1
                ),
            })?;
            instances.push(Instance::new(idx, start));
        }
        Ok(Layout::new(instances))
    }

    /// Build a layout from its JSON view, checking profile names and sizes.
    pub fn from_views(gpu: &GpuModel, views: &[InstanceView]) -> Result<Layout, GpuError> {
        let mut instances = Vec::with_capacity(views.len());
        for v in views {
            let (idx, p) = gpu
                .profile(&v.profile)
                .ok_or_else(|| GpuError::unknown_profile(gpu, &v.profile))?;
            if v.size != p.memory_slices {
                return Err(GpuError::Syntax {
                    input: format!("{}@{}", v.profile, v.start),
                    reason: format!(
                        "size {} does not match {} (size {})",
                        v.size, p.name, p.memory_slices
                    ),
                });
            }
            instances.push(Instance::new(idx, v.start));
        }
        Ok(Layout::new(instances))
    }

    /// `4g.20gb@0,3g.20gb@4` (`empty` for no instance).
    pub fn label(&self, gpu: &GpuModel) -> String {
        if self.instances.is_empty() {
            return "empty".to_string();
        }
        let mut s = String::new();
        for (i, inst) in self.instances.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{}", inst.label(gpu));
        }
        s
    }

    pub fn views(&self, gpu: &GpuModel) -> Vec<InstanceView> {
        self.instances.iter().map(|i| i.view(gpu)).collect()
    }

    /// Memory slices in use, as a bit mask.
    pub fn mask(&self, gpu: &GpuModel) -> u32 {
        self.instances.iter().fold(0, |m, i| m | i.mask(gpu))
    }

    /// Compute slices in use.
    pub fn compute_slices(&self, gpu: &GpuModel) -> u32 {
        self.instances
            .iter()
            .map(|i| gpu.profiles[i.profile as usize].compute_slices as u32)
            .sum()
    }

    /// Number of instances of each profile (indexed like `gpu.profiles`).
    pub fn counts(&self, gpu: &GpuModel) -> Vec<u8> {
        let mut c = vec![0u8; gpu.profiles.len()];
        for i in &self.instances {
            c[i.profile as usize] += 1;
        }
        c
    }

    /// Profile name → count, for display and mig-parted export.
    pub fn profile_counts(&self, gpu: &GpuModel) -> BTreeMap<String, u32> {
        let mut m = BTreeMap::new();
        for i in &self.instances {
            *m.entry(gpu.profiles[i.profile as usize].name.to_string())
                .or_insert(0) += 1;
        }
        m
    }

    /// Check every placement rule; the error names the instance and the rule it breaks.
    pub fn validate(&self, gpu: &GpuModel) -> Result<(), GpuError> {
        let mut counts = vec![0u8; gpu.profiles.len()];
        let mut placed: Vec<Instance> = Vec::with_capacity(self.instances.len());
        for inst in &self.instances {
            let p = gpu
                .profiles
                .get(inst.profile as usize)
                .ok_or_else(|| GpuError::Syntax {
                    input: format!("profile #{}", inst.profile),
                    reason: format!("{} has {} profiles", gpu.name, gpu.profiles.len()),
                })?;
            if !p.starts.contains(&inst.start) {
                return Err(GpuError::BadStart {
                    instance: inst.label(gpu),
                    gpu: gpu.name.to_string(),
                    allowed: join(p.starts),
                });
            }
            if let Some(other) = placed.iter().find(|o| o.mask(gpu) & inst.mask(gpu) != 0) {
                return Err(GpuError::Overlap {
                    instance: inst.label(gpu),
                    other: other.label(gpu),
                });
            }
            counts[inst.profile as usize] += 1;
            if counts[inst.profile as usize] > p.max_count {
                return Err(GpuError::TooMany {
                    profile: p.name.to_string(),
                    count: counts[inst.profile as usize] as u32,
                    max: p.max_count as u32,
                });
            }
            placed.push(*inst);
        }
        let used = self.compute_slices(gpu);
        if used > gpu.compute_slices as u32 {
            return Err(GpuError::ComputeBudget {
                used,
                max: gpu.compute_slices as u32,
                layout: self.label(gpu),
            });
        }
        Ok(())
    }

    /// Whether `inst` can be added to this (valid) layout.
    pub fn admits(&self, gpu: &GpuModel, inst: Instance) -> bool {
        let p = &gpu.profiles[inst.profile as usize];
        p.starts.contains(&inst.start)
            && self.mask(gpu) & inst.mask(gpu) == 0
            && self.counts(gpu)[inst.profile as usize] < p.max_count
            && self.compute_slices(gpu) + p.compute_slices as u32 <= gpu.compute_slices as u32
    }

    /// Whether no instance of the given profiles fits any more.
    pub fn is_maximal(&self, gpu: &GpuModel, profiles: &[usize]) -> bool {
        !profiles.iter().any(|&pi| {
            gpu.profiles[pi]
                .starts
                .iter()
                .any(|&s| self.admits(gpu, Instance::new(pi, s)))
        })
    }
}

fn join(xs: &[u8]) -> String {
    xs.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every valid, non-empty placed layout made of the given profiles, in a deterministic order:
/// depth-first across the memory slices, trying larger profiles before smaller ones before
/// leaving a slice empty (so the first layout with given counts packs big instances low).
pub fn enumerate(gpu: &GpuModel, profiles: &[usize]) -> Vec<Layout> {
    let mut order: Vec<usize> = profiles.to_vec();
    order.sort_by_key(|&i| {
        let p = &gpu.profiles[i];
        (
            std::cmp::Reverse(p.memory_slices),
            std::cmp::Reverse(p.compute_slices),
            i,
        )
    });
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut counts = vec![0u8; gpu.profiles.len()];
    dfs(gpu, &order, 0, 0, 0, &mut counts, &mut cur, &mut out);
    out
}

#[allow(clippy::too_many_arguments)]
fn dfs(
    gpu: &GpuModel,
    order: &[usize],
    pos: u8,
    occ: u32,
    compute: u32,
    counts: &mut Vec<u8>,
    cur: &mut Vec<Instance>,
    out: &mut Vec<Layout>,
) {
    if pos >= gpu.memory_slices {
        if !cur.is_empty() {
            out.push(Layout::new(cur.clone()));
        }
        return;
    }
    if occ & (1 << pos) == 0 {
        for &pi in order {
            let p = &gpu.profiles[pi];
            let inst = Instance::new(pi, pos);
            if p.starts.contains(&pos)
                && pos + p.memory_slices <= gpu.memory_slices
                && occ & inst.mask(gpu) == 0
                && counts[pi] < p.max_count
                && compute + p.compute_slices as u32 <= gpu.compute_slices as u32
            {
                counts[pi] += 1;
                cur.push(inst);
                dfs(
                    gpu,
                    order,
                    pos + 1,
                    occ | inst.mask(gpu),
                    compute + p.compute_slices as u32,
                    counts,
                    cur,
                    out,
                );
                cur.pop();
                counts[pi] -= 1;
            }
        }
    }
    dfs(gpu, order, pos + 1, occ, compute, counts, cur, out);
}

/// The maximal layouts (no further instance of the given profiles fits).
pub fn maximal(gpu: &GpuModel, profiles: &[usize]) -> Vec<Layout> {
    enumerate(gpu, profiles)
        .into_iter()
        .filter(|l| l.is_maximal(gpu, profiles))
        .collect()
}

/// All valid layouts of the standard (or all) profiles, computed once per GPU model.
pub fn all_layouts(gpu: &'static GpuModel, all_profiles: bool) -> &'static [Layout] {
    static CACHE: [OnceLock<Vec<Layout>>; 2 * MAX_MODELS] =
        [const { OnceLock::new() }; 2 * MAX_MODELS];
    let compute = || enumerate(gpu, &gpu.profile_set(all_profiles));
    match model_index(gpu) {
        Some(i) => CACHE[2 * i + all_profiles as usize].get_or_init(compute),
        None => Box::leak(compute().into_boxed_slice()),
    }
}

/// Upper bound on catalog GPU models, for per-model caches (static arrays of `OnceLock`).
pub const MAX_MODELS: usize = 16;

/// Position of a catalog GPU model in [`GPUS`] (below [`MAX_MODELS`]), for per-model caches.
pub fn model_index(gpu: &GpuModel) -> Option<usize> {
    GPUS.iter()
        .position(|g| std::ptr::eq(g, gpu))
        .filter(|&i| i < MAX_MODELS)
}

/// A valid placed layout with exactly these profile counts (indexed like `gpu.profiles`), the
/// first in [`enumerate`] order: what a count-only config (mig-parted) becomes when placed.
pub fn place_counts(gpu: &'static GpuModel, counts: &[u8]) -> Option<Layout> {
    if counts.iter().all(|&c| c == 0) {
        return Some(Layout::empty());
    }
    let all = counts
        .iter()
        .enumerate()
        .any(|(i, &c)| c > 0 && !gpu.profiles[i].standard);
    all_layouts(gpu, all)
        .iter()
        .find(|l| l.counts(gpu) == counts)
        .cloned()
}
