"""What an evaluation leaves in MLflow, on the candidate's model version.

- an evaluation run in the project's experiment (``eval-<model>-v<version>``): every summary metric of the
  candidate and (``champion.``-prefixed) of the champion, the gate verdicts and the evaluation table as
  JSON artifacts (``evaluation/table.json``, ``evaluation/verdicts.json``);
- tags on the model version: ``eval.status`` (passed, failed or awaiting_approval), ``eval.reason``,
  ``eval.run_id``, ``eval.champion`` and ``eval.metric.<name>`` for each summary metric of the candidate;
- the alias ``challenger`` on a pass (after the approval, in manual-approval mode).

``read_evaluation_table`` reads the table back from the version alone.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from services.evaluator.errors import EvaluationError
from services.evaluator.evaluation import Evaluation
from shared.registry import CHALLENGER, ModelRegistry

TABLE_ARTIFACT = "evaluation/table.json"
VERDICTS_ARTIFACT = "evaluation/verdicts.json"
TAG_STATUS = "eval.status"
TAG_REASON = "eval.reason"
TAG_RUN = "eval.run_id"
TAG_CHAMPION = "eval.champion"
TAG_APPROVED_BY = "eval.approved_by"
TAG_APPROVED_AT = "eval.approved_at"
METRIC_TAG_PREFIX = "eval.metric."
PASSED, FAILED, AWAITING_APPROVAL = "passed", "failed", "awaiting_approval"
_MAX_TAG = 5000


def record_evaluation(
    registry: ModelRegistry, evaluation: Evaluation, project_id: str, *, awaiting_approval: bool = False
) -> str:
    """Write the evaluation to MLflow (see the module doc); returns the evaluation run id."""
    from mlflow.entities import Metric

    client = registry.client
    name, version = evaluation.registered_model, evaluation.model_version
    status = (AWAITING_APPROVAL if awaiting_approval else PASSED) if evaluation.passed else FAILED
    run = client.create_run(
        registry.experiment_id(project_id),
        run_name=f"eval-{name}-v{version}",
        tags={
            "kaizen.kind": "evaluation",
            "kaizen.registered_model": name,
            "kaizen.model_version": version,
            "kaizen.champion": evaluation.champion.version or evaluation.champion.spec,
            TAG_STATUS: status,
        },
    )
    run_id = str(run.info.run_id)
    now = int(time.time() * 1000)
    metrics = [
        Metric(metric_key(key), value, now, 0)
        for key, value in evaluation.metrics.items()
        if math.isfinite(value)
    ]
    for start in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[start : start + 500])
    client.log_dict(run_id, {"rows": evaluation.table}, TABLE_ARTIFACT)
    client.log_dict(
        run_id,
        {
            "passed": evaluation.passed,
            "reason": evaluation.reason,
            "verdicts": [v.model_dump() for v in evaluation.verdicts],
        },
        VERDICTS_ARTIFACT,
    )
    client.set_terminated(run_id, "FINISHED")

    tags = {
        TAG_STATUS: status,
        TAG_REASON: evaluation.reason[:_MAX_TAG],
        TAG_RUN: run_id,
        TAG_CHAMPION: evaluation.champion.version or evaluation.champion.spec,
    }
    tags |= {
        f"{METRIC_TAG_PREFIX}{key}": f"{value:.6g}" for key, value in evaluation.candidate_metrics.items()
    }
    for key, value in tags.items():
        registry.tag(version, key, value, name)
    if status == PASSED:
        registry.set_alias(CHALLENGER, version, name)
    return run_id


def metric_key(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in name)


def version_tags(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    return dict(client.get_model_version(name, version).tags)


def read_artifact(client: MlflowClient, name: str, version: str, artifact: str) -> Any:
    run_id = version_tags(client, name, version).get(TAG_RUN)
    if not run_id:
        raise EvaluationError(f"version {version} of {name!r} has no evaluation ({TAG_RUN} tag missing)")
    with tempfile.TemporaryDirectory() as directory:
        path = client.download_artifacts(run_id, artifact, directory)
        return json.loads(Path(path).read_text())


def read_evaluation_table(client: MlflowClient, name: str, version: str) -> list[dict[str, Any]]:
    """The evaluation table of a model version, read back from MLflow."""
    rows: list[dict[str, Any]] = read_artifact(client, name, version, TABLE_ARTIFACT)["rows"]
    return rows
