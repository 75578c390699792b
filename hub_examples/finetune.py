"""Fine-tune a trained folder on new interactions. Items the model has never seen join its vocabulary (the learned
item embeddings are kept); training continues with the same Trainer pipeline and writes a new Hub-ready folder.

    python hub_examples/finetune.py runs/hyenarec-ml1m --data-file new_events.txt --output-dir runs/hyenarec-ml1m-ft
    python hub_examples/finetune.py runs/hyenarec-ml1m --max-users 300 --epochs 1    # quick run on ML-1M users
"""

import argparse

from transformers import AutoConfig

import hyenarec_hf  # noqa: F401  (registers the Auto classes)
from hyenarec_hf.finetune import finetune
from hyenarec_hf.training import TrainSettings

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("model_dir", nargs="?", default="runs/hyenarec-ml1m")
parser.add_argument("--data-file", default="../shared/data/ml-1m/ml-1m.txt.gz", help="the new interactions")
parser.add_argument("--output-dir", default="runs/hyenarec-ml1m-ft")
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--lr", type=float, default=5e-4)
parser.add_argument("--max-users", type=int, default=0, help="use only the first N users (0 = all)")
args = parser.parse_args()

max_length = AutoConfig.from_pretrained(args.model_dir).max_position_embeddings  # the model reads no more
settings = TrainSettings(max_length=max_length, epochs=args.epochs, learning_rate=args.lr, patience=3)
results = finetune(args.model_dir, args.data_file, args.output_dir, settings, max_users=args.max_users or None)

print(f"new items added to the vocabulary: {results['data']['new_items']}")
print(f"test NDCG@10 (full ranking, seen items excluded): {results['test']['ndcg@10_full']:.4f}")
print(f"Hub-ready folder: {args.output_dir}")
