//! Geometry against the NVIDIA tables, enumeration counts, diff and mig-parted round trips.

use super::*;
use proptest::prelude::*;

fn a100() -> &'static GpuModel {
    gpu("a100-40gb").expect("a100 is in the catalog")
}

fn multiset(gpu: &GpuModel, l: &Layout) -> Vec<u8> {
    l.counts(gpu)
}

#[test]
fn names_resolve_short_canonical_and_nvml() {
    for (name, want) in [
        ("a100-40gb", "A100-SXM4-40GB"),
        ("NVIDIA A100-SXM4-40GB", "A100-SXM4-40GB"),
        ("A100-SXM4-80GB", "A100-SXM4-80GB"),
        ("NVIDIA A100 80GB PCIe", "A100-SXM4-80GB"),
        ("a30-24gb", "A30-24GB"),
        ("NVIDIA A30", "A30-24GB"),
        ("NVIDIA H100 80GB HBM3", "H100-80GB"),
        ("h100-94gb", "H100-NVL-94GB"),
        ("NVIDIA H100 NVL", "H100-NVL-94GB"),
        ("NVIDIA H200", "H200-141GB"),
        ("h200-141gb", "H200-141GB"),
    ] {
        assert_eq!(gpu(name).map(|g| g.name), Ok(want), "{name}");
    }
    let e = gpu("v100").unwrap_err().to_string();
    assert!(
        e.contains("unknown GPU `v100`") && e.contains("a100-40gb") && e.contains("h200-141gb"),
        "{e}"
    );
}

#[test]
fn a100_40gb_profiles_match_the_nvidia_table() {
    let g = a100();
    // name, NVML id, compute, memory, max, starts
    let want: [(&str, u32, u8, u8, u8, &[u8]); 7] = [
        ("1g.5gb", 19, 1, 1, 7, &[0, 1, 2, 3, 4, 5, 6]),
        ("1g.5gb+me", 20, 1, 1, 1, &[0, 1, 2, 3, 4, 5, 6]),
        ("1g.10gb", 15, 1, 2, 4, &[0, 2, 4, 6]),
        ("2g.10gb", 14, 2, 2, 3, &[0, 2, 4]),
        ("3g.20gb", 9, 3, 4, 2, &[0, 4]),
        ("4g.20gb", 5, 4, 4, 1, &[0]),
        ("7g.40gb", 0, 7, 8, 1, &[0]),
    ];
    for (name, id, c, m, max, starts) in want {
        let (_, p) = g.profile(name).expect(name);
        assert_eq!(
            (
                p.nvml_id,
                p.compute_slices,
                p.memory_slices,
                p.max_count,
                p.starts
            ),
            (id, c, m, max, starts),
            "{name}"
        );
        assert_eq!(
            p.standard,
            !name.ends_with("+me") && name != "1g.10gb",
            "{name}"
        );
    }
    assert_eq!(
        g.profile("MIG 3g.20gb").map(|(_, p)| p.name),
        Some("3g.20gb")
    );
    assert_eq!(
        g.profile_by_nvml_id(5).map(|(_, p)| p.name),
        Some("4g.20gb")
    );
}

#[test]
fn h200_profiles_match_the_driver_reading() {
    // datasets/probes/h200-nvml-mig-profiles.json (NVML on an NVIDIA H200, driver 580.159.04).
    let g = gpu("h200").unwrap();
    for (name, id, idx, mem, sm, max) in [
        ("1g.18gb", 19, 0, 16384, 16, 7),
        ("1g.18gb+me", 20, 7, 16384, 16, 1),
        ("1g.35gb", 15, 9, 33280, 26, 4),
        ("2g.35gb", 14, 1, 33280, 32, 3),
        ("3g.71gb", 9, 2, 71424, 60, 2),
        ("4g.71gb", 5, 3, 71424, 64, 1),
        ("7g.141gb", 0, 4, 143360, 132, 1),
    ] {
        let (_, p) = g.profile(name).expect(name);
        assert_eq!(
            (
                p.nvml_id,
                p.nvml_profile_index,
                p.memory_mb,
                p.sm_count,
                p.max_count
            ),
            (id, idx, mem, sm, max),
            "{name}"
        );
    }
}

