//! Backends against the placement rules; plans applied with a fault at every step stay valid
//! and converge on reconcile; the NVML backend fails cleanly without a driver.

use super::dryrun::DryRun;
use super::nvml::NvmlControl;
use super::simulated::{Fault, SimulatedGpus};
use super::*;
use crate::gpu::{self, all_layouts, parse_valid_layout};

fn a100() -> &'static GpuModel {
    gpu::gpu("a100-40gb").unwrap()
}

#[test]
fn simulated_gpu_enforces_placement_and_busy_instances() {
    let g = a100();
    let mut s = SimulatedGpus::new(g, 2);
    let four = parse_valid_layout(g, "4g.20gb@0").unwrap().instances()[0];
    let three_bad = gpu::Layout::parse(g, "3g.20gb@0").unwrap().instances()[0];
    s.create(0, four).unwrap();
    let e = s.create(0, three_bad).unwrap_err();
    assert!(e.to_string().contains("overlaps"), "{e}");
    s.spawn(0, 4242, four);
    assert!(s
        .destroy(0, four)
        .unwrap_err()
        .to_string()
        .contains("IN_USE"));
    // apply() refuses to destroy a busy instance before touching anything.
    let diff = LayoutDiff::between(
        g,
        &s.layout(0).unwrap(),
        &parse_valid_layout(g, "7g.40gb@0").unwrap(),
    );
    let r = apply(&mut s, g, 0, &diff);
    assert!(matches!(r.failed, Some((_, ControlError::Busy { .. }))));
    assert_eq!(
        s.layout(0).unwrap(),
        parse_valid_layout(g, "4g.20gb@0").unwrap()
    );
    s.kill(0, 4242);
    assert!(apply(&mut s, g, 0, &diff).failed.is_none());
    assert_eq!(
        s.layout(0).unwrap(),
        parse_valid_layout(g, "7g.40gb@0").unwrap()
    );
    assert_eq!(s.layout(7).unwrap_err(), ControlError::NoSuchGpu(7));
    s.mig_enabled[1] = false;
    assert!(s
        .layout(1)
        .unwrap_err()
        .to_string()
        .contains("nvidia-smi -i 1 -mig 1"));
}

#[test]
fn a_fault_at_any_step_leaves_a_valid_layout_and_reconcile_converges() {
    let g = a100();
    let layouts = all_layouts(g, false);
    let pairs = [(0usize, 17usize), (3, 40), (50, 9), (120, 2)];
    for &(a, b) in &pairs {
        let (from, to) = (&layouts[a % layouts.len()], &layouts[b % layouts.len()]);
        let steps = LayoutDiff::between(g, from, to);
        let n = (steps.destroy.len() + steps.create.len()) as u64;
        for k in 1..=n {
            for fault in [Fault::FailCall(k), Fault::HangCall(k)] {
                let mut s = SimulatedGpus::new(g, 1);
                s.layouts[0] = from.clone();
                s.faults = vec![fault.clone()];
                let r = reconcile(&mut s, g, 0, to).unwrap();
                assert!(r.failed.is_some(), "fault {fault:?} must surface");
                let mid = s.layout(0).unwrap();
                assert!(mid.validate(g).is_ok(), "after {fault:?}: {}", mid.label(g));
                // The agent reconciles again (faults were one-shot): it converges.
                let r = reconcile(&mut s, g, 0, to).unwrap();
                assert!(r.failed.is_none());
                assert_eq!(&s.layout(0).unwrap(), to);
            }
        }
    }
}

