"""Load a trained folder (or a Hub repo id) and recommend for histories of raw item ids; nothing but the folder is
needed: the item vocabulary travels in config.json.

    python hub_examples/load_and_recommend.py runs/hyenarec-ml1m --history 1 48 150 --k 10
    python hub_examples/load_and_recommend.py runs/hyenarec-ml1m --trust-remote-code   # without hyenarec_hf
"""

import argparse

from transformers import AutoModel

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("model", nargs="?", default="runs/hyenarec-ml1m", help="a trained folder or a Hub repo id")
parser.add_argument("--history", nargs="+", help="raw item ids, oldest first (default: the first 5 items)")
parser.add_argument("--k", type=int, default=10)
parser.add_argument("--trust-remote-code", action="store_true", help="use the model code shipped in the folder")
args = parser.parse_args()

if args.trust_remote_code:
    model = AutoModel.from_pretrained(args.model, trust_remote_code=True)
else:
    import hyenarec_hf  # noqa: F401  (registers the Auto classes)

    model = AutoModel.from_pretrained(args.model)
model.eval()

history = args.history or model.config.item_ids[:5]
print(f"history: {' '.join(history)}")
for rank, (item, score) in enumerate(model.recommend(history, k=args.k, return_scores=True), start=1):
    print(f"{rank:3d}. item {item}  (score {score:.3f})")

# A batch of histories of different lengths; unknown ids can be skipped instead of raising.
batch = [history, history[:2], [*history[:1], "no-such-item"]]
print("batch:", model.recommend(batch, k=3, on_unknown="skip"))

# Embeddings for retrieval: user vectors score items by a dot product with the item vectors.
users = model.user_embeddings(batch, on_unknown="skip")
ids, items = model.get_item_embeddings()
top = (users @ items.T).topk(3).indices
print(f"user embeddings {tuple(users.shape)}, item embeddings {tuple(items.shape)}")
print("top-3 by dot product (seen items included):", [[ids[i] for i in row] for row in top.tolist()])
