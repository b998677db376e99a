"""`spec.evaluation`: which metrics each task reports, the BIO check for entity metrics, and the room they take in
the termination message."""

from __future__ import annotations

from typing import Any

import pytest
from finetune_api.evaluation import DEFAULT_METRICS, TASK_METRICS, EvaluationSpec, result_key
from finetune_api.job import FineTuneJobSpec, parse
from finetune_api.references import secret_refs, web_urls
from finetune_api.trainer import TERMINATION_MESSAGE_LIMIT, TerminationMessage
from finetune_operator import admission
from finetune_operator.builders import storage

from tests.invalid_specs import merge, minimal_job
from tests.unit.operator_fixtures import owner


def _ner(labels: list[str], evaluation: dict[str, Any]) -> dict[str, Any]:
    return merge(minimal_job(), {"spec": {
        "model": {"preset": "tiny-bert"}, "task": {"type": "token-classification", "labels": labels},
        "dataset": {"validationSplit": 0.1}, "evaluation": evaluation}})  # fmt: skip


def test_every_task_has_defaults_it_supports() -> None:
    assert set(DEFAULT_METRICS) == set(TASK_METRICS)
    for task, metrics in DEFAULT_METRICS.items():
        assert set(metrics) <= set(TASK_METRICS[task])
        assert EvaluationSpec(enabled=True).metrics_for(task) == metrics


@pytest.mark.parametrize(
    ("labels", "evaluation"),
    [
        (["O", "B-PER", "I-PER", "E-PER", "S-LOC"], {"enabled": True}),
        (["other", "person"], {"enabled": True, "metrics": ["loss"]}),  # no entity metric: any names
        (["other", "person"], {"enabled": False}),
    ],
    ids=["bioes-tags", "loss-only", "off"],
)
def test_entity_metrics_accept_bio_tags_and_need_them_only_when_computed(
    labels: list[str], evaluation: dict[str, Any]
) -> None:
    parse(_ner(labels, evaluation))


def test_the_most_metrics_fit_the_termination_message_beside_the_longest_output() -> None:
    value = -1.2345678901234567e-300  # the longest repr a float has
    every = {
        result_key(p, m): value
        for m in {m for ms in TASK_METRICS.values() for m in ms}
        for p in ("before", "after")
    }
    metrics = {
        "step": 1e9,
        "loss": value,
        "tokens": 1e15,
        "eval_loss": value,
        "train_seconds": value,
        **every,
    }
    message = TerminationMessage(
        status="Succeeded", output="pvc://" + "c" * 2042, digest="sha256:" + "0" * 64, metrics=metrics
    )

    text = message.to_json()

    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert TerminationMessage.model_validate_json(text) == message  # nothing was cut


@pytest.mark.parametrize(
    "spec",
    [
        {
            "dataset": {"validationSplit": 0.1},
            "evaluation": {"enabled": True, "metrics": ["exact_match"], "maxNewTokens": 16},
        },
        {"dataset": {"shape": "prompt-completion"}, "evaluation": {"metrics": ["exact_match"]}},
        {"evaluation": {"enabled": True, "datasetUri": "pvc://data/eval.jsonl"}},  # no validationSplit needed
        {"training": {"evalSteps": 10}, "evaluation": {"datasetUri": "https://example.com/eval.jsonl"}},
        {"evaluation": {"enabled": True, "datasetUri": "hf://org/set", "datasetSplit": "test"}},
    ],
    ids=["exact-match", "exact-match-declared-shape", "dataset-uri", "dataset-uri-eval-steps", "hf-split"],
)
def test_causal_lm_answers_and_a_separate_dataset_are_admitted(spec: dict[str, Any]) -> None:
    parse(merge(minimal_job(), {"spec": spec}))


def _spec(**spec: Any) -> FineTuneJobSpec:
    return parse(merge(minimal_job(), {"spec": spec})).spec


def test_the_evaluation_dataset_is_mounted_beside_the_training_one() -> None:
    o = owner(
        dataset={"uri": "pvc://train/rows.jsonl"}, evaluation={"datasetUri": "configmap://held/eval.jsonl"}
    )
    volumes, mounts = storage.volumes_and_mounts(o)
    assert {"name": "input-0", "configMap": {"name": "held"}} in volumes
    assert {"name": "input-1", "persistentVolumeClaim": {"claimName": "train", "readOnly": True}} in volumes
    assert {"name": "input-0", "mountPath": "/data/held", "readOnly": True} in mounts


def test_the_dataset_secret_also_authenticates_an_evaluation_dataset_of_another_scheme() -> None:
    spec = _spec(dataset={"uri": "hf://org/set", "secretRef": {"name": "creds"}},
                 evaluation={"datasetUri": "s3://bucket/eval.jsonl"})  # fmt: skip
    assert [(u.field, u.scheme) for u in secret_refs(spec)] == [
        ("spec.dataset.secretRef", "hf"), ("spec.dataset.secretRef", "s3")]  # fmt: skip
    same = _spec(dataset={"uri": "s3://bucket/train.jsonl", "secretRef": {"name": "creds"}},
                 evaluation={"datasetUri": "s3://bucket/eval.jsonl"})  # fmt: skip
    assert len(secret_refs(same)) == 1
    missing = admission.secret_problems(spec, "team-a", lambda name: None)
    assert len(missing) == 1 and missing[0].startswith(
        "spec.dataset.secretRef.name: Secret 'creds' not found"
    )
    lacking = admission.secret_problems(spec, "team-a", lambda name: {"HF_TOKEN"})
    assert lacking == [
        "spec.dataset.secretRef.name: Secret 'creds' lacks AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, which s3:// "
        "needs; add AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL, AWS_REGION for an "
        "S3-compatible store)"
    ]


def test_the_webhook_resolves_the_evaluation_dataset_s_host() -> None:
    spec = _spec(evaluation={"datasetUri": "https://data.example.net/eval.jsonl"})
    assert web_urls(spec) == [("spec.evaluation.datasetUri", "https://data.example.net/eval.jsonl")]


def test_the_api_s_task_tables_cover_every_task() -> None:
    from typing import get_args

    from finetune_api.presets import FAMILY_TASKS, TaskType

    every = set(get_args(TaskType))
    assert set(TASK_METRICS) == set(DEFAULT_METRICS) == every
    assert {task for family in FAMILY_TASKS.values() for task in family} == every
