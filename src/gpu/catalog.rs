//! The MIG-capable GPU models and their GPU-instance profiles, as data.
//!
//! Sources: the NVIDIA MIG user guide's profile tables (placements, slice counts, NVML ids;
//! summarised in DESIGN.md) and, for the H200, the driver itself: `nvidia-smi mig -lgip/-lgipp`
//! and NVML's `nvmlDeviceGetGpuInstanceProfileInfo` read on an NVIDIA H200 with driver
//! 580.159.04 (`datasets/probes/h200-*`, made by `datasets/probes/nvml_mig_probe.py`).
//! Where no driver reading exists (A100, A30, H100) the instance memory is the nominal size in
//! the profile name (GB × 1024 MiB) and `GpuModel::memory_source` says so.

/// NVML's `NVML_GPU_INSTANCE_PROFILE_*` constants: the "profile index" that
/// `nvmlDeviceGetGpuInstanceProfileInfo` takes. The id it returns (`Profile::nvml_id`) is what
/// `nvidia-smi mig -lgip` prints and what the instance-creation calls take.
pub mod nvml_index {
    pub const SLICE_1: u32 = 0;
    pub const SLICE_2: u32 = 1;
    pub const SLICE_3: u32 = 2;
    pub const SLICE_4: u32 = 3;
    pub const SLICE_7: u32 = 4;
    /// 1 compute slice with all media engines (`+me`).
    pub const SLICE_1_REV1: u32 = 7;
    /// 2 compute slices with media engines (A30 `2g.12gb+me`).
    pub const SLICE_2_REV1: u32 = 8;
    /// 1 compute slice with 2 memory slices (`1g.10gb` on A100-40GB).
    pub const SLICE_1_REV2: u32 = 9;
}

/// One GPU-instance profile of one GPU model.
#[derive(Debug, PartialEq, Eq)]
pub struct Profile {
    /// Name as nvidia-smi prints it, without the `MIG ` prefix: `3g.20gb`.
    pub name: &'static str,
    /// Profile id (`nvidia-smi mig -lgip` ID column; `nvmlGpuInstanceProfileInfo_t::id`).
    pub nvml_id: u32,
    /// `NVML_GPU_INSTANCE_PROFILE_*` constant used to look the profile up.
    pub nvml_profile_index: u32,
    pub compute_slices: u8,
    pub memory_slices: u8,
    /// Instance memory in MiB.
    pub memory_mb: u32,
    /// Streaming multiprocessors in one instance.
    pub sm_count: u32,
    /// Most instances of this profile on one GPU.
    pub max_count: u8,
    /// Allowed placement starts, in memory-slice units; the placement size is `memory_slices`.
    pub starts: &'static [u8],
    /// The standard profiles are the ones MISO partitions with; `+me` and the 1g profile with two
    /// memory slices are non-standard and only used when asked for (`--all-profiles`).
    pub standard: bool,
}

impl Profile {
    /// Placement size in memory-slice units.
    pub fn size(&self) -> u8 {
        self.memory_slices
    }

    /// The profile "kind" shared across GPU models: `1g`, `1g+me`, `1g.2m`, `2g`, `3g`, `4g`,
    /// `7g`. Lets data measured on one GPU (e.g. the A100 MISO tables) be mapped onto another.
    pub fn kind(&self) -> String {
        let mut k = format!("{}g", self.compute_slices);
        if self.name.ends_with("+me") {
            k.push_str("+me");
        } else if self.compute_slices == 1 && self.memory_slices == 2 {
            k.push_str(".2m");
        }
        k
    }
}

/// One MIG-capable GPU model.
#[derive(Debug, PartialEq, Eq)]
pub struct GpuModel {
    /// Canonical name: `A100-SXM4-40GB`.
    pub name: &'static str,
    /// Short name used on the command line: `a100-40gb`.
    pub short: &'static str,
    /// Other accepted names, among them the ones NVML's `nvmlDeviceGetName` reports.
    pub aliases: &'static [&'static str],
    /// Whole-GPU memory in MiB.
    pub memory_mb: u32,
    /// Streaming multiprocessors of the whole GPU (MIG mode off).
    pub sm_count: u32,
    pub compute_slices: u8,
    pub memory_slices: u8,
    pub profiles: &'static [Profile],
    /// Where the instance memory sizes come from.
    pub memory_source: &'static str,
}

