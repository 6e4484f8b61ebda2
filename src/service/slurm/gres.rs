//! A node's MIG instances as Slurm GPU gres: a fixed set of *seats*, one gres.conf line each
//! (`Type=mig0` … `Type=mig6`: as many as the GPU has compute slices, the most instances it
//! can have), each holding one instance of the current layout or none. Pure text in, text out.
//!
//! Three facts of Slurm 22.05, measured on the test cluster, shape this:
//! - a change in a node's gres/gpu *count* kills every job running there at the restart that
//!   reads it (`_validate_node_gres_cnt: Killing job: gres/gpu count mismatch`);
//! - a job's GPU is an index (`GRES=gpu:mig3:1(IDX:3)`) into the node's gres grouped by type in
//!   order of first appearance, so when types move, a running job's index points elsewhere;
//! - a pending job's typed request cannot be changed: `scontrol update TresPerNode=` shows the
//!   new type but the scheduler keeps the first one (the job turns BadConstraints), so a job can
//!   be given a type once, when it is first placed (its request is untyped until then).
//!
//! So the types never change: a seat is a type that lasts, and a job keeps its seat for life.
//! Re-partitioning moves *instances* between seats: a job's new instance goes into the job's
//! seat, an instance that stays keeps its seat (its job runs on), and the profile each seat
//! holds now is written in the line's comment (`# miso:3g.20gb@4`), in the node's `Comment=`,
//! and in the job's comment when it is placed.

use std::collections::HashMap;

use crate::control::MigIds;
use crate::gpu::{parse_valid_layout, GpuModel, Instance, Layout};

/// The type of seat `k`.
pub fn seat_type(k: usize) -> String {
    format!("mig{k}")
}

/// The seat of a gres type (`mig3` → 3).
pub fn seat_of(ty: &str) -> Option<usize> {
    ty.strip_prefix("mig")?.parse().ok()
}

/// One gres.conf line of a node: a seat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub seat: usize,
    /// The instance in the seat (`3g.20gb@4`), if any.
    pub instance: Option<String>,
    /// The device file(s) of the seat (`File=`, or `MultipleFiles=` when several).
    pub file: String,
}

/// Why a gres.conf could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum GresError {
    #[error("gres.conf line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("{0}")]
    Invalid(String),
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// The seats of `node` in gres.conf text, in file order.
pub fn parse(text: &str, node: &str) -> Result<Vec<Slot>, GresError> {
    let mut out = Vec::new();
    for (k, raw) in text.lines().enumerate() {
        let (body, comment) = match raw.split_once('#') {
            Some((b, c)) => (b, Some(c.trim())),
            None => (raw, None),
        };
        if field(body, "NodeName") != Some(node) || field(body, "Name") != Some("gpu") {
            continue;
        }
        let bad = |reason: String| GresError::Line {
            line: k + 1,
            reason,
        };
        let ty = field(body, "Type").ok_or_else(|| bad("a GPU line without Type=".into()))?;
        let seat = seat_of(ty).ok_or_else(|| {
            bad(format!(
                "Type={ty}: miso's seats are typed mig0, mig1, ... (a line miso did not write?)"
            ))
        })?;
        let file = field(body, "File")
            .or_else(|| field(body, "MultipleFiles"))
            .ok_or_else(|| bad("a GPU line without File=".into()))?;
        let instance = comment
            .and_then(|c| c.strip_prefix("miso:"))
            .filter(|i| *i != "empty")
            .map(str::to_string);
        out.push(Slot {
            seat,
            instance,
            file: file.to_string(),
        });
    }
    for (k, s) in out.iter().enumerate() {
        if s.seat != k {
            return Err(GresError::Invalid(format!(
                "gres.conf: {node}'s GPU lines must be seats mig0, mig1, ... in order; line {} is mig{}",
                k + 1,
                s.seat
            )));
        }
    }
    Ok(out)
}

/// The layout the seats hold.
pub fn layout_of(model: &GpuModel, slots: &[Slot]) -> Result<Layout, GresError> {
    let labels: Vec<&str> = slots.iter().filter_map(|s| s.instance.as_deref()).collect();
    let text = if labels.is_empty() {
        "empty".to_string()
    } else {
        labels.join(",")
    };
    parse_valid_layout(model, &text).map_err(|e| GresError::Invalid(format!("gres.conf: {e}")))
}

