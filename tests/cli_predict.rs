//! `miso predict` as a user runs it: which slots are real jobs must be said.

use std::process::Command;

#[test]
fn predict_needs_to_know_which_slots_are_real_jobs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let x: ndarray::Array3<f64> =
        ndarray_npy::read_npy(root.join("../shared/datasets/miso-a100/mps_features.npy")).unwrap();
    let dir = std::env::temp_dir().join(format!("miso-predict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("f.npy");
    ndarray_npy::write_npy(&f, &x.slice(ndarray::s![0..10, .., ..]).to_owned()).unwrap();
    let out = dir.join("p.npy");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_miso"))
            .args(["predict", "--features"])
            .arg(&f)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    // Neither --dummy-from, --jobs nor --all-real: refused, saying how to tell.
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("--jobs N") && e.contains("--all-real"), "{e}");
    assert!(!out.exists(), "nothing written");
    // Two ways at once: refused.
    assert_eq!(run(&["--jobs", "2", "--all-real"]).status.code(), Some(2));
    assert_eq!(run(&["--jobs", "8"]).status.code(), Some(2));
    // The first two slots real: real slots get latencies, fillers none.
    let o = run(&["--jobs", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p: ndarray::Array3<f64> = ndarray_npy::read_npy(&out).unwrap();
    assert_eq!(p.shape(), &[10, 3, 7]);
    assert!(p[[0, 0, 0]].is_finite() && p[[0, 0, 1]].is_finite());
    let o = run(&["--all-real"]);
    assert!(o.status.success());
    std::fs::remove_dir_all(&dir).ok();
}
