# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Capacity planning for 100 M, 1 B and 5 B templates
#
# `docs/capacity.md` states how much memory, how many shards and how much compute a gallery
# of 100 M, 1 B and 5 B templates needs, and how long a nightly batch of 1 M probes against
# 1 B takes. This notebook computes those figures from the code that makes the decisions
# (`dedup/gallery/recipes.py` for the recipe, shards and bytes; `dedup/matching/cost_model.py`
# for search time; `dedup/gallery/segments.py` for compaction) and asserts that they equal the
# document's, so a change to either fails CI until the other follows.
#
# Two kinds of numbers go in. **Measured** rates come from `docs/benchmarks.md` (2 cores,
# x86_64). **Assumptions** are marked as such wherever they enter; change them here to plan
# for other hardware. Nothing is written to disk.

# %%
import io
import re
from pathlib import Path

import pandas as pd
from IPython.display import Image, display
from matplotlib.figure import Figure

import dedup
from dedup.gallery.recipes import (
    FAST_SCAN_BLOCK,
    SHARD_TEMPLATES,
    candidate_factories,
    default_factory,
    default_shards,
    parse_factory,
)
from dedup.gallery.segments import MAX_SEGMENTS, plan_merges
from dedup.matching.cost_model import predict_seconds
from dedup.settings import SearchSettings

DIM = 128  # the default model's templates
GALLERIES = {"100 M": 100_000_000, "1 B": 1_000_000_000, "5 B": 5_000_000_000}
CAPACITY_DOC = Path(dedup.__file__).resolve().parents[1] / "docs" / "capacity.md"

# %% [markdown]
# ## Memory and shards
#
# For each size, the code's own choice: `default_shards` (one shard per 100 M templates),
# `default_factory` (the recipe a gallery gets without a measurement: residual fast-scan PQ,
# 32-byte codes, `nlist` from `default_nlist`), and from the parsed recipe the bytes of an
# inverted list (`IndexSpec.list_bytes`: codes in whole blocks of 32, an 8-byte id each).
#
# *Assumption*: list lengths fall evenly over the 32 slots of a list's last block, so each
# list pads half a block, 16 codes (`docs/capacity.md`: "about 16 codes a list and shard").
# The full vectors (fp16, for exact re-scoring and the exact sweep) are on local disk,
# memory-mapped.

# %%
PADDING = FAST_SCAN_BLOCK // 2  # codes a list pads, on average (an assumption)


def list_bytes_per_template(factory: str, entries: float) -> float:
    """Bytes a template costs in lists of ``entries`` codes on average, padding included."""
    spec = parse_factory(factory, DIM)
    # the padding as list_bytes counts it, for a list whose last block is half full
    half_full = 10 * FAST_SCAN_BLOCK + PADDING
    padded = spec.list_bytes(half_full) - half_full * spec.bytes_per_template
    assert padded == PADDING * spec.code_bytes
    return spec.bytes_per_template + padded / entries


plan = []
for name, n in GALLERIES.items():
    shards = default_shards(n)
    factory = default_factory(n, DIM, shards)
    spec = parse_factory(factory, DIM)
    entries = n / shards / spec.nlist
    per_template = list_bytes_per_template(factory, entries)
    plan.append(
        {
            "gallery": name,
            "templates": n,
            "shards": shards,
            "recipe": factory,
            "entries per list and shard": entries,
            "list bytes per template": per_template,
            "lists (RAM, GB)": n * per_template / 1e9,
            "coarse quantizer per shard (MB)": spec.nlist * DIM * 4 / 1e6,
            "full vectors (disk, GB)": n * DIM * 2 / 1e9,
        }
    )
memory = pd.DataFrame(plan).set_index("gallery")
display(memory)
assert (memory["shards"] == [1, 10, 50]).all()
assert (memory["templates"] / memory["shards"] <= SHARD_TEMPLATES).all()
assert memory["entries per list and shard"].min() >= 80  # default_nlist's floor
assert (memory["list bytes per template"] < 48).all()  # the budget of a large shard
# at 1 B only the codes of 32 to 40 bytes a template fit that budget: no SQ8, no Flat
fitting = candidate_factories(GALLERIES["1 B"], DIM, default_shards(GALLERIES["1 B"]))
print("recipes within the budget at 1 B:", ", ".join(fitting))
assert not any(f.endswith(("SQ8", "Flat")) for f in fitting)