/// The seats for `layout`: an instance in `keep` (label → seat: the seat of the job that will
/// run on it, or where it is now) takes that seat; the others take free seats, lowest first;
/// the node always has `model.compute_slices` seats. `file(seat, instance)` names a seat's
/// device file(s). Seats in `keep` beyond the count, or given twice, are ignored.
pub fn slots_for(
    model: &GpuModel,
    layout: &Layout,
    keep: &HashMap<String, usize>,
    mut file: impl FnMut(usize, Option<&Instance>) -> String,
) -> Vec<Slot> {
    let n = usize::from(model.compute_slices);
    let mut seat_of_inst: Vec<(Instance, Option<usize>)> =
        layout.instances().iter().map(|i| (*i, None)).collect();
    let mut taken = vec![false; n];
    for (inst, seat) in seat_of_inst.iter_mut() {
        if let Some(&k) = keep.get(&inst.label(model)) {
            if k < n && !taken[k] {
                taken[k] = true;
                *seat = Some(k);
            }
        }
    }
    for (_, seat) in seat_of_inst.iter_mut() {
        if seat.is_none() {
            if let Some(k) = taken.iter().position(|t| !t) {
                taken[k] = true;
                *seat = Some(k);
            }
        }
    }
    (0..n)
        .map(|k| {
            let inst = seat_of_inst
                .iter()
                .find(|(_, s)| *s == Some(k))
                .map(|(i, _)| *i);
            Slot {
                seat: k,
                instance: inst.map(|i| i.label(model)),
                file: file(k, inst.as_ref()),
            }
        })
        .collect()
}

/// Whether the job in `seat` keeps its GPU from `old` to `new`: the same instance stays there.
pub fn survives(old: &[Slot], new: &[Slot], seat: usize) -> bool {
    match (old.get(seat), new.get(seat)) {
        (Some(a), Some(b)) => a.instance.is_some() && a.instance == b.instance && a.file == b.file,
        _ => false,
    }
}

/// The gres.conf lines of `node`'s seats.
pub fn render(node: &str, slots: &[Slot]) -> String {
    let mut s = String::new();
    for slot in slots {
        // A MIG instance is several device files (the GPU's and its capabilities').
        let key = if slot.file.contains(',') {
            "MultipleFiles"
        } else {
            "File"
        };
        s.push_str(&format!(
            "NodeName={node} Name=gpu Type={} {key}={} # miso:{}\n",
            seat_type(slot.seat),
            slot.file,
            slot.instance.as_deref().unwrap_or("empty")
        ));
    }
    s
}

/// The node's `Gres=` for slurm.conf: one of each seat, the same whatever the layout.
pub fn gres_value(slots: &[Slot]) -> String {
    slots
        .iter()
        .map(|s| format!("gpu:{}:1", seat_type(s.seat)))
        .collect::<Vec<_>>()
        .join(",")
}

/// `text` (a gres.conf) with `node`'s GPU lines replaced by `lines`, at the place of the first
/// old one (or at the end); other lines untouched.
pub fn replace_node_lines(text: &str, node: &str, lines: &str) -> String {
    let mut out = String::new();
    let mut placed = false;
    for raw in text.lines() {
        let body = raw.split('#').next().unwrap_or("");
        if field(body, "NodeName") == Some(node) && field(body, "Name") == Some("gpu") {
            if !placed {
                out.push_str(lines);
                placed = true;
            }
            continue;
        }
        out.push_str(raw);
        out.push('\n');
    }
    if !placed {
        out.push_str(lines);
    }
    out
}

/// `/proc/driver/nvidia-caps/mig-minors`: `gpu0/gi1/access 12`, `gpu0/gi1/ci0/access 13`, ...
/// → name → minor.
pub fn parse_mig_minors(text: &str) -> Result<HashMap<String, u32>, GresError> {
    let mut m = HashMap::new();
    for (k, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = || GresError::Line {
            line: k + 1,
            reason: format!("mig-minors: `{line}` is not `<name> <minor>`"),
        };
        let (name, minor) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        let minor: u32 = minor.trim().parse().map_err(|_| bad())?;
        m.insert(name.to_string(), minor);
    }
    Ok(m)
}

/// The device files of a MIG instance, comma-separated as `MultipleFiles=` takes them: the
/// GPU's `/dev/nvidia<minor>`, then the capability files of its GPU instance and compute
/// instance (`/dev/nvidia-caps/nvidia-cap<N>`, N from mig-minors).
pub fn mig_files(minors: &HashMap<String, u32>, ids: MigIds) -> Result<String, GresError> {
    let cap = |name: String| {
        minors
            .get(&name)
            .map(|n| format!("/dev/nvidia-caps/nvidia-cap{n}"))
            .ok_or_else(|| GresError::Invalid(format!("mig-minors has no `{name}`")))
    };
    let gi = cap(format!("gpu{}/gi{}/access", ids.minor, ids.gi))?;
    let ci = cap(format!("gpu{}/gi{}/ci{}/access", ids.minor, ids.gi, ids.ci))?;
    Ok(format!("/dev/nvidia{},{gi},{ci}", ids.minor))
}

