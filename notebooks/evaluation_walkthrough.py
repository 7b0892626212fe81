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
# # Reading `dedup evaluate`, on the bundled synthetic set
#
# This notebook runs the project's evaluation (`dedup.evaluation.report.write_evaluation`, the
# function behind `dedup evaluate`) on the labelled synthetic set that `dedup evaluate-synth`
# writes, and reads each figure of the report in turn: FNIR at FPIR, the DET and CMC curves,
# growth with the gallery's size, and the per-group rates with their differential.
# `docs/evaluation.md` is the reference; this is the same reading, with the numbers in front of
# you.
#
# Every file goes to a temporary folder, removed at the end. Each figure that the text claims
# is asserted, so a change that breaks a claim fails CI (`tests/integration/test_notebooks.py`
# runs this notebook).

# %%
import base64
import json
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Image, display

from dedup.evaluation.differentials import column_differentials, score_pairs
from dedup.evaluation.labelled import read_evaluation_set
from dedup.evaluation.report import GROUP_FPIR, EvaluationOptions, write_evaluation
from dedup.evaluation.synthetic_groups import DEFAULT_GROUPS, write_labelled_set
from dedup.matching.impostor_pairs import sample_impostor_scores

workdir = tempfile.TemporaryDirectory(prefix="dedup-walkthrough-")
root = Path(workdir.name)

# %% [markdown]
# ## The set
#
# 3,000 synthetic people, two templates each, in three equal groups `A`, `B` and `C` (and an
# `age_band` column that changes nothing). The template model is fitted to the default model's
# scores on real portraits (`dedup/evaluation/synthetic.py`); on top of it, the people of group
# `C` share a little of their template with each other that `A`'s and `B`'s do not
# (`DEFAULT_GROUPS`), so two different people of `C` score higher than two of `A`: a
# false-match differential planted by construction. This is exactly
# `dedup evaluate-synth --subjects 3000`.

# %%
subjects = 3000
synth = write_labelled_set(root / "set", subjects=subjects, seed=0)
labels = pd.read_parquet(root / "set" / "labels.parquet")
display(labels.head())
display(labels.groupby("group")["subject_id"].nunique().rename("subjects"))
assert dict(synth.groups) == DEFAULT_GROUPS
assert len(labels) == 2 * subjects

# %% [markdown]
# ## The evaluation
#
# Half of the people are held out of the gallery and give one **non-mated** search each; the
# others put one template in the gallery and search with their second (**mated** searches, one
# mate each). The search sees vectors only. Besides the whole gallery (1,500 templates), the
# same searches run against nested galleries of 100, 300 and 1,000, for the growth figure. 200
# subject-bootstrap replicates give the bands.

# %%
options = EvaluationOptions(gallery_sizes=(100, 300, 1000), bootstrap=200, seed=0)
written = write_evaluation(
    root / "set" / "templates.parquet", root / "set" / "labels.parquet", root / "report", options
)
report = json.loads(written.json.read_text(encoding="utf-8"))  # what `dedup evaluate` writes
display(report["counts"])
# report.html embeds its plots (dedup/evaluation/plots.py) as PNG data: shown below from there
page = written.html.read_text(encoding="utf-8")
figures = {
    title: Image(base64.b64decode(data))
    for title, data in re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]*)"', page)
}
print("plots of report.html:", ", ".join(figures))
assert len(figures) == 3
counts = report["counts"]
assert counts["gallery"] == counts["mated_searches"] == counts["nonmated_searches"] == 1500

# %% [markdown]
# ## FNIR at FPIR
#
# For each FPIR target, the threshold is the smallest score at which at most that share of
# the non-mated searches return a candidate; FNIR is then the share of mated searches whose
# mate is not returned at rank 1. Read the interval, not the point: with 1,500 non-mated
# searches, FPIR 0.001 allows **one** false positive, so the threshold rests on one or two
# searches. Every row is flagged `few_errors`: fewer than 30 false positives or misses support
# it. A stricter target gives a higher threshold and, at best, the same FNIR.

# %%
points = pd.DataFrame(report["fnir_at_fpir"])
display(
    points[["fpir", "threshold", "fpir_observed", "fnir", "fnir_ci", "false_positives", "misses"]]
)
for point in report["fnir_at_fpir"]:
    assert point["fpir_observed"] <= point["fpir"]
    assert point["fnir_ci"][0] <= point["fnir"] <= point["fnir_ci"][1]
    assert point["few_errors"]  # 1,500 searches cannot support these rates
