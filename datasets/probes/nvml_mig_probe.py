#!/usr/bin/env python3
"""Read-only probe of a GPU's MIG profile table through NVML (nvidia-ml-py).

Changes nothing: no MIG mode switch, no instance created. Prints, for every
GPU-instance profile constant NVML knows, the profile info the driver reports
(id, slice count, instance count, memory) and the possible placements, so the
geometry tables in src/gpu can be checked against a real driver.
Run: python3 datasets/probes/nvml_mig_probe.py
"""
import json
import pynvml as n

n.nvmlInit()
out = {"driver": n.nvmlSystemGetDriverVersion(), "nvml": n.nvmlSystemGetNVMLVersion(), "gpus": []}
for i in range(n.nvmlDeviceGetCount()):
    h = n.nvmlDeviceGetHandleByIndex(i)
    g = {"index": i, "name": n.nvmlDeviceGetName(h)}
    mem = n.nvmlDeviceGetMemoryInfo(h)
    g["memory_total_mib"] = mem.total // (1024 * 1024)
    try:
        cur, pend = n.nvmlDeviceGetMigMode(h)
        g["mig_mode"] = {"current": cur, "pending": pend}
    except n.NVMLError as e:
        g["mig_mode"] = str(e)
    try:
        g["sm_count"] = n.nvmlDeviceGetAttributes(h).multiprocessorCount
    except n.NVMLError as e:
        g["sm_count"] = str(e)
    profs = []
    for idx in range(0, 20):
        p = {"nvml_profile_index": idx}
        try:
            info = n.nvmlDeviceGetGpuInstanceProfileInfo(h, idx)
        except n.NVMLError as e:
            p["error"] = str(e)
            profs.append(p)
            continue
        for f in ("id", "isP2pSupported", "sliceCount", "instanceCount", "multiprocessorCount",
                  "copyEngineCount", "decoderCount", "encoderCount", "jpegCount", "ofaCount",
                  "memorySizeMB"):
            p[f] = getattr(info, f, None)
        try:
            pls = n.nvmlDeviceGetGpuInstancePossiblePlacements(h, info.id)
            p["placements"] = [[pl.start, pl.size] for pl in pls]
        except Exception as e:  # noqa: BLE001 - report whatever the driver says
            p["placements"] = str(e)
        try:
            vi = n.nvmlDeviceGetGpuInstanceProfileInfoV(h, idx)
            p["name"] = vi.name.decode() if isinstance(vi.name, bytes) else vi.name
        except Exception as e:  # noqa: BLE001
            p["name"] = str(e)
        profs.append(p)
    g["gpu_instance_profiles"] = profs
    out["gpus"].append(g)
print(json.dumps(out, indent=1))