/// The seats of a node whose GPU has these instances with these driver ids (as read through
/// NVML), in the form `miso slurm run` reads; `keep` as for [`slots_for`]. An empty seat names
/// the GPU's own device file, which grants no MIG instance.
pub fn hardware_slots(
    model: &GpuModel,
    layout: &Layout,
    keep: &HashMap<String, usize>,
    ids: &HashMap<Instance, MigIds>,
    minors: &HashMap<String, u32>,
    gpu_minor: u32,
) -> Result<Vec<Slot>, GresError> {
    let mut err = None;
    let slots = slots_for(model, layout, keep, |_, inst| match inst {
        None => format!("/dev/nvidia{gpu_minor}"),
        Some(i) => match ids.get(i).map(|x| mig_files(minors, *x)) {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                err.get_or_insert(e);
                String::new()
            }
            None => {
                err.get_or_insert(GresError::Invalid(format!(
                    "no driver ids for {}",
                    i.label(model)
                )));
                String::new()
            }
        },
    });
    match err {
        Some(e) => Err(e),
        None => Ok(slots),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::gpu;

    fn files(k: usize, _: Option<&Instance>) -> String {
        format!("/dev/seat{k}")
    }

    fn seats(g: &GpuModel, layout: &str, keep: &[(&str, usize)]) -> Vec<Slot> {
        let keep = keep.iter().map(|(l, k)| (l.to_string(), *k)).collect();
        slots_for(g, &parse_valid_layout(g, layout).unwrap(), &keep, files)
    }

    #[test]
    fn a_node_has_as_many_seats_as_compute_slices_whatever_the_layout() {
        let g = gpu("a100-40gb").unwrap();
        let s = seats(g, "1g.5gb@6,3g.20gb@0,2g.10gb@4", &[]);
        assert_eq!(s.len(), 7);
        let held: Vec<_> = s
            .iter()
            .map(|s| s.instance.clone().unwrap_or_default())
            .collect();
        assert_eq!(held[..3], ["3g.20gb@0", "2g.10gb@4", "1g.5gb@6"]);
        assert!(s[3..].iter().all(|s| s.instance.is_none()));
        let empty = seats(g, "empty", &[]);
        // Slurm's view never changes: the same seven seats.
        assert_eq!(gres_value(&s), gres_value(&empty));
        assert_eq!(
            gres_value(&s),
            "gpu:mig0:1,gpu:mig1:1,gpu:mig2:1,gpu:mig3:1,gpu:mig4:1,gpu:mig5:1,gpu:mig6:1"
        );
        let text = render("node1", &s);
        assert!(
            text.starts_with(
                "NodeName=node1 Name=gpu Type=mig0 File=/dev/seat0 # miso:3g.20gb@0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("Type=mig6 File=/dev/seat6 # miso:empty\n"),
            "{text}"
        );
        let back = parse(&text, "node1").unwrap();
        assert_eq!(back, s);
        assert_eq!(
            layout_of(g, &back).unwrap().label(g),
            "3g.20gb@0,2g.10gb@4,1g.5gb@6"
        );
        assert_eq!(seats(gpu("a30-24gb").unwrap(), "empty", &[]).len(), 4);
    }

    #[test]
    fn jobs_keep_their_seats_and_only_a_changed_instance_requeues_its_job() {
        let g = gpu("a100-40gb").unwrap();
        // Two jobs on 3g@0 (seat 0) and 3g@4 (seat 1).
        let old = seats(g, "3g.20gb@0,3g.20gb@4", &[]);
        // The next plan keeps 3g@4 and splits 3g@0 into 2g@0 + 1g@2, the first job moving to
        // 2g@0: its new instance takes its seat; 3g@4 stays in seat 1; 1g@2 takes a free seat.
        let new = seats(
            g,
            "2g.10gb@0,1g.5gb@2,3g.20gb@4",
            &[("2g.10gb@0", 0), ("3g.20gb@4", 1)],
        );
        assert_eq!(new[0].instance.as_deref(), Some("2g.10gb@0"));
        assert_eq!(new[1].instance.as_deref(), Some("3g.20gb@4"));
        assert_eq!(new[2].instance.as_deref(), Some("1g.5gb@2"));
        assert!(
            !survives(&old, &new, 0),
            "seat 0's instance changed: its job is requeued"
        );
        assert!(survives(&old, &new, 1), "seat 1 kept 3g@4: its job runs on");
        assert!(!survives(&new, &new, 6), "an empty seat holds no job");
        // A seat asked for twice, or beyond the node, is ignored.
        let odd = seats(
            g,
            "3g.20gb@0,3g.20gb@4",
            &[("3g.20gb@0", 5), ("3g.20gb@4", 5)],
        );
        assert_eq!(odd[5].instance.as_deref(), Some("3g.20gb@0"));
        assert_eq!(odd[0].instance.as_deref(), Some("3g.20gb@4"));
        let far = seats(g, "7g.40gb@0", &[("7g.40gb@0", 9)]);
        assert_eq!(far[0].instance.as_deref(), Some("7g.40gb@0"));
    }

    #[test]
    fn hardware_lines_name_each_instances_capability_files() {
        // mig-minors as the driver writes it (one line per possible GPU/compute instance), and
        // the ids NVML gives for a 3g.20gb@0 + 2g.10gb@4 + 1g.5gb@6 layout on GPU minor 0.
        let minors_text = "config 1\nmonitor 2\ngpu0/gi1/access 12\ngpu0/gi1/ci0/access 13\n\
                           gpu0/gi2/access 21\ngpu0/gi2/ci0/access 22\ngpu0/gi5/access 48\n\
                           gpu0/gi5/ci0/access 49\ngpu1/gi1/access 147\n";
        let minors = parse_mig_minors(minors_text).unwrap();
        assert_eq!(minors["gpu0/gi5/ci0/access"], 49);
        let g = gpu("a100-40gb").unwrap();
        let l = parse_valid_layout(g, "3g.20gb@0,2g.10gb@4,1g.5gb@6").unwrap();
        let mut ids = HashMap::new();
        for (i, gi) in l.instances().iter().zip([2, 5, 1]) {
            ids.insert(
                *i,
                MigIds {
                    minor: 0,
                    gi,
                    ci: 0,
                },
            );
        }
        // The seats as the node's gres.conf has them now.
        let keep: HashMap<String, usize> = [("1g.5gb@6".to_string(), 4)].into_iter().collect();
        let s = hardware_slots(g, &l, &keep, &ids, &minors, 0).unwrap();
        let text = render("gpu-node-7", &s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 7);
        assert_eq!(lines[0], "NodeName=gpu-node-7 Name=gpu Type=mig0 MultipleFiles=/dev/nvidia0,/dev/nvidia-caps/nvidia-cap21,/dev/nvidia-caps/nvidia-cap22 # miso:3g.20gb@0");
        assert_eq!(lines[4], "NodeName=gpu-node-7 Name=gpu Type=mig4 MultipleFiles=/dev/nvidia0,/dev/nvidia-caps/nvidia-cap12,/dev/nvidia-caps/nvidia-cap13 # miso:1g.5gb@6");
        assert_eq!(
            lines[6],
            "NodeName=gpu-node-7 Name=gpu Type=mig6 File=/dev/nvidia0 # miso:empty"
        );
        // What miso writes, miso reads back (the connector's form).
        assert_eq!(parse(&text, "gpu-node-7").unwrap(), s);
        // A GPU instance the file does not list is named.
        ids.insert(
            l.instances()[0],
            MigIds {
                minor: 0,
                gi: 9,
                ci: 0,
            },
        );
        let e = hardware_slots(g, &l, &keep, &ids, &minors, 0).unwrap_err();
        assert!(e.to_string().contains("gpu0/gi9/access"), "{e}");
        assert!(parse_mig_minors("gpu0/gi1/access twelve\n").is_err());
    }

    #[test]
    fn conf_files_are_rewritten_for_one_node_only_and_foreign_lines_are_refused() {
        let gres = "# site lines\nNodeName=a Name=gpu Type=mig0 File=/x # miso:empty\nNodeName=b Name=gpu Type=mig0 File=/y # miso:empty\n";
        let out = replace_node_lines(
            gres,
            "a",
            "NodeName=a Name=gpu Type=mig0 File=/z # miso:7g.40gb@0\n",
        );
        assert_eq!(out, "# site lines\nNodeName=a Name=gpu Type=mig0 File=/z # miso:7g.40gb@0\nNodeName=b Name=gpu Type=mig0 File=/y # miso:empty\n");
        // A typed line miso did not write is refused, by line number; seats out of order too.
        let e = parse("NodeName=a Name=gpu Type=3g.20gb File=/q\n", "a").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = parse("NodeName=a Name=gpu Type=mig1 File=/q\n", "a").unwrap_err();
        assert!(e.to_string().contains("in order"), "{e}");
    }
}