thresholds = [p["threshold"] for p in report["fnir_at_fpir"]]  # FPIR 0.001, 0.003, 0.01
assert thresholds == sorted(thresholds, reverse=True)
fnirs = [p["fnir"] for p in report["fnir_at_fpir"]]
assert fnirs == sorted(fnirs, reverse=True)

# %% [markdown]
# ## The DET curve
#
# FNIR against FPIR as the threshold moves, both on log axes: lower-left is better. The band
# is the subject bootstrap: the people are drawn again, the threshold re-set on the re-drawn
# non-mated searches, FNIR measured on the re-drawn mated ones. It shows the sampling of the
# searches, not of the gallery (held fixed). The black points are the three operating points
# above. Where the curve runs along the axis at the left, FNIR is zero: too few misses to
# draw.

# %%
display(figures["DET / IET: FNIR against FPIR"])
det = report["det"]
assert det["threshold"] == sorted(det["threshold"], reverse=True)
assert det["fpir"] == sorted(det["fpir"])  # a lower threshold: more false positives...
assert det["fnir"] == sorted(det["fnir"], reverse=True)  # ...and fewer misses
band = report["det_band"]
assert all(lo <= hi for lo, hi in zip(band["fnir_low"], band["fnir_high"], strict=True))

# %% [markdown]
# ## Rank 1 and the CMC
#
# Investigation mode: no threshold, every search returns a list, and CMC(r) is the share of
# mated searches whose mate is at rank r or better. It ignores the non-mated searches, so it
# says nothing about false candidates, which is what a registry's adjudicators see; a
# registry's nightly batch is mostly people who are not enrolled. On this synthetic set
# nearly every mate ranks first.

# %%
display(figures["CMC"])
cmc = report["cmc"]["rate"]
assert report["rank1"] == cmc[0] > 0.99
assert cmc == sorted(cmc) and cmc[-1] <= 1.0
assert all(lo <= hi for lo, hi in zip(report["cmc"]["low"], report["cmc"]["high"], strict=True))

# %% [markdown]
# ## Growth with N
#
# The same searches against the nested galleries. "Threshold held" keeps the threshold that
# gives FPIR 0.003 against the smallest gallery: as the gallery grows, each non-mated search
# meets more strangers and FPIR climbs. "Re-calibrated" sets the threshold again at each size:
# FPIR stays at the target, the threshold rises, and FNIR pays for it. A registry's
# threshold must follow its N (the `threshold_calibration` notebook takes this to a billion).

# %%
growth = pd.DataFrame(report["growth"]["rows"])
display(growth)
display(figures["FNIR and FPIR as the gallery grows"])
held = growth["fixed_fpir"].tolist()
assert held == sorted(held) and held[-1] > 5 * held[0]  # 0.0027 at 100, 0.04 at 1,500
assert (growth["calibrated_fpir"] <= GROUP_FPIR).all()
recalibrated = growth["calibrated_threshold"].tolist()
assert recalibrated == sorted(recalibrated) and recalibrated[-1] > recalibrated[0]
assert growth["calibrated_fnir"].iloc[-1] > growth["calibrated_fnir"].iloc[0]

# %% [markdown]
# ## Groups at the 1:N threshold
#
# The report takes each group column at the threshold for FPIR 0.003 (`group_threshold`): a
# group's FMR over its same-group impostor pairs (two different people of the group), its
# FNMR over its genuine pairs, each with a Clopper-Pearson interval. A group is flagged when
# its FMR exceeds the best group's by more than `--fmr-factor` (2) **and** the two intervals
# are apart, so one false match against none is not a differential.
#
# At a 1:N threshold FMR is tiny (a few in a million pairs here), and `A` and `B` have no
# false match or almost none: an FMR of 0 means "below the interval's upper end", not
# "never". `C` is flagged. Where the best group has no false match, the ratio to it
# (`fmr_to_best`) is left empty: nothing finite can be said about how large the differential
# is.


# %%
def group_table(column: str) -> pd.DataFrame:
    keep = ["group", "fmr", "fmr_ci", "false_matches", "impostor_pairs", "fnmr", "fnmr_ci"]
    rows = pd.DataFrame(report["groups"][column])
    return rows[[*keep, "fmr_to_best", "fmr_to_best_ci"]].set_index("group")