impl GpuModel {
    /// The profile with this name (exact, case-insensitive, an optional `MIG ` prefix).
    pub fn profile(&self, name: &str) -> Option<(usize, &'static Profile)> {
        let n = name.trim();
        let n = n
            .strip_prefix("MIG ")
            .or_else(|| n.strip_prefix("mig "))
            .unwrap_or(n);
        self.profiles
            .iter()
            .enumerate()
            .find(|(_, p)| p.name.eq_ignore_ascii_case(n))
    }

    /// The profile with this NVML profile id.
    pub fn profile_by_nvml_id(&self, id: u32) -> Option<(usize, &'static Profile)> {
        self.profiles
            .iter()
            .enumerate()
            .find(|(_, p)| p.nvml_id == id)
    }

    /// Names of all profiles, standard ones first: for error messages.
    pub fn profile_names(&self) -> Vec<&'static str> {
        self.profiles.iter().map(|p| p.name).collect()
    }

    /// Indexes of the profiles considered: the standard ones, or all of them.
    pub fn profile_set(&self, all_profiles: bool) -> Vec<usize> {
        (0..self.profiles.len())
            .filter(|&i| all_profiles || self.profiles[i].standard)
            .collect()
    }
}

#[allow(clippy::too_many_arguments)]
const fn p(
    name: &'static str,
    nvml_id: u32,
    nvml_profile_index: u32,
    compute_slices: u8,
    memory_slices: u8,
    memory_mb: u32,
    sm_count: u32,
    max_count: u8,
    starts: &'static [u8],
    standard: bool,
) -> Profile {
    Profile {
        name,
        nvml_id,
        nvml_profile_index,
        compute_slices,
        memory_slices,
        memory_mb,
        sm_count,
        max_count,
        starts,
        standard,
    }
}

use nvml_index as ix;

const S1: &[u8] = &[0, 1, 2, 3, 4, 5, 6];
const S2: &[u8] = &[0, 2, 4, 6];
const S2G: &[u8] = &[0, 2, 4];
const S3: &[u8] = &[0, 4];
const S0: &[u8] = &[0];
const NOMINAL: &str =
    "nominal: the size in the profile name (GB x 1024 MiB); no driver reading yet";

/// Profiles of the 7-compute / 8-memory-slice GPUs (A100, H100, H200): names, memory of a
/// 1-slice instance and SM counts differ, the placement geometry is shared.
macro_rules! seven_slice_profiles {
    ($g1:literal, $g1me:literal, $g1m2:literal, $g2:literal, $g3:literal, $g4:literal, $g7:literal,
     mem: [$m1:expr, $m1m2:expr, $m2:expr, $m3:expr, $m4:expr, $m7:expr],
     sm: [$s1:expr, $s1m2:expr, $s2:expr, $s3:expr, $s4:expr, $s7:expr]) => {
        &[
            p($g1, 19, ix::SLICE_1, 1, 1, $m1, $s1, 7, S1, true),
            p($g2, 14, ix::SLICE_2, 2, 2, $m2, $s2, 3, S2G, true),
            p($g3, 9, ix::SLICE_3, 3, 4, $m3, $s3, 2, S3, true),
            p($g4, 5, ix::SLICE_4, 4, 4, $m4, $s4, 1, S0, true),
            p($g7, 0, ix::SLICE_7, 7, 8, $m7, $s7, 1, S0, true),
            p($g1me, 20, ix::SLICE_1_REV1, 1, 1, $m1, $s1, 1, S1, false),
            p(
                $g1m2,
                15,
                ix::SLICE_1_REV2,
                1,
                2,
                $m1m2,
                $s1m2,
                4,
                S2,
                false,
            ),
        ]
    };
}