#[test]
fn a100_40gb_has_19_maximal_layouts_in_14_multisets() {
    let g = a100();
    let m = maximal(g, &g.profile_set(false));
    assert_eq!(
        m.len(),
        19,
        "{:?}",
        m.iter().map(|l| l.label(g)).collect::<Vec<_>>()
    );
    let mut sets: Vec<Vec<u8>> = m.iter().map(|l| multiset(g, l)).collect();
    sets.sort();
    sets.dedup();
    assert_eq!(sets.len(), 14);
    let four_three = parse_valid_layout(g, "4g.20gb@0,3g.20gb@4").unwrap();
    assert!(
        m.contains(&four_three),
        "4g+3g, which the original MISO list misses"
    );
}

#[test]
fn a30_has_5_maximal_layouts() {
    let g = gpu("a30-24gb").unwrap();
    let m = maximal(g, &g.profile_set(false));
    let labels: Vec<String> = m.iter().map(|l| l.label(g)).collect();
    assert_eq!(labels.len(), 5, "{labels:?}");
    for want in [
        "4g.24gb@0",
        "2g.12gb@0,2g.12gb@2",
        "1g.6gb@0,1g.6gb@1,1g.6gb@2,1g.6gb@3",
    ] {
        assert!(labels.contains(&want.to_string()), "{want} in {labels:?}");
    }
}

#[test]
fn hopper_shares_the_a100_geometry() {
    let a = a100();
    let base: Vec<Vec<(u8, u8)>> = maximal(a, &a.profile_set(false))
        .iter()
        .map(|l| {
            l.instances()
                .iter()
                .map(|i| (a.profiles[i.profile as usize].compute_slices, i.start))
                .collect()
        })
        .collect();
    for name in ["a100-80gb", "h100-80gb", "h100-94gb", "h200-141gb"] {
        let g = gpu(name).unwrap();
        let m: Vec<Vec<(u8, u8)>> = maximal(g, &g.profile_set(false))
            .iter()
            .map(|l| {
                l.instances()
                    .iter()
                    .map(|i| (g.profiles[i.profile as usize].compute_slices, i.start))
                    .collect()
            })
            .collect();
        assert_eq!(m, base, "{name}");
    }
    let h = gpu("h100-80gb").unwrap();
    assert_eq!(
        parse_valid_layout(h, "3g.40gb@0,3g.40gb@4").map(|l| l.len()),
        Ok(2)
    );
}

#[test]
fn validation_names_the_instance_and_the_rule() {
    let g = a100();
    let err = |s: &str| parse_valid_layout(g, s).unwrap_err().to_string();
    let e = err("3g.20gb@2");
    assert!(
        e.contains("3g.20gb@2") && e.contains("allowed starts: 0, 4"),
        "{e}"
    );
    let e = err("4g.20gb@0,2g.10gb@2");
    assert!(e.contains("2g.10gb@2 overlaps 4g.20gb@0"), "{e}");
    let e = err("9g.80gb@0");
    assert!(
        e.contains("unknown profile `9g.80gb`") && e.contains("1g.5gb, 2g.10gb"),
        "{e}"
    );
    let e = err("1g.10gb@0,1g.10gb@2,1g.10gb@4,1g.10gb@6,1g.5gb+me@1");
    assert!(e.contains("overlaps"), "{e}");
    let e = err("1g.5gb+me@0,1g.5gb+me@1");
    assert!(e.contains("at most 1"), "{e}");
    let e = err("3g.20gb");
    assert!(e.contains("<profile>@<start>"), "{e}");
    let e = err("3g.20gb@x");
    assert!(e.contains("start `x`"), "{e}");
    assert_eq!(parse_valid_layout(g, "empty"), Ok(Layout::empty()));
}

