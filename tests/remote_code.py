"""Shared by the remote-code tests: a preamble for a subprocess script that makes `hyenarec_hf` (and a top-level
`modeling`) impossible to import, so the script can only load a saved folder through its own shipped code
(`trust_remote_code=True`)."""

BLOCK_PACKAGE = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("hyenarec_hf", "modeling"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
"""
