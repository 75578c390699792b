"""Top-K ranking metrics (HR@K, NDCG@K, MRR@K) for next-item recommendation, as an `evaluate` metric.

Load it from its path (no Hub needed):

    import evaluate
    ranking = evaluate.load("path/to/hyenarec_hf/evaluate_metrics/ranking.py")
    ranking.compute(predictions=[[3, 7, 1, ...]], references=[7], k_values=[5, 10, 20])

This file is loaded standalone by `evaluate`, so it depends on nothing from `hyenarec_hf`.
"""

import math

import datasets
import evaluate

_DESCRIPTION = """\
Each prediction is a user's recommendation list (item ids, best first), each reference the one item the user
interacted with next. With rank = 1-based position of the reference in the list:
HR@K = 1[rank <= K], NDCG@K = 1 / log2(rank + 1) if rank <= K, MRR@K = 1 / rank if rank <= K, averaged over users.
A reference missing from the list counts as a miss at every K. Exclude seen items from the lists beforehand if the
protocol asks for it; this metric ranks nothing itself.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[int]]`): ranked recommendation lists, each at least max(k_values) long.
    references (`list[int]`): the target item of each list.
    k_values (`list[int]`, defaults to [5, 10, 20]): the cut-offs K.
Returns:
    `dict[str, float]`: `hr@K`, `ndcg@K`, `mrr@K` for every K.
Example:
    >>> ranking = evaluate.load("hyenarec_hf/evaluate_metrics/ranking.py")
    >>> ranking.compute(predictions=[[5, 9, 2], [1, 2, 3]], references=[9, 4], k_values=[1, 3])
    {'hr@1': 0.0, 'ndcg@1': 0.0, 'mrr@1': 0.0, 'hr@3': 0.5, 'ndcg@3': 0.31546487678572877, 'mrr@3': 0.25}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Ranking(evaluate.Metric):
    """HR@K, NDCG@K and MRR@K of ranked recommendation lists against one target item per user."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("int64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, k_values=(5, 10, 20)):
        ks = [int(k) for k in k_values]
        if not ks or min(ks) < 1:
            raise ValueError(f"k_values must be positive cut-offs, got {k_values}.")
        if len(predictions) == 0:
            raise ValueError("no predictions to score.")
        sums = {f"{name}@{k}": 0.0 for k in ks for name in ("hr", "ndcg", "mrr")}
        for row, (ranked, target) in enumerate(zip(predictions, references)):
            if len(ranked) < max(ks):
                raise ValueError(
                    f"prediction {row} lists {len(ranked)} items, fewer than the largest K ({max(ks)}); "
                    "recommend at least max(k_values) items per user."
                )
            rank = list(ranked).index(target) + 1 if target in ranked else math.inf
            for k in ks:
                if rank <= k:
                    sums[f"hr@{k}"] += 1.0
                    sums[f"ndcg@{k}"] += 1.0 / math.log2(rank + 1)
                    sums[f"mrr@{k}"] += 1.0 / rank
        return {name: value / len(predictions) for name, value in sums.items()}