#[test]
fn dry_run_prints_the_exact_nvml_calls() {
    let g = a100();
    let from = parse_valid_layout(g, "3g.20gb@0,3g.20gb@4").unwrap();
    let to = parse_valid_layout(g, "3g.20gb@0,2g.10gb@4,1g.5gb@6").unwrap();
    let mut d = DryRun::new(g, vec![from.clone()]);
    let r = apply(&mut d, g, 0, &LayoutDiff::between(g, &from, &to));
    assert!(r.failed.is_none());
    let all = d.calls.join("\n");
    assert!(all.contains("nvmlDeviceGetGpuInstances(device=0, profileId=9) -> the gi whose nvmlGpuInstanceGetInfo placement.start = 4"), "{all}");
    assert!(all.contains("nvmlGpuInstanceDestroy(gi)"));
    assert!(all.contains("nvmlDeviceCreateGpuInstanceWithPlacement(device=0, profileId=14, placement={start=4, size=2})"), "{all}");
    assert!(all.contains("nvmlDeviceCreateGpuInstanceWithPlacement(device=0, profileId=19, placement={start=6, size=1})"), "{all}");
    // Destroys come before creates, and the 2g is created before the 1g.
    let pos = |s: &str| all.find(s).unwrap();
    assert!(pos("nvmlGpuInstanceDestroy") < pos("profileId=14, placement"));
    assert!(pos("profileId=14, placement") < pos("profileId=19, placement"));
    assert_eq!(d.layout(0).unwrap(), to);
}

#[test]
fn nvml_backend_reports_a_missing_driver_cleanly() {
    match NvmlControl::new() {
        Err(e) => assert!(e.to_string().starts_with("NVML not available"), "{e}"),
        // On a machine with a driver, listing must work.
        Ok(mut n) => assert!(n.list_gpus().is_ok()),
    }
}

#[test]
fn mps_daemons_device_ids_and_watched_processes() {
    let g = a100();
    let mut s = SimulatedGpus::new(g, 1);
    let whole = parse_valid_layout(g, "7g.40gb@0").unwrap().instances()[0];
    // No instance yet: it has no MIG device and no daemon can serve it.
    assert!(s.device_id(0, Some(whole)).is_err());
    assert!(s.start_mps(0, Some(whole)).is_err());
    s.create(0, whole).unwrap();
    let id = s.device_id(0, Some(whole)).unwrap();
    assert!(id.starts_with("MIG-sim-0000-"), "{id}");
    let m = s.start_mps(0, Some(whole)).unwrap();
    let env: Vec<(&str, String)> = m.env();
    assert_eq!(env[0], ("CUDA_VISIBLE_DEVICES", id));
    assert!(env[1].1.ends_with("pipe") && env[2].1.ends_with("log"));
    assert!(
        s.start_mps(0, Some(whole)).is_err(),
        "one daemon per instance"
    );
    // An instance an MPS daemon serves is in use.
    assert!(s.destroy(0, whole).unwrap_err().to_string().contains("MPS"));
    s.stop_mps(&m).unwrap();
    assert!(s.stop_mps(&m).is_err(), "stopped already");
    // A process the caller started is busy while it lives and forgotten once it exits.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    s.started(0, whole, child.id());
    assert_eq!(s.processes(0).unwrap().len(), 1);
    let diff = LayoutDiff::between(g, &s.layout(0).unwrap(), &Layout::empty());
    assert!(matches!(
        apply(&mut s, g, 0, &diff).failed,
        Some((_, ControlError::Busy { .. }))
    ));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(s.processes(0).unwrap().is_empty());
    assert!(apply(&mut s, g, 0, &diff).failed.is_none());
}

#[test]
fn dry_run_prints_mps_and_device_lookups() {
    let g = a100();
    let l = parse_valid_layout(g, "4g.20gb@0,3g.20gb@4").unwrap();
    let mut d = DryRun::new(g, vec![l.clone()]);
    let three = l.instances()[1];
    let m = d.start_mps(0, Some(three)).unwrap();
    d.stop_mps(&m).unwrap();
    let all = d.calls.join("\n");
    assert!(
        all.contains("nvmlDeviceGetMigDeviceHandleByIndex(device=0, i)"),
        "{all}"
    );
    assert!(
        all.contains("CUDA_VISIBLE_DEVICES=MIG-sim-0000-")
            && all.contains("nvidia-cuda-mps-control -d"),
        "{all}"
    );
    assert!(all.contains("echo quit |"), "{all}");
}