#[test]
fn compute_budget_is_enforced() {
    // A30: 4 compute slices; 1g+me shares them with the plain 1g profiles.
    let g = gpu("a30").unwrap();
    assert!(parse_valid_layout(g, "2g.12gb@0,1g.6gb@2,1g.6gb+me@3").is_ok());
    let l = Layout::new(vec![
        Instance::new(0, 0),
        Instance::new(0, 1),
        Instance::new(0, 2),
        Instance::new(0, 3),
    ]);
    assert!(l.validate(g).is_ok());
}

#[test]
fn diff_keeps_untouched_instances_and_creates_large_first() {
    let g = a100();
    let from = parse_valid_layout(g, "3g.20gb@0,2g.10gb@4,1g.5gb@6").unwrap();
    let to = parse_valid_layout(g, "1g.5gb@0,1g.5gb@1,2g.10gb@2,2g.10gb@4,1g.5gb@6").unwrap();
    let d = LayoutDiff::between(g, &from, &to);
    let lab = |xs: &[Instance]| xs.iter().map(|i| i.label(g)).collect::<Vec<_>>();
    assert_eq!(lab(&d.keep), ["2g.10gb@4", "1g.5gb@6"]);
    assert_eq!(lab(&d.destroy), ["3g.20gb@0"]);
    assert_eq!(lab(&d.create), ["2g.10gb@2", "1g.5gb@0", "1g.5gb@1"]);
    assert!(LayoutDiff::between(g, &to, &to).is_noop());
}

#[test]
fn mig_parted_round_trip() {
    let g = a100();
    let layouts = vec![
        parse_valid_layout(g, "4g.20gb@0,3g.20gb@4").unwrap(),
        parse_valid_layout(g, "3g.20gb@0,2g.10gb@4,1g.5gb@6").unwrap(),
    ];
    let yaml = migparted::export(g, &layouts, "miso");
    assert!(
        yaml.contains("version: v1")
            && yaml.contains("mig-configs:")
            && yaml.contains("mig-enabled: true")
            && yaml.contains("mig-devices:"),
        "{yaml}"
    );
    let back = migparted::import(g, &yaml, None).unwrap();
    assert_eq!(back.len(), 2);
    for (i, (b, l)) in back.iter().zip(&layouts).enumerate() {
        assert_eq!(b.devices, migparted::DeviceSel::List(vec![i as u32]));
        assert_eq!(&b.layout, l);
    }
    let one = migparted::export(g, &layouts[..1], "x");
    assert_eq!(
        migparted::import(g, &one, Some("x")).unwrap()[0].devices,
        migparted::DeviceSel::All
    );
}

#[test]
fn mig_parted_import_rejects_bad_configs() {
    let g = a100();
    let e = |y: &str| migparted::import(g, y, None).unwrap_err().to_string();
    assert!(e("version: v2\nmig-configs: {}\n").contains("version `v2`"));
    let s = e("version: v1\nmig-configs:\n  a:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {\"5g.20gb\": 1}\n");
    assert!(s.contains("unknown profile `5g.20gb`"), "{s}");
    let s = e("version: v1\nmig-configs:\n  a:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {\"4g.20gb\": 1, \"3g.20gb\": 2}\n");
    assert!(s.contains("do not fit"), "{s}");
    let s = e("version: v1\nmig-configs:\n  a: []\n  b: []\n");
    assert!(s.contains("--config"), "{s}");
    let ok = migparted::import(
        g,
        "version: v1\nmig-configs:\n  off:\n    - devices: all\n      mig-enabled: false\n",
        None,
    )
    .unwrap();
    assert!(!ok[0].mig_enabled && ok[0].layout.is_empty());
}

fn any_gpu() -> impl Strategy<Value = &'static GpuModel> {
    (0..GPUS.len()).prop_map(|i| &GPUS[i])
}