print(f"threshold {report['group_threshold']['threshold']:.4f} (FPIR {GROUP_FPIR})")
display(group_table("group"))
by_group = {g["group"]: g for g in report["groups"]["group"]}
assert report["differentials"]["group"]["flagged"] == ["C"]  # the planted differential
assert by_group["C"]["fmr_ci"][0] > max(by_group[g]["fmr_ci"][1] for g in ("A", "B"))
assert max(by_group[g]["false_matches"] for g in "AB") <= 2
if min(g["fmr"] for g in by_group.values()) == 0:
    assert all(g["fmr_to_best"] is None for g in by_group.values())

# %% [markdown]
# The `age_band` column carries no differential. Its bands do have a few false matches each,
# so the report gives each band's FMR over the best band's with a 95% subject-bootstrap
# interval: people are drawn again with replacement, and every pair weighs the product of its
# two people's draws (a person's pairs stay together). Every interval holds 1, and here their
# upper ends are unbounded (some replicates leave the best band without a false match): no
# differential is shown, and none can be excluded either.

# %%
display(group_table("age_band"))
assert report["differentials"]["age_band"]["flagged"] == []
for band_rates in report["groups"]["age_band"]:
    low, high = band_rates["fmr_to_best_ci"]
    high = math.inf if high is None else high  # JSON writes an unbounded end as null
    assert band_rates["false_matches"] > 0 and low <= 1.0 <= high

# %% [markdown]
# ## How large is the differential? The same functions at a 1:1 threshold
#
# To put a number on `C`'s differential, every group needs false matches. Further down the
# score scale they all have some: take the threshold at which one in a thousand of the set's
# impostor pairs matches (a 1:1 verification operating point), sampled with the matching code's
# `sample_impostor_scores`, and call what the report calls (`score_pairs`, then
# `column_differentials`). `C`'s FMR over `A`'s now has a finite interval, well clear of the
# factor 2; `A` and `B`, which differ by nothing, have intervals holding 1. How large a
# differential is depends on the threshold (`DEFAULT_GROUPS`' note: about 12x where `A`'s FMR
# is 0.002, more further out), and the 1:N rates are the ones that reach adjudicators.

# %%
data = read_evaluation_set(root / "set" / "templates.parquet", root / "set" / "labels.parquet")
impostors = sample_impostor_scores(
    data.vectors, 1_000_000, seed=0, exclude=lambda i, j: data.subjects[i] == data.subjects[j]
)
one_to_one = float(np.quantile(impostors, 1 - 1e-3))
pairs = score_pairs(data.vectors, data.subjects, one_to_one)
found = column_differentials(
    "group", data.groups["group"], pairs, one_to_one, factor=2.0, replicates=200, seed=0
)
print(f"threshold {one_to_one:.4f} (impostor FMR 0.001 over all groups)")
display(
    pd.DataFrame(
        [
            {
                "group": g.group,
                "fmr": g.fmr,
                "false_matches": g.false_matches,
                "fmr_to_best": g.fmr_to_best,
                "fmr_to_best_ci": g.fmr_to_best_ci,
            }
            for g in found.groups
        ]
    ).set_index("group")
)
rates = {g.group: g for g in found.groups}
assert found.flagged == ["C"]
c_low, c_high = rates["C"].fmr_to_best_ci or (math.nan, math.nan)
assert found.factor < c_low <= rates["C"].fmr_to_best <= c_high < math.inf
for group in ("A", "B"):
    low, high = rates[group].fmr_to_best_ci or (math.nan, math.nan)
    assert rates[group].false_matches >= 100 and low <= 1.0 <= high

# %% [markdown]
# ## What synthetic data cannot say
#
# - **Nothing about a model or about people.** The differential here was planted to show that
#   the report finds one. The rates describe a generator, not any population; a real
#   evaluation needs real, consented, labelled templates.
# - **Small sets, wide intervals.** 1,500 searches of each kind cannot support FPIR 0.001, and
#   at a 1:N threshold most groups have few or no false matches. A ratio needs errors in
#   every group.
# - **Independence.** Clopper-Pearson treats every pair as an independent trial, but impostor
#   pairs share templates; the subject bootstrap keeps a person's pairs together, and it
#   assumes the people are a random sample of those the registry serves.
# - **Open-set, not closed-set.** Rank and CMC assume every search has a mate; FNIR at FPIR is
#   the figure that matches a nightly batch.
# - **A threshold set here must be set again at the registry's N.** See the growth figure
#   and the `threshold_calibration` notebook.

# %%
workdir.cleanup()