/// Every GPU model miso knows.
pub static GPUS: &[GpuModel] = &[
    GpuModel {
        name: "A100-SXM4-40GB",
        short: "a100-40gb",
        aliases: &[
            "a100",
            "a100-sxm4-40gb",
            "NVIDIA A100-SXM4-40GB",
            "NVIDIA A100-PCIE-40GB",
        ],
        memory_mb: 40960,
        sm_count: 108,
        compute_slices: 7,
        memory_slices: 8,
        profiles: seven_slice_profiles!("1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb",
            "4g.20gb", "7g.40gb",
            mem: [5120, 10240, 10240, 20480, 20480, 40960],
            sm: [14, 14, 28, 42, 56, 98]),
        memory_source: NOMINAL,
    },
    GpuModel {
        name: "A100-SXM4-80GB",
        short: "a100-80gb",
        aliases: &[
            "a100-sxm4-80gb",
            "NVIDIA A100-SXM4-80GB",
            "NVIDIA A100 80GB PCIe",
            "NVIDIA A100-PCIE-80GB",
        ],
        memory_mb: 81920,
        sm_count: 108,
        compute_slices: 7,
        memory_slices: 8,
        profiles: seven_slice_profiles!("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb",
            "4g.40gb", "7g.80gb",
            mem: [10240, 20480, 20480, 40960, 40960, 81920],
            sm: [14, 14, 28, 42, 56, 98]),
        memory_source: NOMINAL,
    },
    GpuModel {
        name: "A30-24GB",
        short: "a30-24gb",
        aliases: &["a30", "NVIDIA A30"],
        memory_mb: 24576,
        sm_count: 56,
        compute_slices: 4,
        memory_slices: 4,
        profiles: &[
            p(
                "1g.6gb",
                14,
                ix::SLICE_1,
                1,
                1,
                6144,
                14,
                4,
                &[0, 1, 2, 3],
                true,
            ),
            p("2g.12gb", 5, ix::SLICE_2, 2, 2, 12288, 28, 2, &[0, 2], true),
            p("4g.24gb", 0, ix::SLICE_4, 4, 4, 24576, 56, 1, S0, true),
            p(
                "1g.6gb+me",
                21,
                ix::SLICE_1_REV1,
                1,
                1,
                6144,
                14,
                1,
                &[0, 1, 2, 3],
                false,
            ),
            p(
                "2g.12gb+me",
                6,
                ix::SLICE_2_REV1,
                2,
                2,
                12288,
                28,
                1,
                &[0, 2],
                false,
            ),
        ],
        memory_source: NOMINAL,
    },
    GpuModel {
        name: "H100-80GB",
        short: "h100-80gb",
        aliases: &[
            "h100",
            "h100-sxm5-80gb",
            "NVIDIA H100 80GB HBM3",
            "NVIDIA H100-SXM5-80GB",
        ],
        memory_mb: 81920,
        sm_count: 132,
        compute_slices: 7,
        memory_slices: 8,
        // SM counts per instance as the H200 driver reports them (same GH100 132-SM chip).
        profiles: seven_slice_profiles!("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb",
            "4g.40gb", "7g.80gb",
            mem: [10240, 20480, 20480, 40960, 40960, 81920],
            sm: [16, 26, 32, 60, 64, 132]),
        memory_source: NOMINAL,
    },
    GpuModel {
        name: "H100-NVL-94GB",
        short: "h100-94gb",
        aliases: &["h100-nvl", "h100-nvl-94gb", "NVIDIA H100 NVL"],
        memory_mb: 96256,
        sm_count: 132,
        compute_slices: 7,
        memory_slices: 8,
        profiles: seven_slice_profiles!("1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.47gb",
            "4g.47gb", "7g.94gb",
            mem: [12288, 24576, 24576, 48128, 48128, 96256],
            sm: [16, 26, 32, 60, 64, 132]),
        memory_source: NOMINAL,
    },
    GpuModel {
        name: "H200-141GB",
        short: "h200-141gb",
        aliases: &["h200", "NVIDIA H200"],
        memory_mb: 143771,
        sm_count: 132,
        compute_slices: 7,
        memory_slices: 8,
        profiles: seven_slice_profiles!("1g.18gb", "1g.18gb+me", "1g.35gb", "2g.35gb", "3g.71gb",
            "4g.71gb", "7g.141gb",
            mem: [16384, 33280, 33280, 71424, 71424, 143360],
            sm: [16, 26, 32, 60, 64, 132]),
        memory_source: "measured: NVML memorySizeMB on an NVIDIA H200, driver 580.159.04",
    },
];

fn normalise(s: &str) -> String {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_prefix("nvidia").unwrap_or(&s);
    s.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

/// Find a GPU model by short name, canonical name, or the name NVML reports.
pub fn find_gpu(name: &str) -> Option<&'static GpuModel> {
    let n = normalise(name);
    GPUS.iter().find(|g| {
        normalise(g.short) == n
            || normalise(g.name) == n
            || g.aliases.iter().any(|a| normalise(a) == n)
    })
}

/// Short names of all GPU models: for error messages.
pub fn gpu_names() -> Vec<&'static str> {
    GPUS.iter().map(|g| g.short).collect()
}
