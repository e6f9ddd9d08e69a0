"""Every command line sets OMP_WAIT_POLICY=PASSIVE before torch loads, and keeps a policy the user has set."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = ["train", "validate", "predict", "txt2pickle", "demo", "model.summary", "preprocess.glove",
                "preprocess.merge_features", "preprocess.preprocess_features", "preprocess.preprocess_questions",
                "preprocess.synthetic.msvd_qa", "bench.data_loading", "bench.extraction", "bench.train_step", "bench.predict",
                "bench.probe_features"]

# Imports each entry point with OMP_WAIT_POLICY as the parent left it and records the variable's value at the moment
# something first asks for torch (the OpenMP runtime reads it then); that import is aborted, so torch never loads
# and each module is checked in a fresh state.
PROBE = r"""
import importlib, json, os, sys

class TorchReached(Exception):
    pass

class Watch:
    seen = None
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            Watch.seen = os.environ.get("OMP_WAIT_POLICY")
            raise TorchReached
        return None

sys.meta_path.insert(0, Watch())
initial = os.environ.get("OMP_WAIT_POLICY")
ours = {"train", "validate", "predict", "inference", "txt2pickle", "demo", "model", "preprocess", "training", "utils", "bench"}
result = {}
for name in sys.argv[1:]:
    Watch.seen = None
    try:
        importlib.import_module(name)
        import torch
    except TorchReached:
        pass
    result[name] = Watch.seen
    for loaded in [m for m in sys.modules if m.split(".")[0] in ours]:
        del sys.modules[loaded]
    if initial is None:
        os.environ.pop("OMP_WAIT_POLICY", None)
    else:
        os.environ["OMP_WAIT_POLICY"] = initial
print(json.dumps(result))
"""


def policy_when_torch_loads(policy: str | None) -> dict[str, str | None]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    done = subprocess.run([sys.executable, "-c", PROBE, *ENTRY_POINTS], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_entry_points_default_to_passive_before_torch_loads():
    assert policy_when_torch_loads(None) == {name: "PASSIVE" for name in ENTRY_POINTS}


def test_entry_points_keep_the_users_policy():
    assert policy_when_torch_loads("ACTIVE") == {name: "ACTIVE" for name in ENTRY_POINTS}
