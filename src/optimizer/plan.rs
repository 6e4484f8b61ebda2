//! From a decision to a reconfiguration plan: which instances stay, which go, which come, which
//! jobs must be checkpointed and restarted, and whether the move is worth its cost.

use serde::Serialize;

use crate::gpu::{GpuModel, Instance, InstanceView, Layout, LayoutDiff};

use super::{optimize, Decision, OptError, OptJob, Options};

/// A reconfiguration plan for one GPU. Steps run in this order: checkpoint `restart` jobs,
/// destroy `diff.destroy`, create `diff.create` (largest first), then start `start` jobs and
/// restart `restart` jobs on their target instances. `untouched` jobs keep running throughout.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub decision: Decision,
    pub from: Layout,
    pub diff: LayoutDiff,
    /// (job index, target instance) for every job.
    pub assignment: Vec<(usize, Instance)>,
    /// Jobs that stay on their instance; never stopped.
    pub untouched: Vec<usize>,
    /// Running jobs that move: checkpointed before the destroys, restarted after the creates.
    pub restart: Vec<usize>,
    /// Jobs that do not run yet and start on their instance.
    pub start: Vec<usize>,
    /// Set when a cost-aware check kept the current layout although another was better.
    pub skipped_gain_s: Option<f64>,
}

impl Plan {
    /// True when the GPU is left as it is.
    pub fn is_noop(&self) -> bool {
        self.diff.is_noop() && self.restart.is_empty()
    }

    pub fn view(&self, gpu: &GpuModel, jobs: &[OptJob]) -> PlanView {
        let id = |j: &usize| jobs[*j].id.clone();
        let inst = |j: usize| {
            self.assignment
                .iter()
                .find(|(k, _)| *k == j)
                .map(|(_, i)| i.view(gpu))
        };
        let mut steps = Vec::new();
        for j in &self.restart {
            steps.push(StepView::Checkpoint { job: id(j) });
        }
        for i in &self.diff.destroy {
            steps.push(StepView::Destroy {
                instance: i.view(gpu),
            });
        }
        for i in &self.diff.create {
            steps.push(StepView::Create {
                instance: i.view(gpu),
            });
        }
        for j in self.restart.iter().chain(&self.start) {
            if let Some(i) = inst(*j) {
                steps.push(StepView::Start {
                    job: id(j),
                    instance: i,
                    restart: self.restart.contains(j),
                });
            }
        }
        PlanView {
            keep: self.diff.keep.iter().map(|i| i.view(gpu)).collect(),
            destroy: self.diff.destroy.iter().map(|i| i.view(gpu)).collect(),
            create: self.diff.create.iter().map(|i| i.view(gpu)).collect(),
            untouched: self.untouched.iter().map(id).collect(),
            checkpoint_restart: self.restart.iter().map(id).collect(),
            start: self.start.iter().map(id).collect(),
            skipped_gain_s: self.skipped_gain_s,
            steps,
        }
    }
}

/// JSON form of a plan.
#[derive(Clone, Debug, Serialize)]
pub struct PlanView {
    pub keep: Vec<InstanceView>,
    pub destroy: Vec<InstanceView>,
    pub create: Vec<InstanceView>,
    pub untouched: Vec<String>,
    pub checkpoint_restart: Vec<String>,
    pub start: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_gain_s: Option<f64>,
    pub steps: Vec<StepView>,
}

/// One ordered step of a plan.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StepView {
    Checkpoint {
        job: String,
    },
    Destroy {
        instance: InstanceView,
    },
    Create {
        instance: InstanceView,
    },
    Start {
        job: String,
        instance: InstanceView,
        restart: bool,
    },
}

/// Turn a decision into a plan against the current layout.
fn plan_of(
    gpu: &GpuModel,
    jobs: &[OptJob],
    current: &Layout,
    d: Decision,
    skipped: Option<f64>,
) -> Plan {
    let diff = LayoutDiff::between(gpu, current, &d.layout);
    let mut assignment = Vec::new();
    let (mut untouched, mut restart, mut start) = (Vec::new(), Vec::new(), Vec::new());
    for (i, a) in d.assignment.iter().enumerate() {
        if let Some(j) = *a {
            assignment.push((j, d.layout.instances()[i]));
        }
    }
    assignment.sort();
    for &(j, inst) in &assignment {
        match jobs[j].current {
            Some(c) if c == inst && diff.keep.contains(&inst) => untouched.push(j),
            Some(_) => restart.push(j),
            None => start.push(j),
        }
    }
    Plan {
        decision: d,
        from: current.clone(),
        diff,
        assignment,
        untouched,
        restart,
        start,
        skipped_gain_s: skipped,
    }
}

/// The current assignment as a decision, when every job runs on a distinct instance of the
/// current layout where it fits.
fn current_decision(
    gpu: &GpuModel,
    jobs: &[OptJob],
    current: &Layout,
    opts: &Options,
) -> Option<Decision> {
    let mut assignment = vec![None; current.len()];
    let mut cost = 0.0;
    for (j, job) in jobs.iter().enumerate() {
        let i = current
            .instances()
            .iter()
            .position(|x| Some(*x) == job.current)?;
        if assignment[i].is_some() {
            return None;
        }
        assignment[i] = Some(j);
        let row = super::cost_row(gpu, job, opts.objective).ok()?;
        let c = row[current.instances()[i].profile as usize];
        if c == f64::INFINITY {
            return None;
        }
        cost += c;
    }
    Some(Decision {
        layout: current.clone(),
        assignment,
        cost,
        value: opts.objective.value(cost, jobs.len()),
        kept_jobs: jobs.len(),
    })
}

/// Seconds of remaining work to finish every job under a decision, plus the restart time of
/// the jobs it moves. `None` when some job's remaining work is unknown.
fn finish_time_s(gpu: &GpuModel, jobs: &[OptJob], d: &Decision, opts: &Options) -> Option<f64> {
    let mut t = 0.0;
    for (j, job) in jobs.iter().enumerate() {
        let inst = d.instance_of(j)?;
        let s = job.perf.speed_on(gpu, inst.profile as usize)?;
        t += job.remaining_s? / s;
        if job.current.is_some() && job.current != Some(inst) {
            t += job.restart_s + opts.reconfig_s;
        }
    }
    Some(t)
}

/// Decide and plan: optimise, then (with `cost_aware`) keep the current layout when moving
/// would cost the jobs more time than it saves over their remaining work.
pub fn plan(
    gpu: &'static GpuModel,
    jobs: &[OptJob],
    current: &Layout,
    opts: &Options,
) -> Result<Plan, OptError> {
    let d = optimize(gpu, jobs, current, opts)?;
    if opts.cost_aware {
        if let Some(cur) = current_decision(gpu, jobs, current, opts) {
            if let (Some(t_new), Some(t_cur)) = (
                finish_time_s(gpu, jobs, &d, opts),
                finish_time_s(gpu, jobs, &cur, opts),
            ) {
                if t_new >= t_cur {
                    return Ok(plan_of(gpu, jobs, current, cur, Some(t_cur - t_new)));
                }
            }
        }
    }
    Ok(plan_of(gpu, jobs, current, d, None))
}
