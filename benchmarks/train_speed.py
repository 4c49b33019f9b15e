"""Training throughput of T-BERT vs CM-BERT on real data, in one process (ratios vs T-BERT).

    OMP_NUM_THREADS=1 python benchmarks/train_speed.py --cache runs/ravdess-cache-egemaps \
        --threads 1 --steps 10
    python benchmarks/train_speed.py --text-only ../shared/data/mosi-text --device cuda

For each variant: the same batches (batch 24, the published size), a few warm-up steps, then
``--steps`` optimiser steps timed; prints samples/s, the ratio to the T-BERT reference, the
projected seconds per training epoch, and peak memory (process RSS; CUDA allocator peak).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from cmbert_pipe.model import ModelConfig, build_model  # noqa: E402
from cmbert_pipe.model.inputs import AudioStats, load_tokenizer  # noqa: E402
from cmbert_pipe.train import (  # noqa: E402
    TrainConfig,
    audio_dim_of,
    by_split,
    load_cache_examples,
    load_text_examples,
    make_batches,
    pick_amp,
    pick_device,
)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_variant(model_cfg, batches, device, amp_dtype, steps, warmup):
    torch.manual_seed(0)
    model = build_model(model_cfg).to(device).train()
    tc = TrainConfig()
    groups = model.param_groups(tc.lr_head, tc.lr_encoder, tc.weight_decay)
    opt = torch.optim.AdamW([{k: v for k, v in g.items() if k != "name"} for g in groups])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step(batch):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    for i in range(warmup):
        step(batches[i % len(batches)])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    n = 0
    for i in range(steps):
        b = batches[(warmup + i) % len(batches)]
        step(b)
        n += len(b["labels"])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    cuda_peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    return n / dt, cuda_peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--cache")
    src.add_argument("--text-only")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=24)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    amp_dtype = pick_amp(args.amp, device)
    examples, _ = (load_cache_examples(args.cache) if args.cache
                   else load_text_examples(args.text_only))
    train = by_split(examples)["train"]
    dim = audio_dim_of(examples, 74)
    tok = load_tokenizer("")
    stats = (AudioStats.from_features([e.word_features for e in train], dim)
             if train[0].word_features is not None else AudioStats.identity(dim))
    variants = [("tbert", ModelConfig(model="tbert", audio_dim=dim)),
                ("cmbert (paper scaling, cls mean)", ModelConfig(model="cmbert", audio_dim=dim)),
                ("cmbert (reference scaling)", ModelConfig(model="cmbert", audio_dim=dim,
                                                           scaling="reference"))]
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(train), generator=g).tolist()
    batches = make_batches(train, tok, variants[0][1], stats, args.batch_size, order)
    print(f"device {device}, amp {amp_dtype}, torch threads {torch.get_num_threads()}, "
          f"{len(train)} training examples, batch {args.batch_size}, {args.steps} timed steps")
    print("| variant | samples/s | ratio vs tbert | projected epoch s | peak RSS MiB |"
          " CUDA peak MiB |")
    print("|---|---|---|---|---|---|")
    ref = None
    for name, cfg in variants:
        rate, cuda_peak = time_variant(cfg, batches, device, amp_dtype, args.steps, args.warmup)
        ref = ref or rate
        print(f"| {name} | {rate:.1f} | {rate / ref:.2f} | {len(train) / rate:.1f} | "
              f"{rss_mib():.0f} | {cuda_peak:.0f} |")


if __name__ == "__main__":
    main()
