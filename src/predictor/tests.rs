//! Predictor data, model files and the shipped default model, on the real MISO data.

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use ndarray::Array3;

use super::*;
use crate::perf::MpsMatrix;

fn miso_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/miso-a100")
}

fn ds() -> &'static Dataset {
    static DS: std::sync::OnceLock<Dataset> = std::sync::OnceLock::new();
    DS.get_or_init(|| data::load(&miso_dir()).expect("the MISO data in ../shared loads"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("miso-pred-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_npy(path: &Path, a: &Array3<f64>) {
    let f = std::fs::File::create(path).unwrap();
    ndarray_npy::WriteNpyExt::write_npy(a, f).unwrap();
}

#[test]
fn miso_data_loads_and_every_column_matches_a_workload() {
    let d = ds();
    assert_eq!(d.samples.len(), 12_000);
    assert_eq!(d.mixes(), 2_400);
    // 32 workloads + the dummy, each seen.
    let mut seen = vec![false; d.labels.len()];
    for s in &d.samples {
        for &l in &s.slots {
            seen[l as usize] = true;
        }
    }
    assert_eq!(seen.iter().filter(|x| **x).count(), 33);
    // The 7g/4g/3g targets are the array's values verbatim; 1g/2g come from the CSV.
    let bert8 = d
        .labels
        .iter()
        .position(|l| l.name == "bert_train8")
        .unwrap();
    let s = d
        .samples
        .iter()
        .find(|s| s.slots.contains(&(bert8 as u16)))
        .unwrap();
    let k = s.slots.iter().position(|&l| l == bert8 as u16).unwrap();
    assert_eq!(s.targets[k][0], None, "bert_train8 does not fit 1g.5gb");
    assert_eq!(s.targets[k][1], None, "nor 2g.10gb");
    assert!(s.targets[k][2].is_some());
    // Mixes hold 1..7 real jobs.
    for s in &d.samples {
        let n = s.mps.real.iter().filter(|r| **r).count();
        assert!((1..=7).contains(&n));
    }
}

#[test]
fn splits_keep_each_mix_on_one_side() {
    let d = ds();
    let sp = d.random_split(0.2, 7);
    let val_mixes: std::collections::HashSet<usize> =
        sp.val.iter().map(|&i| d.samples[i].mix).collect();
    assert!(sp
        .train
        .iter()
        .all(|&i| !val_mixes.contains(&d.samples[i].mix)));
    assert_eq!(val_mixes.len(), 480);
    assert_eq!(sp.val.len(), 480 * data::PERMUTATIONS);
    assert_eq!(d.random_split(0.2, 7).val, sp.val, "seeded");
    let f = d.family_split("bert").unwrap();
    let bert: Vec<usize> = (0..d.labels.len())
        .filter(|&l| d.labels[l].family == "bert")
        .collect();
    assert_eq!(bert.len(), 4);
    assert!(f.train.iter().all(|&i| d.samples[i]
        .slots
        .iter()
        .all(|l| !bert.contains(&(*l as usize)))));
    assert!(d
        .family_split("llama")
        .unwrap_err()
        .to_string()
        .contains("allowed: resnet"));
}

#[test]
fn unmatched_target_column_is_an_error() {
    let (x, y) = data::read_arrays(
        &miso_dir().join("mps_features.npy"),
        Some(&miso_dir().join("mig_targets.npy")),
    )
    .unwrap();
    let (x, mut y) = (
        x.slice(ndarray::s![..10, .., ..]).to_owned(),
        y.unwrap().slice(ndarray::s![..10, .., ..]).to_owned(),
    );
    y[[3, 0, 2]] = 0.123;
    let e = data::from_arrays(&x, &y, "t", 0).unwrap_err().to_string();
    assert!(
        e.contains("sample 3, slot 2") && e.contains("matches no workload"),
        "{e}"
    );
}

#[test]
fn bad_arrays_are_rejected_with_the_reason() {
    let dir = tmp("bad");
    let f = dir.join("f.npy");
    write_npy(&f, &Array3::<f64>::zeros((4, 3, 6)));
    let e = data::read_arrays(&f, None).unwrap_err().to_string();
    assert!(
        e.contains("shape [4, 3, 6]") && e.contains("(N, 3, 7)"),
        "{e}"
    );
    let mut a = Array3::<f64>::from_elem((2, 3, 7), 0.5);
    a[[1, 2, 3]] = f64::NAN;
    write_npy(&f, &a);
    let e = data::read_arrays(&f, None).unwrap_err().to_string();
    assert!(e.contains("not finite"), "{e}");
    std::fs::write(&f, b"not an npy").unwrap();
    assert!(data::read_arrays(&f, None)
        .unwrap_err()
        .to_string()
        .contains("float64"));
    assert!(data::load(&dir.join("missing"))
        .unwrap_err()
        .to_string()
        .contains("no such file"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sample_format_round_trip() {
    let d = ds();
    let small = Dataset {
        samples: d.samples[..50].to_vec(),
        ..d.clone()
    };
    let dir = tmp("samples");
    let f = dir.join("s.jsonl");
    let lines: Vec<String> = small
        .to_records()
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    std::fs::write(&f, lines.join("\n")).unwrap();
    let back = data::load(&f).unwrap();
    assert_eq!(back.samples.len(), 50);
    for (a, b) in small.samples.iter().zip(&back.samples) {
        assert_eq!(a.mps.real, b.mps.real);
        for s in 0..7 {
            for l in 0..3 {
                assert!((a.mps.values[l][s] - b.mps.values[l][s]).abs() < 1e-12);
            }
            for k in 0..5 {
                match (a.targets[s][k], b.targets[s][k]) {
                    (Some(x), Some(y)) => assert!((x - y).abs() < 1e-9),
                    (x, y) => assert_eq!(x, y),
                }
            }
        }
    }
    std::fs::write(&f, "{\"format\":\"miso-mps-sample/1\",\"gpu\":\"x\",\"mix\":0,\"slots\":[{\"label\":\"a\",\"mps\":[1,-2,3]}]}\n").unwrap();
    let e = data::load(&f).unwrap_err().to_string();
    assert!(e.contains(":1: slots[0].mps[1]"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn linear_baseline_trains_and_round_trips() {
    let d = ds();
    let split = d.random_split(0.2, 3);
    let p = train(
        d,
        &split,
        &TrainConfig::new(Arch::Linear),
        &ProgressBar::hidden(),
    )
    .unwrap();
    let m = &p.meta.metrics;
    assert!(m.mae > 0.0 && m.mae < 0.035, "linear MAE {}", m.mae);
    let dq = m.decision.as_ref().unwrap();
    assert_eq!(dq.mixes + dq.infeasible_mixes, 480);
    assert!(dq.mixes > 300);
    let dir = tmp("linear");
    p.save(&dir).unwrap();
    let q = Predictor::load(&dir).unwrap();
    let mix = d.samples[split.val[0]].mps.clone();
    assert_eq!(
        p.predict_targets(std::slice::from_ref(&mix)),
        q.predict_targets(std::slice::from_ref(&mix))
    );
    // A model of another feature version is refused.
    let j = std::fs::read_to_string(dir.join("model.json")).unwrap();
    std::fs::write(
        dir.join("model.json"),
        j.replace("\"feature_version\": 1", "\"feature_version\": 99"),
    )
    .unwrap();
    let e = Predictor::load(&dir).err().unwrap().to_string();
    assert!(
        e.contains("feature version 99") && e.contains("retrain"),
        "{e}"
    );
    assert!(Predictor::load(&dir.join("nope"))
        .err()
        .unwrap()
        .to_string()
        .contains("miso train"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mlp_weights_round_trip() {
    let d = ds();
    let split = d.random_split(0.2, 5);
    let mut cfg = TrainConfig::new(Arch::Mlp);
    cfg.epochs = Some(2);
    cfg.ensemble = 2;
    cfg.hidden = vec![32];
    let p = train(d, &split, &cfg, &ProgressBar::hidden()).unwrap();
    let dir = tmp("mlp");
    p.save(&dir).unwrap();
    let q = Predictor::load(&dir).unwrap();
    let ms: Vec<MpsMatrix> = split.val[..20]
        .iter()
        .map(|&i| d.samples[i].mps.clone())
        .collect();
    assert_eq!(p.predict_targets(&ms), q.predict_targets(&ms));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shipped_default_model_meets_the_target_on_held_out_mixes() {
    // models/default was made by training/default.sh on a seeded split by mix; re-make that
    // split and score it: the figure in README.md and the bar (MAE <= 0.015).
    let p = Predictor::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_MODEL)).unwrap();
    let d = ds();
    assert_eq!(
        p.meta.data_fingerprint, d.fingerprint,
        "trained on this data"
    );
    let split = d.random_split(0.2, p.meta.seed);
    assert_eq!(split.name, p.meta.metrics.split);
    let m = evaluate(&p, d, &split);
    assert!(m.mae <= 0.015, "default model MAE {}", m.mae);
    assert!(
        (m.mae - p.meta.metrics.mae).abs() < 1e-9,
        "model.json records what it scores"
    );
    // The library API: speeds relative to the whole GPU for the real jobs of a mix.
    let mix = &d.samples[split.val[0]];
    let st = p.predict(&mix.mps);
    for s in 0..7 {
        assert_eq!(st[s].is_some(), mix.mps.real[s]);
        if let Some(perf) = &st[s] {
            assert!((perf.speed[4].unwrap() - 1.0).abs() < 1e-9);
        }
    }
}

#[test]
fn built_in_model_is_the_shipped_folder() {
    // The binary carries models/default: same metadata, same predictions; `default` resolves to
    // it when a models folder has none, and a missing other name is an error naming the path.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let disk = Predictor::load(&root.join(DEFAULT_MODEL)).unwrap();
    let built = Predictor::builtin().unwrap();
    assert_eq!(
        serde_json::to_string(&disk.meta).unwrap(),
        serde_json::to_string(&built.meta).unwrap()
    );
    let d = ds();
    let ms: Vec<_> = d.samples.iter().take(50).map(|s| s.mps.clone()).collect();
    assert_eq!(disk.predict_targets(&ms), built.predict_targets(&ms));
    let empty = std::env::temp_dir().join(format!("miso-no-models-{}", std::process::id()));
    let named = Predictor::load_named(&empty, "default").unwrap();
    assert_eq!(named.meta.name, built.meta.name);
    let e = Predictor::load_named(&empty, "other")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("miso-no-models") && e.contains("model.json"),
        "{e}"
    );
}

#[test]
fn the_estimate_setting_chooses_what_predict_answers() {
    // The built-in model is calibrated; `predict` answers with its estimate setting, and the
    // expected slowdown differs from the point prediction where the mixture is unsure.
    let mut p = Predictor::builtin().unwrap();
    assert!(
        p.meta.intervals.is_some(),
        "the shipped model carries its intervals"
    );
    let d = ds();
    let ms: Vec<_> = d.samples.iter().take(200).map(|s| s.mps.clone()).collect();
    let point: Vec<_> = ms.iter().map(|m| p.predict(m)).collect();
    p.estimate = crate::predictor::Estimate::Expected;
    let mut differ = 0;
    for (m, pt) in ms.iter().zip(&point) {
        let e = p.predict(m);
        assert_eq!(e, p.predict_for(m, crate::predictor::Estimate::Expected));
        for (a, b) in e.iter().zip(pt) {
            assert_eq!(a.is_some(), b.is_some(), "the same slots are jobs");
            if a != b {
                differ += 1;
            }
        }
    }
    assert!(differ > 0, "the expected slowdown is not the point");
    // Worst case: never faster than the point on any kind but 7g.
    p.estimate = crate::predictor::Estimate::Worst;
    for (m, pt) in ms.iter().zip(&point) {
        for (w, b) in p.predict(m).iter().zip(pt) {
            if let (Some(w), Some(b)) = (w, b) {
                for k in 0..crate::perf::KINDS - 1 {
                    if let (Some(x), Some(y)) = (w.speed[k], b.speed[k]) {
                        assert!(x <= y + 1e-9, "worst {x} > point {y}");
                    }
                }
            }
        }
    }
}
