"""A trained model folder as an MLflow pyfunc model that points at the DVC-versioned weights.

Every HF-format folder a stage writes (``artifacts/<stage>/model``, ``artifacts/distill/<item>/model``,
``artifacts/reward_model/helpful``, ...) is logged to the stage's MLflow run as a pyfunc model
whose MLmodel records where the weights are, not the weights themselves:
``model_config = {"weights": <absolute folder>, "path": <folder relative to the workspace>,
"stage": <stage instance>, "kind": "causal_lm" | "reward_model"}``. The folder is a DVC output,
so DVC already versions (and pushes) it; the LoggedModel and the registry versions carry its
DVC md5 and the lineage commit (tags ``dvc.md5``, ``r1flow.lineage_commit``, set by
``tasks.tracking.close_pipeline_run``), which is how to get the exact weights back anywhere::

    git checkout <r1flow.lineage_commit> && dvc pull <path>   # the folder whose md5 is dvc.md5

Why a pointer and not MLflow's transformers flavour (measured on this 2-core CPU, sqlite store,
the default params' 4-layer base, 3.45 MB of safetensors): the pointer costs about 0.55 s for
the first model of a process (MLflow checks the pinned requirements against every installed
package, once) and 0.03 s for each later one, and 1.5 KB; the transformers flavour took about
the same time (0.5 s, then 0.05 s) but stores the folder's full size again (3.47 MB here, GBs
for real models: a second copy of every model beside DVC's cache and remote) and asks the hub
for a model card. Loading needs the r1flow package (the class below is
pickled by reference) and the weights at ``weights``; where they are not, :meth:`WeightsPointer.load_context`
says which path to ``dvc pull`` at which commit.

``predict`` on a causal LM takes prompts (a list of strings or a DataFrame with a ``prompt``
column) and returns greedy completions (``params={"max_new_tokens": N}``, default 32); on a
reward model it takes a DataFrame with ``prompt`` and ``response`` columns and returns one
scalar reward each. Importing this module imports mlflow: import it where a model is logged
or loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from model.factory import REWARD_MODEL

DEFAULT_MAX_NEW_TOKENS = 32


class WeightsPointer(mlflow.pyfunc.PythonModel):
    """The pyfunc face of one model folder (module doc); holds no weights until loaded."""

    def load_context(self, context) -> None:
        """Load tokenizer and model from ``model_config["weights"]``. Raises FileNotFoundError
        naming the DVC path when the folder is not on this machine."""
        from model import factory, reward_model

        config = context.model_config
        self.kind = config["kind"]
        weights = Path(config["weights"])
        if not weights.is_dir():
            raise FileNotFoundError(
                f"weights of stage {config.get('stage')} not found at {weights}: check out the "
                f"model version's r1flow.lineage_commit and `dvc pull {config.get('path')}`, then "
                f"load with model_config={{'weights': <that folder>}}")
        if self.kind == REWARD_MODEL:
            self.model, self.tokenizer = reward_model.load(weights)
        else:
            self.tokenizer, self.model = factory.load_tokenizer(weights), factory.load_model(weights)
        self.model.eval()

    # A DataFrame hint: what MLflow passes once it has enforced the signature; MLflow infers no
    # schema from it (and warns about a predict without hints).
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list:
        """Completions (list[str]) of a causal LM, or rewards (list[float]) of a reward model,
        one per input row (module doc)."""
        rows = _rows(model_input)
        if self.kind == REWARD_MODEL:
            from model import reward_model

            return reward_model.score(self.model, self.tokenizer, [r["prompt"] for r in rows],
                                      [r["response"] for r in rows])
        max_new = int((params or {}).get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
        return [self._complete(r["prompt"], max_new) for r in rows]

    def _complete(self, prompt: str, max_new_tokens: int) -> str:
        import torch

        ids = self.tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            out = self.model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def _rows(model_input) -> list[dict]:
    """Input rows as dicts: a string, a list of strings (prompts), a list of dicts or a DataFrame."""
    if isinstance(model_input, str):
        return [{"prompt": model_input}]
    if hasattr(model_input, "to_dict"):
        model_input = model_input.to_dict(orient="records")
    # A one-column frame whose column is not named ``prompt`` (MLflow names a list's column 0).
    return [({"prompt": next(iter(r.values()))} if "prompt" not in r else r) if isinstance(r, dict)
            else {"prompt": r} for r in model_input]


def signature(kind: str):
    """The MLflow signature of a model of ``kind``: string columns in, strings or floats out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    if kind == REWARD_MODEL:
        return ModelSignature(Schema([ColSpec("string", "prompt"), ColSpec("string", "response")]),
                              Schema([ColSpec("double")]))
    # One unnamed column: a list of prompts and a DataFrame of one prompt column both match.
    return ModelSignature(Schema([ColSpec("string")]), Schema([ColSpec("string")]),
                          ParamSchema([ParamSpec("max_new_tokens", "long", DEFAULT_MAX_NEW_TOKENS)]))


class QuietPickleWarning:
    """A ``logging`` filter for MLflow's warning that a ``python_model`` object is pickled:
    :class:`WeightsPointer` holds no state, so its pickle is a reference to this module's
    class (the loader imports r1flow's own code, nothing else)."""

    def filter(self, record) -> bool:
        """False for that one warning."""
        return "serialized using CloudPickle" not in record.getMessage()


QUIET_PICKLE = QuietPickleWarning()


def requirements() -> list[str]:
    """Pinned pip requirements of the loader (given, so MLflow does not infer them by loading
    the model in a subprocess, which costs seconds per model)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "torch", "transformers")]
