"""Invalid FineTuneJobs, each with the field its error must name.

Shared by the unit suite (pydantic, `finetune validate`) and the integration suite (the real API server, for the
cases with `server_enforced`: everything the CRD's schema and CEL rules can express; the rest is the webhook's).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

DELETE = object()
"""Patch value that removes a key."""


def minimal_job(name: str = "t") -> dict[str, Any]:
    """The smallest valid FineTuneJob."""
    return {
        "apiVersion": "finetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {"model": {"preset": "tiny-llama"}, "dataset": {"uri": "configmap://data/train.jsonl"}},
    }


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `base` with `patch` merged in (dicts recursively; DELETE removes)."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class InvalidSpec:
    id: str
    manifest: dict[str, Any]
    field: str
    """Substring the error must contain: the dotted path of the offending field."""
    server_enforced: bool = True
    """True when the CRD alone (schema + CEL) rejects it; False for webhook-only rules (SSRF, URI shapes, memory)."""
    gpu_fit: bool = False
    """Parses, and is refused by the GPU-fit verdict (`api.fit`, reason DoesNotFit) instead."""


def _case(
    id: str, field: str, spec: dict[str, Any], server: bool = True, gpu_fit: bool = False
) -> InvalidSpec:
    return InvalidSpec(id, merge(minimal_job(), {"spec": spec}), field, server, gpu_fit)


_BERT = {"preset": "tiny-bert"}
_LLAMA8B = {"preset": "llama-3.1-8b-instruct"}
_NER = {"type": "token-classification", "labels": ["O", "B-PER", "I-PER"]}

INVALID_SPECS: list[InvalidSpec] = [
    # Required fields, wrong types, unknown fields.
    InvalidSpec("missing-spec", merge(minimal_job(), {"spec": DELETE}), "spec"),
    _case("missing-model", "spec.model", {"model": DELETE}),
    _case("missing-dataset", "spec.dataset", {"dataset": DELETE}),
    _case("lora-r-string", "spec.method.lora.r", {"method": {"lora": {"r": "eight"}}}),
    _case("learning-rate-string", "spec.training.learningRate", {"training": {"learningRate": "fast"}}),
    _case("suspend-string", "spec.runPolicy.suspend", {"runPolicy": {"suspend": "maybe"}}),
    _case("unknown-spec-field", "spec.epochs", {"epochs": 3}),
    _case("unknown-nested-field", "spec.training.learningrate", {"training": {"learningrate": 0.1}}),
    _case(
        "inline-secret",
        "spec.model.accessSecretRef.value",
        {"model": {"accessSecretRef": {"name": "hf", "value": "hf_secret"}}},
    ),
    InvalidSpec("name-too-long", merge(minimal_job("x" * 51), {}), "metadata.name"),
    InvalidSpec(
        "generate-name-too-long",
        merge(minimal_job(), {"metadata": {"name": DELETE, "generateName": "x" * 46}}),
        "metadata.generateName",
        server_enforced=False,  # the API server checks the name it generates, under metadata.name
    ),
    # model
    _case("model-preset-and-uri", "spec.model.preset", {"model": {"uri": "hf://org/name"}}),
    _case("model-neither", "spec.model.preset", {"model": {"preset": DELETE}}),
    _case("model-unknown-preset", "spec.model.preset", {"model": {"preset": "gpt-5"}}),
    _case("model-uri-bad-scheme", "spec.model.uri", {"model": {"preset": DELETE, "uri": "ftp://host/model"}}),
    _case(
        "model-s3-bucket-too-short",
        "spec.model.uri",
        {"model": {"preset": DELETE, "uri": "s3://m/base"}},
        False,
    ),
    _case(
        "model-oci-no-repository",
        "spec.model.uri",
        {"model": {"preset": DELETE, "uri": "oci://registry.example.com"}},
        server=False,
    ),
    _case(
        "model-uri-malformed-hf",
        "spec.model.uri",
        {"model": {"preset": DELETE, "uri": "hf://"}},
        server=False,
    ),
    # method
    _case("method-unknown", "spec.method.type", {"method": {"type": "prefix-tuning"}}),
    _case("qlora-without-quantization", "spec.method.quantization", {"method": {"type": "qlora"}}),
    _case("lora-with-quantization", "spec.method.quantization", {"method": {"quantization": {"bits": 4}}}),
    _case(
        "dora-with-quantization",
        "spec.method.quantization",
        {"method": {"type": "dora", "quantization": {"bits": 4}}},
    ),
    _case("full-with-lora", "spec.method.lora", {"method": {"type": "full", "lora": {"r": 8}}}),
    _case("lora-r-zero", "spec.method.lora.r", {"method": {"lora": {"r": 0}}}),
    _case("lora-r-huge", "spec.method.lora.r", {"method": {"lora": {"r": 4096}}}),
    _case("lora-dropout-one", "spec.method.lora.dropout", {"method": {"lora": {"dropout": 1.0}}}),
    _case(
        "lora-all-linear-and-names",
        "spec.method.lora.targetModules",
        {"method": {"lora": {"targetModules": ["all-linear", "q_proj"]}}},
    ),
    _case(
        "lora-no-target-modules",
        "spec.method.lora.targetModules",
        {"method": {"lora": {"targetModules": []}}},
    ),
    _case(
        "quant-bits-3",
        "spec.method.quantization.bits",
        {"method": {"type": "qlora", "quantization": {"bits": 3}}},
    ),
    _case(
        "quant-fp4-8bit",
        "spec.method.quantization.quantType",
        {"method": {"type": "qlora", "quantization": {"bits": 8, "quantType": "fp4"}}},
    ),
    _case(
        "quant-compute-int8",
        "spec.method.quantization.computeDtype",
        {"method": {"type": "qlora", "quantization": {"computeDtype": "int8"}}},
    ),
    # task
    _case("task-unknown", "spec.task.type", {"task": {"type": "summarization"}}),
    _case("seqcls-without-labels", "spec.task.labels", {"task": {"type": "sequence-classification"}}),
    _case(
        "tokencls-without-labels",
        "spec.task.labels",
        {"model": _BERT, "task": {"type": "token-classification"}},
    ),
    _case("labels-on-causal-lm", "spec.task.labels", {"task": {"labels": ["a", "b"]}}),
    _case(
        "labels-single", "spec.task.labels", {"task": {"type": "sequence-classification", "labels": ["a"]}}
    ),
    _case("source-prefix-on-causal-lm", "spec.task.sourcePrefix", {"task": {"sourcePrefix": "translate: "}}),
    _case(
        "prompt-format-on-seq2seq",
        "spec.task.promptFormat",
        {"model": {"preset": "tiny-t5"}, "task": {"type": "seq2seq", "promptFormat": "plain"}},
    ),
    _case(
        "loss-on-seq2seq",
        "spec.task.lossOn",
        {"model": {"preset": "tiny-t5"}, "task": {"type": "seq2seq", "lossOn": "all"}},
    ),
    _case(
        "chat-template-on-seq2seq",
        "spec.task.chatTemplate",
        {"model": {"preset": "tiny-t5"}, "task": {"type": "seq2seq", "chatTemplate": "chatml"}},
    ),
    _case("chat-template-unknown", "spec.task.chatTemplate", {"task": {"chatTemplate": "llama3"}}),
    _case(
        "chat-template-escapes", "spec.task.chatTemplate", {"task": {"chatTemplate": "../other/chat.jinja"}}
    ),
    _case("chat-template-absolute", "spec.task.chatTemplate", {"task": {"chatTemplate": "/etc/chat.jinja"}}),
    _case(
        "chat-template-file-over-https",
        "spec.task.chatTemplate",
        {"task": {"chatTemplate": "chat.jinja"}, "dataset": {"uri": "https://example.com/train.jsonl"}},
    ),
    _case("loss-on-unknown", "spec.task.lossOn", {"task": {"lossOn": "user"}}),
    _case("encoder-causal-lm", "spec.task.type", {"model": _BERT}),
    _case(
        "encdec-classification",
        "spec.task.type",
        {"model": {"preset": "tiny-t5"}, "task": {"type": "sequence-classification", "labels": ["a", "b"]}},
    ),
    _case(
        "decoder-token-classification",
        "spec.task.type",
        {"task": {"type": "token-classification", "labels": ["O", "B-X"]}},
    ),
    # dataset
    _case(
        "ssrf-loopback", "spec.dataset.uri", {"dataset": {"uri": "http://127.0.0.1/d.jsonl"}}, server=False
    ),
    _case(
        "ssrf-metadata-ip",
        "spec.dataset.uri",
        {"dataset": {"uri": "http://169.254.169.254/latest/meta-data"}},
        server=False,
    ),
    _case("ssrf-private", "spec.dataset.uri", {"dataset": {"uri": "https://10.0.0.5/d.csv"}}, server=False),
    _case(
        "ssrf-decimal-ip", "spec.dataset.uri", {"dataset": {"uri": "http://2130706433/d.jsonl"}}, server=False
    ),
    _case("ssrf-hex-ip", "spec.dataset.uri", {"dataset": {"uri": "http://0x7f.0.0.1/d.jsonl"}}, server=False),
    _case(
        "ssrf-ipv6-loopback", "spec.dataset.uri", {"dataset": {"uri": "http://[::1]:8080/d"}}, server=False
    ),
    _case(
        "ssrf-ipv4-mapped",
        "spec.dataset.uri",
        {"dataset": {"uri": "http://[::ffff:192.168.1.1]/d"}},
        server=False,
    ),
    _case(
        "ssrf-localhost", "spec.dataset.uri", {"dataset": {"uri": "http://localhost:8080/d"}}, server=False
    ),
    _case(
        "ssrf-metadata-name",
        "spec.dataset.uri",
        {"dataset": {"uri": "http://metadata.google.internal/computeMetadata/v1/"}},
        server=False,
    ),
    _case(
        "ssrf-cluster-service",
        "spec.dataset.uri",
        {"dataset": {"uri": "http://minio.storage.svc.cluster.local/d"}},
        server=False,
    ),
    _case(
        "url-credentials",
        "spec.dataset.uri",
        {"dataset": {"uri": "https://user:pw@data.example.com/d.csv"}},
        server=False,
    ),
    _case("dataset-bad-scheme", "spec.dataset.uri", {"dataset": {"uri": "ftp://example.com/d.csv"}}),
    _case(
        "configmap-without-key", "spec.dataset.uri", {"dataset": {"uri": "configmap://data"}}, server=False
    ),
    _case("dataset-format-unknown", "spec.dataset.format", {"dataset": {"format": "xml"}}),
    _case("dataset-format-hf-on-configmap", "spec.dataset.format", {"dataset": {"format": "hf"}}),
    _case(
        "dataset-jsonl-format-on-hf",
        "spec.dataset.format",
        {"dataset": {"uri": "hf://org/data", "format": "jsonl"}},
    ),
    _case("dataset-split-on-a-file", "spec.dataset.split", {"dataset": {"split": "validation"}}),
    _case("dataset-oci", "spec.dataset.uri", {"dataset": {"uri": "oci://registry.example.com/data:v1"}}),
    _case("validation-split-too-big", "spec.dataset.validationSplit", {"dataset": {"validationSplit": 0.9}}),
    _case("max-samples-zero", "spec.dataset.maxSamples", {"dataset": {"maxSamples": 0}}),
    # training
    _case("epochs-and-max-steps", "spec.training.maxSteps", {"training": {"epochs": 1, "maxSteps": 10}}),
    _case("learning-rate-negative", "spec.training.learningRate", {"training": {"learningRate": -0.1}}),
    _case("scheduler-unknown", "spec.training.lrScheduler", {"training": {"lrScheduler": "step"}}),
    _case(
        "constant-scheduler-with-warmup",
        "spec.training.warmupRatio",
        {"training": {"lrScheduler": "constant"}},
    ),
    _case("precision-int8", "spec.training.precision", {"training": {"precision": "int8"}}),
    _case("batch-size-zero", "spec.training.perDeviceBatchSize", {"training": {"perDeviceBatchSize": 0}}),
    _case("max-seq-length-tiny", "spec.training.maxSeqLength", {"training": {"maxSeqLength": 4}}),
    _case(
        "packing-classification",
        "spec.training.packing",
        {"task": {"type": "sequence-classification", "labels": ["a", "b"]}, "training": {"packing": True}},
    ),
    _case(
        "padding-free-classification",
        "spec.training.batching",
        {
            "task": {"type": "sequence-classification", "labels": ["a", "b"]},
            "training": {"batching": "padding-free"},
        },
    ),
    _case("batching-unknown", "spec.training.batching", {"training": {"batching": "bucketed"}}),
    _case(
        "packing-padded",
        "spec.training.batching",
        {"training": {"packing": True, "batching": "length-grouped"}},
    ),
    _case(
        "shape-on-classification",
        "spec.dataset.shape",
        {"task": {"type": "sequence-classification", "labels": ["a", "b"]}, "dataset": {"shape": "text"}},
    ),
    _case("shape-unknown", "spec.dataset.shape", {"dataset": {"shape": "sharegpt"}}),
    _case(
        "chat-role-unknown", "spec.dataset.chat.roles.gpt", {"dataset": {"chat": {"roles": {"gpt": "model"}}}}
    ),
    _case("chat-role-key-empty", "spec.dataset.chat.roleKey", {"dataset": {"chat": {"roleKey": ""}}}),
    _case("eval-steps-without-validation", "spec.training.evalSteps", {"training": {"evalSteps": 10}}),
    # evaluation
    _case("evaluation-without-validation", "spec.evaluation.enabled", {"evaluation": {"enabled": True}}),
    _case(
        "evaluation-accuracy-of-causal-lm",
        "spec.evaluation.metrics",
        {"evaluation": {"metrics": ["accuracy"]}},
    ),
    _case(
        "evaluation-perplexity-of-classification",
        "spec.evaluation.metrics",
        {
            "model": _BERT,
            "task": {"type": "sequence-classification", "labels": ["a", "b"]},
            "evaluation": {"metrics": ["perplexity"]},
        },
    ),
    _case("evaluation-unknown-metric", "spec.evaluation.metrics", {"evaluation": {"metrics": ["rouge"]}}),
    _case("evaluation-bleu-of-causal-lm", "spec.evaluation.metrics", {"evaluation": {"metrics": ["bleu"]}}),
    _case(
        "evaluation-macro-f1-of-token-classification",
        "spec.evaluation.metrics",
        {"model": _BERT, "task": _NER, "evaluation": {"metrics": ["macro_f1"]}},
    ),
    _case(
        "evaluation-exact-match-of-seq2seq",
        "spec.evaluation.metrics",
        {
            "model": {"preset": "tiny-t5"},
            "task": {"type": "seq2seq"},
            "evaluation": {"metrics": ["exact_match"]},
        },
    ),
    _case(
        "evaluation-bleu-of-question-answering",
        "spec.evaluation.metrics",
        {"model": _BERT, "task": {"type": "question-answering"}, "evaluation": {"metrics": ["bleu"]}},
    ),
    _case(
        "evaluation-entities-without-bio-labels",
        "spec.task.labels",
        {
            "model": _BERT,
            "task": {"type": "token-classification", "labels": ["other", "person", "place"]},
            "dataset": {"validationSplit": 0.1},
            "evaluation": {"enabled": True},
        },
        server=False,
    ),
    _case(
        "evaluation-max-new-tokens-of-classification",
        "spec.evaluation.maxNewTokens",
        {
            "model": _BERT,
            "task": {"type": "sequence-classification", "labels": ["a", "b"]},
            "evaluation": {"maxNewTokens": 32},
        },
    ),
    _case(
        "evaluation-max-new-tokens-zero",
        "spec.evaluation.maxNewTokens",
        {"model": {"preset": "tiny-t5"}, "task": {"type": "seq2seq"}, "evaluation": {"maxNewTokens": 0}},
    ),
    _case("evaluation-max-samples-zero", "spec.evaluation.maxSamples", {"evaluation": {"maxSamples": 0}}),
    _case(
        "evaluation-exact-match-of-text-rows",
        "spec.evaluation.metrics",
        {"dataset": {"shape": "text"}, "evaluation": {"metrics": ["exact_match", "loss"]}},
    ),
    _case(
        "evaluation-max-new-tokens-without-exact-match",
        "spec.evaluation.maxNewTokens",
        {"evaluation": {"metrics": ["loss"], "maxNewTokens": 16}},
    ),
    _case(
        "evaluation-dataset-and-validation-split",
        "spec.evaluation.datasetUri",
        {
            "dataset": {"validationSplit": 0.1},
            "evaluation": {"enabled": True, "datasetUri": "pvc://data/eval.jsonl"},
        },
    ),
    _case(
        "evaluation-dataset-local-path",
        "spec.evaluation.datasetUri",
        {"evaluation": {"enabled": True, "datasetUri": "/data/eval.jsonl"}},
    ),
    _case(
        "evaluation-dataset-private-url",
        "spec.evaluation.datasetUri",
        {"evaluation": {"enabled": True, "datasetUri": "https://10.0.0.7/eval.jsonl"}},
        server=False,
    ),
    _case(
        "evaluation-dataset-oci",
        "spec.evaluation.datasetUri",
        {"evaluation": {"enabled": True, "datasetUri": "oci://registry.example.com/data/eval:v1"}},
    ),
    _case(
        "evaluation-dataset-split-of-a-file",
        "spec.evaluation.datasetSplit",
        {"evaluation": {"enabled": True, "datasetUri": "pvc://data/eval.jsonl", "datasetSplit": "test"}},
    ),
    # distributed
    _case(
        "zero-stage-4",
        "spec.distributed.deepspeed.zeroStage",
        {"distributed": {"deepspeed": {"zeroStage": 4}}},
    ),
    _case(
        "offload-params-zero2",
        "spec.distributed.deepspeed.offloadParams",
        {"distributed": {"deepspeed": {"zeroStage": 2, "offloadParams": "cpu"}}},
    ),
    _case(
        "offload-optimizer-zero0",
        "spec.distributed.deepspeed.offloadOptimizer",
        {"distributed": {"deepspeed": {"zeroStage": 0, "offloadOptimizer": "cpu"}}},
    ),
    _case(
        "offload-to-nvme",
        "spec.distributed.deepspeed.offloadOptimizer",
        {"distributed": {"deepspeed": {"offloadOptimizer": "nvme"}}},
    ),
    _case(
        "deepspeed-override-batch",
        "spec.distributed.deepspeed.overrides",
        {"distributed": {"deepspeed": {"overrides": {"train_batch_size": 64}}}},
    ),
    *(
        _case(
            f"deepspeed-override-{key}",
            "spec.distributed.deepspeed.overrides",
            {"distributed": {"deepspeed": {"overrides": {key: value}}}},
        )
        for key, value in (
            ("optimizer", {"type": "Adam", "params": {"lr": 0.001}}),
            ("scheduler", {"type": "WarmupLR"}),
            ("gradient_clipping", 0.5),
            ("bf16", {"enabled": False}),
        )
    ),
    # DeepSpeed ZeRO refuses optimizers it has not tested, and its CPU offload steps its own AdamW.
    *(
        _case(
            f"{optimizer}-with-zero",
            "spec.training.optimizer",
            {"training": {"optimizer": optimizer}, "distributed": {"deepspeed": {"zeroStage": 1}}},
        )
        for optimizer in ("sgd", "adamw-8bit", "paged-adamw-8bit")
    ),
    _case(
        "sgd-with-optimizer-offload",
        "spec.training.optimizer",
        {"training": {"optimizer": "sgd"}, "distributed": {"deepspeed": {"offloadOptimizer": "cpu"}}},
    ),
    _case("nodes-zero", "spec.distributed.nodes", {"distributed": {"nodes": 0}}),
    _case(
        "processes-exceed-gpus",
        "spec.distributed.processesPerNode",
        {"distributed": {"processesPerNode": 4}, "resources": {"gpu": {"count": 2}}},
    ),
    # resources
    _case("gpu-count-17", "spec.resources.gpu.count", {"resources": {"gpu": {"count": 17}}}),
    _case(
        "real-preset-without-gpu",
        "spec.resources.gpu.count",
        {"model": _LLAMA8B, "resources": {"gpu": {"count": 0}}},
    ),
    _case(
        "gpu-product-without-gpu",
        "spec.resources.gpu",
        {"resources": {"gpu": {"count": 0, "product": "NVIDIA-A100-SXM4-80GB"}}},
    ),
    _case(
        "not-enough-gpu-memory",
        "spec.resources.gpu.minMemoryGiB",
        {
            "model": _LLAMA8B,
            "method": {"type": "full"},
            "resources": {"gpu": {"count": 1, "minMemoryGiB": 24}},
        },
        server=False,
        gpu_fit=True,
    ),
    _case(
        "gpu-product-too-small",
        "spec.resources.gpu.product",
        {"model": _LLAMA8B, "resources": {"gpu": {"count": 1, "product": "Tesla-T4"}}},
        server=False,
        gpu_fit=True,
    ),
    _case("memory-not-a-quantity", "spec.resources.memory", {"resources": {"memory": "lots"}}),
    _case(
        "toleration-bad-operator",
        "spec.resources.tolerations",
        {"resources": {"tolerations": [{"key": "k", "operator": "Maybe"}]}},
    ),
    # output and run policy
    _case("output-https", "spec.output.uri", {"output": {"uri": "https://example.com/upload"}}),
    _case("output-oci-malformed", "spec.output.uri", {"output": {"uri": "oci://Registry"}}, server=False),
    _case(
        "output-s3-uppercase-bucket", "spec.output.uri", {"output": {"uri": "s3://Models/out"}}, server=False
    ),
    _case(
        "merge-adapter-full",
        "spec.output.mergeAdapter",
        {"method": {"type": "full"}, "output": {"mergeAdapter": True}},
    ),
    _case("formats-unknown", "spec.output.formats", {"output": {"formats": ["gguf"]}}),
    _case("formats-twice", "spec.output.formats", {"output": {"formats": ["onnx", "onnx"]}}),
    _case(
        "formats-merged-full",
        "spec.output.formats",
        {"method": {"type": "full"}, "output": {"formats": ["merged"]}},
    ),
    _case(
        "formats-onnx-seq2seq",
        "spec.output.formats",
        {"model": {"preset": "tiny-t5"}, "task": {"type": "seq2seq"}, "output": {"formats": ["onnx"]}},
    ),
    _case("backoff-negative", "spec.runPolicy.backoffLimit", {"runPolicy": {"backoffLimit": -1}}),
    _case("queue-name-invalid", "spec.runPolicy.queueName", {"runPolicy": {"queueName": "Team_A"}}),
    _case(
        "priority-class-without-queue",
        "spec.runPolicy.workloadPriorityClass",
        {"runPolicy": {"workloadPriorityClass": "high"}},
    ),
    _case(
        "deadline-zero", "spec.runPolicy.activeDeadlineSeconds", {"runPolicy": {"activeDeadlineSeconds": 0}}
    ),
]
