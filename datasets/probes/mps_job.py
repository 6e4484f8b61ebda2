#!/usr/bin/env python3
"""A small CUDA training-like loop that reports each iteration's seconds to miso's profiler.

Line protocol (see README): connect to MISO_REPORT_HOST:MISO_REPORT_PORT over TCP and write
"<MISO_JOB> <seconds>\\n" per iteration. Usage: python3 mps_job.py <matrix size> <matmuls/iter>
"""
import os, socket, sys, time
import torch

n, k = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection((os.environ["MISO_REPORT_HOST"], int(os.environ["MISO_REPORT_PORT"])))
slot = os.environ["MISO_JOB"]
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
while True:
    t = time.perf_counter()
    for _ in range(k):
        c = a @ b
    torch.cuda.synchronize()
    s.sendall(f"{slot} {time.perf_counter() - t}\n".encode())
