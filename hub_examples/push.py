"""Push a trained folder to the Hugging Face Hub: weights (safetensors), config.json with auto_map and the item
vocabulary, the model code, results.json, training_curve.png and a model card whose eval results are the run's own.
Trainer checkpoints stay behind. Log in first (`hf auth login`), or try --dry-run, which uploads nothing.

    python hub_examples/push.py runs/hyenarec-ml1m your-name/hyenarec-ml1m --dry-run
    python hub_examples/push.py runs/hyenarec-ml1m your-name/hyenarec-ml1m --private

(`model.push_to_hub(repo_id)` would upload only weights, config and code: no results, curve or eval results.)
"""

import argparse

from hyenarec_hf.hub import push_folder

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("folder", nargs="?", default="runs/hyenarec-ml1m")
parser.add_argument("repo_id", nargs="?", default="your-name/hyenarec-ml1m")
parser.add_argument("--private", action="store_true")
parser.add_argument("--dry-run", action="store_true", help="check the folder and list the files; upload nothing")
args = parser.parse_args()

print(push_folder(args.folder, args.repo_id, private=args.private, dry_run=args.dry_run))