# %% [markdown]
# The same table as `docs/capacity.md` writes it, read from the document and compared cell by
# cell: the shard counts and recipes exactly, every number to the rounding the document
# shows (43 GB holds anything from 42.5 to 43.5).


# %%
def documented_rows() -> dict[str, list[str]]:
    text = CAPACITY_DOC.read_text(encoding="utf-8")
    section = text.split("## Memory and shards", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in GALLERIES:
            rows[cells[0]] = cells
    return rows


def agrees(shown: str, value: float) -> bool:
    """True where ``value`` rounds to the number ``shown`` ("4.1", "1.28", "229")."""
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return abs(float(shown) - value) <= 0.5 * 10**-decimals + 1e-12


def number(text: str, unit: str) -> str:
    found = re.search(rf"([\d.]+) {unit}", text)
    assert found, (text, unit)
    return found.group(1)


documented = documented_rows()
assert set(documented) == set(GALLERIES), documented
for name, cells in documented.items():
    row = memory.loc[name]
    _, shards, recipe, entries, lists, vectors = cells
    assert int(shards) == row["shards"] and recipe == row["recipe"], (name, cells)
    assert agrees(entries, row["entries per list and shard"]), (name, entries)
    assert agrees(number(lists, "GB"), row["lists (RAM, GB)"]), (name, lists)
    assert agrees(number(lists, "B each"), row["list bytes per template"]), (name, lists)
    disk = row["full vectors (disk, GB)"]
    shown = number(vectors, "TB") if "TB" in vectors else number(vectors, "GB")
    assert agrees(shown, disk / 1000 if "TB" in vectors else disk), (name, vectors)
print(f"the table of {CAPACITY_DOC.name} matches the code for", ", ".join(documented))
one_b = memory.loc["1 B"]
assert agrees("259", one_b["coarse quantizer per shard (MB)"])  # "505,856 x 128 x 4 = 259 MB"

# %% [markdown]
# ## One nightly batch: 1 M probes against 1 B templates
#
# `cost_model.predict_seconds` is what chooses a batch's engine; here it is fed the rates of
# `docs/capacity.md`. Its results are seconds on the hardware the rates were measured on, so a
# rate measured on 2 cores gives seconds of 2 cores.
#
# - **Exact sweep on CPUs**: *measured* 168 GFLOP/s on 2 cores at 10 M. *Assumption*: the rate
#   per core holds on larger nodes (10 nodes of 64 cores below).
# - **IVF-PQ on CPUs**: *measured* 1.4 ns a code scanned and a fixed 0.22 ms a probe (the
#   cost model's defaults). *Extrapolated, not measured*: a probe visits 2% of a shard's lists
#   at 100 M a shard (8.3% at 1 M, 2.0% at 10 M), and ranks the centroids at 150 GFLOP/s.
# - **Exact sweep on GPUs**: *not measured*. *Assumption*: an H100 sustains half its fp16
#   dense peak, 495 TFLOP/s.

# %%
BATCH, N = 1_000_000, 1_000_000_000
shards = default_shards(N)
spec = parse_factory(default_factory(N, DIM, shards), DIM)
per_shard = N // shards
CORES_MEASURED = 2
cpu_exact = SearchSettings(exact_gflops_cpu=168.0)  # measured, 2 cores
cpu_ivf = SearchSettings(exact_gflops_cpu=150.0, ivf_ns_per_code=1.4, ivf_us_per_probe=220.0)
gpu = SearchSettings(exact_gflops_gpu=495_000.0)  # an assumption
share_visited = 0.02  # extrapolated
nprobe = round(share_visited * spec.nlist)

exact_seconds, _ = predict_seconds(BATCH, N, DIM, spec.nlist, cpu_exact, gpu=False)
_, shard_probe = predict_seconds(1, per_shard, DIM, spec.nlist, cpu_ivf, False, nprobe)
gpu_seconds, _ = predict_seconds(BATCH, N, DIM, spec.nlist, gpu, gpu=True)

exact_core_seconds = exact_seconds * CORES_MEASURED
ivf_core_seconds_a_probe = shard_probe * shards * CORES_MEASURED
ivf_core_seconds = ivf_core_seconds_a_probe * BATCH
night = pd.DataFrame(
    [
        {
            "engine": "exact sweep, CPU",
            "core-hours": exact_core_seconds / 3600,
            "wall on 10 x 64 cores (h)": exact_core_seconds / 640 / 3600,
        },
        {
            "engine": "IVF-PQ, CPU (extrapolated)",
            "core-hours": ivf_core_seconds / 3600,
            "wall on 10 x 64 cores (h)": ivf_core_seconds / 640 / 3600,
        },
        {
            "engine": "exact sweep, GPU (assumed rate)",
            "one GPU (s)": gpu_seconds,
            "8 GPUs (s)": gpu_seconds / 8,
        },
    ]
).set_index("engine")
display(night)
print(
    f"{2 * BATCH * N * DIM:.3g} operations; IVF: nprobe {nprobe} of {spec.nlist}, "
    f"{per_shard * nprobe / spec.nlist:,.0f} codes a shard, {shard_probe * 1e3:.2f} ms a shard, "
    f"{ivf_core_seconds_a_probe:.3f} core-seconds a probe"
)

# docs/capacity.md: 2.56e17 operations, 3.0e6 core-seconds (about 850 core-hours), 1.3 h on
# 10 nodes of 64 cores; IVF 2 M codes and about 39 ms of 2 cores a probe, 0.08 core-seconds,
# about 22 core-hours, some 40x less; GPU 517 s, about 65 s on 8 GPUs
assert 2 * BATCH * N * DIM == 2.56e17
assert agrees("3.0", exact_core_seconds / 1e6) and round(exact_core_seconds / 3600, -1) == 850
assert agrees("1.3", exact_core_seconds / 640 / 3600)
assert agrees("2", per_shard * nprobe / spec.nlist / 1e6)
assert agrees("39", shard_probe * shards * 1e3) and agrees("0.08", ivf_core_seconds_a_probe)
assert agrees("22", ivf_core_seconds / 3600)
assert 35 < exact_core_seconds / ivf_core_seconds < 45
assert agrees("517", gpu_seconds) and agrees("65", gpu_seconds / 8)

# %% [markdown]
# Where the time goes as the gallery grows, for the same 1 M probes (same rates and
# assumptions; the IVF line keeps visiting 2% of each shard's lists, which is only known to
# hold up to 10 M a shard):

# %%
sizes = [10**7, 10**8, 10**9, 5 * 10**9]
lines: dict[str, list[float]] = {"exact, CPU": [], "IVF-PQ, CPU": [], "exact, GPU": []}
for n in sizes:
    count = default_shards(n)
    lists = parse_factory(default_factory(n, DIM, count), DIM).nlist
    exact, _ = predict_seconds(BATCH, n, DIM, lists, cpu_exact, gpu=False)
    _, probe = predict_seconds(1, -(-n // count), DIM, lists, cpu_ivf, False, round(0.02 * lists))
    gpu_time, _ = predict_seconds(BATCH, n, DIM, lists, gpu, gpu=True)
    lines["exact, CPU"].append(exact * CORES_MEASURED / 3600)
    lines["IVF-PQ, CPU"].append(probe * count * CORES_MEASURED * BATCH / 3600)
    lines["exact, GPU"].append(gpu_time / 3600)
assert all(a < b for a, b in zip(lines["IVF-PQ, CPU"], lines["exact, CPU"], strict=True))

figure = Figure(figsize=(6.4, 3.6), layout="constrained")
axes = figure.add_subplot()
for label, hours in lines.items():
    axes.loglog(sizes, hours, marker="o", label=label)
axes.set_xlabel("gallery size N")
axes.set_ylabel("core-hours (GPU-hours) for 1 M probes")
axes.legend(fontsize="small")
out = io.BytesIO()
figure.savefig(out, format="png", dpi=90)
display(Image(out.getvalue()))

# %% [markdown]
# ## Measuring recall at 1 B
#
# At build, 2,000 queries searched exactly against the whole gallery: `2 x 2,000 x 1e9 x 128`
# operations at the measured 84 GFLOP/s a core; about a second on one GPU at the assumed
# rate. As the gallery grows, each re-measurement searches 1,000 planted mates at four
# nprobe values through the index (*extrapolated* at the IVF rate above), once the gallery
# holds 10% more than at the last one: at 10 M a night, once every ten nights.

# %%
build_ops = 2 * 2_000 * N * DIM
build_core_seconds = build_ops / 84e9
remeasure_core_seconds = 1_000 * 4 * ivf_core_seconds_a_probe
print(
    f"at build: {build_core_seconds:,.0f} core-seconds ({build_core_seconds / 64:.0f} s of one "
    f"64-core node), {build_ops / 495e12:.1f} s of one GPU; each re-measurement "
    f"{remeasure_core_seconds:.0f} core-seconds, {remeasure_core_seconds / 10:.0f} a night"
)
assert round(build_core_seconds, -2) == 6_100 and agrees("1", build_ops / 495e12)
assert abs(remeasure_core_seconds / 320 - 1) < 0.05  # "about 320 core-seconds"

# %% [markdown]
# ## Segments and compaction at 1 B
#
# Each night's add writes one segment; compaction merges runs of 8 adjacent segments within
# a factor 8 in size (`plan_merges`). The simulation below is the code's own merge plan over
# 1,000 nights of 1 M templates on a gallery built as one segment of 1 B; the bytes are
# *assumed* at about 300 a template (256 of fp16 vector, 40 of ids and codes).

# %%
segments, most, rewritten, nights_merging, merges = [N], 1, [], 0, {}
for _ in range(1_000):
    segments.append(1_000_000)
    work = 0
    for run in reversed(plan_merges(segments)):
        merged = sum(segments[run.start : run.stop])
        merges[merged] = merges.get(merged, 0) + 1
        segments[run.start : run.stop] = [merged]
        work += merged
    most = max(most, len(segments))
    rewritten.append(work)
    nights_merging += work > 0
compaction = pd.DataFrame(
    {
        "merged segment (templates)": list(merges),
        "times in 1,000 nights": list(merges.values()),
        "GB rewritten each time": [m * 300 / 1e9 for m in merges],
    }
)
display(compaction)
mean_rewritten = sum(rewritten) / len(rewritten)
print(
    f"segments at most {most}, after 1,000 nights {len(segments)} (the build's included); "
    f"{mean_rewritten / 1e6:.2f} M templates rewritten a night on average "
    f"({mean_rewritten * 300 / 1e9:.1f} GB); {nights_merging} nights with a merge"
)
assert most <= MAX_SEGMENTS and sum(segments) == N + 1_000 * 1_000_000
assert agrees("2.3", mean_rewritten / 1e6) and nights_merging == 125
assert merges == {8_000_000: 110, 64_000_000: 14, 512_000_000: 1}  # every 8th, 64th, 512th
assert (most, len(segments)) == (22, 14)

# %% [markdown]
# These are the figures `docs/capacity.md` gives: the segment counts, the merges, their
# sizes and frequencies, and the templates rewritten a night.
#
# ## What these numbers are not
#
# - The memory figures are the inverted lists and vectors only: no OS, no Ray or Spark, no
#   copy of a shard while a new version loads.
# - The CPU rates were measured on 2 cores; a 64-core node's memory bandwidth per core is
#   lower, so the per-core rate may not hold (an assumption above).
# - The IVF share of lists visited at 100 M a shard must be measured before the 22 core-hours
#   are relied on, and the GPU rate replaced by a measured one (`benchmarks/gallery.py` on a
#   GPU).
