//! A node's MIG instances as Slurm GPU gres: one gres.conf line per *slot*, a fixed number of
//! slots per node (the GPU's compute slices: the most instances it can have), each slot either
//! an instance of the current layout (`Type=3g.20gb`) or `Type=unused`. Pure text in, text out.
//!
//! Two facts of Slurm 22.05, measured on the test cluster, shape this:
//! - a change in a node's gres/gpu *count* kills every job running there at the restart that
//!   reads it (`_validate_node_gres_cnt: Killing job: gres/gpu count mismatch`), so the count
//!   never changes: re-partitioning retypes slots;
//! - a job's GPU is an index (`GRES=gpu:3g.20gb:1(IDX:2)`) into the node's gres grouped by type
//!   in order of first appearance, line order within a type. Lines are written grouped, largest
//!   profile first, so a line's position is its index, and a running job survives a
//!   re-partition only when its instance keeps the same index (see [`survives`]).
//!
//! Each line carries the instance it stands for in a trailing comment (`# miso:3g.20gb@4`), so
//! the file itself records the layout Slurm was told about.

use crate::gpu::{parse_valid_layout, GpuModel, Instance, Layout};

/// The type of a slot without an instance.
pub const UNUSED: &str = "unused";

/// One gres.conf line of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Profile name (the gres type), or `None` for an unused slot.
    pub profile: Option<String>,
    /// The instance's label (`3g.20gb@4`), for a used slot.
    pub instance: Option<String>,
    /// The device file(s) of the slot (`File=`).
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

/// The slots of `node` in gres.conf text, in file order.
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
        let bad = |reason: &str| GresError::Line {
            line: k + 1,
            reason: reason.to_string(),
        };
        let ty = field(body, "Type").ok_or_else(|| bad("a GPU line without Type="))?;
        let file = field(body, "File")
            .or_else(|| field(body, "MultipleFiles"))
            .ok_or_else(|| bad("a GPU line without File="))?;
        let instance = comment
            .and_then(|c| c.strip_prefix("miso:"))
            .map(str::to_string);
        if ty != UNUSED && instance.is_none() {
            return Err(bad(&format!(
                "Type={ty} without the `# miso:<instance>` comment miso writes (a line miso did not write?)"
            )));
        }
        out.push(Slot {
            profile: (ty != UNUSED).then(|| ty.to_string()),
            instance,
            file: file.to_string(),
        });
    }
    Ok(out)
}

/// The layout the slots stand for.
pub fn layout_of(model: &GpuModel, slots: &[Slot]) -> Result<Layout, GresError> {
    let labels: Vec<&str> = slots.iter().filter_map(|s| s.instance.as_deref()).collect();
    let text = if labels.is_empty() {
        "empty".to_string()
    } else {
        labels.join(",")
    };
    parse_valid_layout(model, &text).map_err(|e| GresError::Invalid(format!("gres.conf: {e}")))
}

/// Slurm's index of each slot: grouped by type in order of first appearance, line order within
/// a type. `index[k]` is the IDX of line `k`.
pub fn slurm_index(slots: &[Slot]) -> Vec<usize> {
    let mut types: Vec<Option<&str>> = Vec::new();
    for s in slots {
        if !types.contains(&s.profile.as_deref()) {
            types.push(s.profile.as_deref());
        }
    }
    let mut index = vec![0; slots.len()];
    let mut next = 0;
    for t in types {
        for (k, s) in slots.iter().enumerate() {
            if s.profile.as_deref() == t {
                index[k] = next;
                next += 1;
            }
        }
    }
    index
}

/// The slot a job holds from Slurm's index (`IDX:n`).
pub fn slot_at(slots: &[Slot], idx: usize) -> Option<&Slot> {
    let index = slurm_index(slots);
    index.iter().position(|&i| i == idx).map(|k| &slots[k])
}