proptest! {
    #[test]
    fn every_enumerated_layout_validates(g in any_gpu(), all in any::<bool>()) {
        let set = g.profile_set(all);
        for l in all_layouts(g, all) {
            prop_assert!(l.validate(g).is_ok(), "{}", l.label(g));
            prop_assert!(l.instances().iter().all(|i| set.contains(&(i.profile as usize))));
        }
    }

    #[test]
    fn every_maximal_layout_admits_nothing_more(g in any_gpu(), all in any::<bool>()) {
        let set = g.profile_set(all);
        for l in maximal(g, &set) {
            for &pi in &set {
                for s in 0..g.memory_slices {
                    let mut v = l.instances().to_vec();
                    v.push(Instance::new(pi, s));
                    prop_assert!(Layout::new(v).validate(g).is_err(), "{} + {}@{}", l.label(g), g.profiles[pi].name, s);
                }
            }
        }
    }

    #[test]
    fn random_instance_sets_validate_iff_enumerated(g in any_gpu(), picks in proptest::collection::vec((0usize..7, 0u8..8), 0..6)) {
        let insts: Vec<Instance> = picks.iter().map(|&(p, s)| Instance::new(p % g.profiles.len(), s % g.memory_slices)).collect();
        let l = Layout::new(insts);
        let enumerated = l.is_empty() || all_layouts(g, true).contains(&l);
        prop_assert_eq!(l.validate(g).is_ok(), enumerated, "{}", l.label(g));
    }

    #[test]
    fn diff_applied_gives_the_target(g in any_gpu(), a in 0usize..1000, b in 0usize..1000) {
        let all = all_layouts(g, false);
        let (from, to) = (&all[a % all.len()], &all[b % all.len()]);
        let d = LayoutDiff::between(g, from, to);
        let mut cur: Vec<Instance> = d.keep.clone();
        prop_assert!(Layout::new(cur.clone()).validate(g).is_ok());
        for c in &d.create {
            cur.push(*c);
            prop_assert!(Layout::new(cur.clone()).validate(g).is_ok());
        }
        prop_assert_eq!(&Layout::new(cur), to);
        prop_assert_eq!(d.keep.len() + d.destroy.len(), from.len());
    }
}

#[test]
fn cluster_engine_exports() {
    let g = a100();
    let l = parse_valid_layout(g, "3g.20gb@0,2g.10gb@4,1g.5gb@6").unwrap();
    let s = migparted::slurm(g, &[l.clone(), l.clone()]);
    assert!(
        s.contains("AutoDetect=nvml")
            && s.contains("Gres=gpu:1g.5gb:2,gpu:2g.10gb:2,gpu:3g.20gb:2"),
        "{s}"
    );
    let k = migparted::gpu_operator(g, &[l], "miso-a");
    assert!(
        k.contains("kind: ConfigMap")
            && k.contains("nvidia.com/mig.config=miso-a")
            && k.contains("    version: v1"),
        "{k}"
    );
    // The embedded config is the mig-parted export, indented: it parses back.
    let inner: String = k
        .lines()
        .skip_while(|l| !l.contains("config.yaml"))
        .skip(1)
        .map(|l| format!("{}\n", &l[4..]))
        .collect();
    assert_eq!(
        migparted::import(g, &inner, None).unwrap()[0].layout.len(),
        3
    );
}

#[test]
fn one_instance_parses_or_names_the_problem() {
    let g = super::gpu("a100-40gb").unwrap();
    let i = Instance::parse(g, " 3g.20gb@4 ").unwrap();
    assert_eq!(i.label(g), "3g.20gb@4");
    for bad in ["3g.20gb@0,3g.20gb@4", "empty", "9g.99gb@0", "3g.20gb"] {
        assert!(Instance::parse(g, bad).is_err(), "{bad}");
    }
    let e = Instance::parse(g, "1g.5gb@0,1g.5gb@1")
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected one instance"), "{e}");
}
