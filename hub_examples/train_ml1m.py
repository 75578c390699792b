"""Train HyenaRec on MovieLens-1M and write a Hub-ready folder (weights, config with the item vocabulary, model code,
results.json, training_curve.png, README.md model card).

Run from the repository root:

    python hub_examples/train_ml1m.py                                   # the full run
    python hub_examples/train_ml1m.py --max-users 300 --epochs 1        # a quick look (about a minute on CPU)

MovieLens data may not be redistributed: it is read from ../shared/data and never copied into the output folder.
"""

import argparse

from datasets import DatasetDict

from hyenarec_hf.data import build_splits, load_interactions
from hyenarec_hf.training import TrainSettings, dataset_summary, train_and_evaluate

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data-file", default="../shared/data/ml-1m/ml-1m.txt.gz")
parser.add_argument("--output-dir", default="runs/hyenarec-ml1m")
parser.add_argument("--max-users", type=int, default=0, help="use only the first N users (0 = all)")
parser.add_argument("--epochs", type=int, default=200, help="maximum epochs; early stopping usually ends sooner")
parser.add_argument("--max-length", type=int, default=200, help="longest history the model reads")
parser.add_argument("--hidden-size", type=int, default=64)
args = parser.parse_args()

# Leave-one-out by time: each user's last item is the test target, the second-to-last the validation target.
splits, vocab = build_splits(load_interactions(args.data_file))
if args.max_users:
    splits = DatasetDict({name: split.select(range(min(args.max_users, len(split)))) for name, split in splits.items()})

results = train_and_evaluate(
    splits,
    vocab,
    args.output_dir,
    TrainSettings(max_length=args.max_length, epochs=args.epochs),
    model_type="hyenarec",
    model_kwargs={"hidden_size": args.hidden_size, "intermediate_size": 4 * args.hidden_size},
    data_info=dataset_summary(splits, vocab, args.data_file),
)
test = results["test"]
print(f"test (full ranking, seen items excluded): HR@10 {test['hr@10_full']:.4f}, NDCG@10 {test['ndcg@10_full']:.4f}")
print(f"Hub-ready folder: {args.output_dir}")