/// The slots of `layout`: instances grouped by profile, the largest first (then by start), then
/// unused slots up to the node's fixed count (`model.compute_slices`). `file(k, instance)` names
/// slot `k`'s device file.
pub fn slots_for(
    model: &GpuModel,
    layout: &Layout,
    mut file: impl FnMut(usize, Option<&Instance>) -> String,
) -> Vec<Slot> {
    let mut inst: Vec<Instance> = layout.instances().to_vec();
    inst.sort_by_key(|i| {
        let p = &model.profiles[i.profile as usize];
        (
            std::cmp::Reverse(p.compute_slices),
            std::cmp::Reverse(p.memory_mb),
            i.profile,
            i.start,
        )
    });
    let mut out: Vec<Slot> = Vec::new();
    for i in &inst {
        let k = out.len();
        out.push(Slot {
            profile: Some(model.profiles[i.profile as usize].name.to_string()),
            instance: Some(i.label(model)),
            file: file(k, Some(i)),
        });
    }
    while out.len() < usize::from(model.compute_slices) {
        let k = out.len();
        out.push(Slot {
            profile: None,
            instance: None,
            file: file(k, None),
        });
    }
    out
}

/// Whether a job on the slot at Slurm index `idx` of `old` keeps its GPU under `new`: the same
/// instance sits at the same index with the same type.
pub fn survives(old: &[Slot], new: &[Slot], idx: usize) -> bool {
    let (Some(a), Some(b)) = (slot_at(old, idx), slot_at(new, idx)) else {
        return false;
    };
    a.instance.is_some() && a.instance == b.instance && a.profile == b.profile
}

/// The gres.conf lines of `node`'s slots.
pub fn render(node: &str, slots: &[Slot]) -> String {
    let mut s = String::new();
    for slot in slots {
        let ty = slot.profile.as_deref().unwrap_or(UNUSED);
        s.push_str(&format!(
            "NodeName={node} Name=gpu Type={ty} File={}",
            slot.file
        ));
        if let Some(i) = &slot.instance {
            s.push_str(&format!(" # miso:{i}"));
        }
        s.push('\n');
    }
    s
}

/// The node's `Gres=` value for slurm.conf, types in the slots' order of first appearance.
pub fn gres_value(slots: &[Slot]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for s in slots {
        let t = s.profile.as_deref().unwrap_or(UNUSED);
        match counts.iter_mut().find(|(n, _)| *n == t) {
            Some((_, c)) => *c += 1,
            None => counts.push((t, 1)),
        }
    }
    counts
        .iter()
        .map(|(t, c)| format!("gpu:{t}:{c}"))
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

/// `text` (a slurm.conf) with `node`'s `Gres=` set to `gres`; an error when the node has no
/// NodeName line of its own.
pub fn set_node_gres(text: &str, node: &str, gres: &str) -> Result<String, GresError> {
    let mut out = String::new();
    let mut found = false;
    for raw in text.lines() {
        let is_node = raw
            .split_whitespace()
            .next()
            .is_some_and(|w| w == format!("NodeName={node}"));
        if is_node {
            found = true;
            let mut words: Vec<String> = raw.split_whitespace().map(str::to_string).collect();
            match words.iter_mut().find(|w| w.starts_with("Gres=")) {
                Some(w) => *w = format!("Gres={gres}"),
                None => words.push(format!("Gres={gres}")),
            }
            out.push_str(&words.join(" "));
        } else {
            out.push_str(raw);
        }
        out.push('\n');
    }
    if !found {
        return Err(GresError::Invalid(format!(
            "slurm.conf: no `NodeName={node}` line of its own"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::gpu;

    fn files(k: usize, _: Option<&Instance>) -> String {
        format!("/dev/slot{k}")
    }

    #[test]
    fn slots_are_grouped_largest_first_and_their_count_never_changes() {
        let g = gpu("a100-40gb").unwrap();
        let l = parse_valid_layout(g, "1g.5gb@6,3g.20gb@0,2g.10gb@4").unwrap();
        let s = slots_for(g, &l, files);
        assert_eq!(s.len(), 7);
        let types: Vec<_> = s
            .iter()
            .map(|s| s.profile.clone().unwrap_or_default())
            .collect();
        assert_eq!(types[..3], ["3g.20gb", "2g.10gb", "1g.5gb"]);
        assert!(s[3..].iter().all(|s| s.profile.is_none()));
        assert_eq!(
            gres_value(&s),
            "gpu:3g.20gb:1,gpu:2g.10gb:1,gpu:1g.5gb:1,gpu:unused:4"
        );
        // Grouped lines: a line's position is Slurm's index.
        assert_eq!(slurm_index(&s), (0..7).collect::<Vec<_>>());
        let back = parse(&render("node1", &s), "node1").unwrap();
        assert_eq!(back, s);
        assert_eq!(layout_of(g, &back).unwrap().label(g), l.label(g));
        let empty = slots_for(g, &Layout::empty(), files);
        assert_eq!(gres_value(&empty), "gpu:unused:7");
    }

    #[test]
    fn slurm_groups_types_in_order_of_first_appearance() {
        // As measured: lines 1g,1g,3g,1g give the 3g.20gb index 3.
        let t = "NodeName=n Name=gpu Type=1g.5gb File=/a # miso:1g.5gb@0\n\
                 NodeName=n Name=gpu Type=1g.5gb File=/b # miso:1g.5gb@1\n\
                 NodeName=n Name=gpu Type=3g.20gb File=/c # miso:3g.20gb@4\n\
                 NodeName=n Name=gpu Type=1g.5gb File=/d # miso:1g.5gb@2\n\
                 NodeName=m Name=gpu Type=7g.40gb File=/e # miso:7g.40gb@0\n";
        let s = parse(t, "n").unwrap();
        assert_eq!(slurm_index(&s), vec![0, 1, 3, 2]);
        assert_eq!(
            slot_at(&s, 3).unwrap().instance.as_deref(),
            Some("3g.20gb@4")
        );
        assert_eq!(slot_at(&s, 2).unwrap().file, "/d");
        assert!(slot_at(&s, 4).is_none());
    }

    #[test]
    fn a_job_survives_only_when_its_instance_keeps_its_index() {
        let g = gpu("a100-40gb").unwrap();
        let old = slots_for(
            g,
            &parse_valid_layout(g, "3g.20gb@0,3g.20gb@4").unwrap(),
            files,
        );
        // 3g@0 stays first: its job keeps IDX 0; 3g@4 is destroyed.
        let new = slots_for(
            g,
            &parse_valid_layout(g, "3g.20gb@0,2g.10gb@4,1g.5gb@6").unwrap(),
            files,
        );
        assert!(survives(&old, &new, 0));
        assert!(!survives(&old, &new, 1));
        // 3g@4 kept but now behind 3g@0 → still IDX 1; a 4g in front would move it.
        let moved = slots_for(
            g,
            &parse_valid_layout(g, "4g.20gb@0,3g.20gb@4").unwrap(),
            files,
        );
        assert!(!survives(&old, &moved, 1));
        assert!(!survives(&old, &moved, 0));
        // An unused slot never "survives".
        assert!(!survives(&new, &new, 6));
    }

    #[test]
    fn conf_files_are_rewritten_for_one_node_only() {
        let gres = "# site lines\nNodeName=a Name=gpu Type=unused File=/x\nNodeName=b Name=gpu Type=unused File=/y\n";
        let out = replace_node_lines(
            gres,
            "a",
            "NodeName=a Name=gpu Type=7g.40gb File=/z # miso:7g.40gb@0\n",
        );
        assert_eq!(out, "# site lines\nNodeName=a Name=gpu Type=7g.40gb File=/z # miso:7g.40gb@0\nNodeName=b Name=gpu Type=unused File=/y\n");
        let conf = "ClusterName=x\nNodeName=a CPUs=2 Gres=gpu:unused:7 State=UNKNOWN\nNodeName=ab Gres=gpu:unused:7\n";
        let out = set_node_gres(conf, "a", "gpu:7g.40gb:1,gpu:unused:6").unwrap();
        assert!(out.contains("NodeName=a CPUs=2 Gres=gpu:7g.40gb:1,gpu:unused:6 State=UNKNOWN\n"));
        assert!(out.contains("NodeName=ab Gres=gpu:unused:7\n"));
        assert!(set_node_gres(conf, "c", "gpu:unused:7").is_err());
        // A typed line miso did not write is refused, by line number.
        let e = parse("NodeName=a Name=gpu Type=3g.20gb File=/q\n", "a").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
