"""Invalid jobs: evaluation, distributed training, resources, output and run policy."""

from __future__ import annotations

from tests.invalid_specs.base import BERT, DELETE, LLAMA8B, NER, InvalidSpec, case

RUN_AND_OUTPUT: list[InvalidSpec] = [
    # evaluation
    case("evaluation-without-validation", "spec.evaluation.enabled", {"evaluation": {"enabled": True}}),
    case(
        "evaluation-accuracy-of-causal-lm",
        "spec.evaluation.metrics",
        {"evaluation": {"metrics": ["accuracy"]}},
    ),
    case(
        "evaluation-perplexity-of-classification",
        "spec.evaluation.metrics",
        {
            "model": BERT,
            "task": {"type": "sequence-classification", "labels": ["a", "b"]},
            "evaluation": {"metrics": ["perplexity"]},
        },
    ),
    case("evaluation-unknown-metric", "spec.evaluation.metrics", {"evaluation": {"metrics": ["rouge"]}}),
    case("evaluation-bleu-of-causal-lm", "spec.evaluation.metrics", {"evaluation": {"metrics": ["bleu"]}}),
    case(
        "evaluation-macro-f1-of-token-classification",
        "spec.evaluation.metrics",
        {"model": BERT, "task": NER, "evaluation": {"metrics": ["macro_f1"]}},
    ),
    case(
        "evaluation-exact-match-of-seq2seq",
        "spec.evaluation.metrics",
        {
            "model": {"preset": "tiny-t5"},
            "task": {"type": "seq2seq"},
            "evaluation": {"metrics": ["exact_match"]},
        },
    ),
    case(
        "evaluation-bleu-of-question-answering",
        "spec.evaluation.metrics",
        {"model": BERT, "task": {"type": "question-answering"}, "evaluation": {"metrics": ["bleu"]}},
    ),
    case(
        "evaluation-entities-without-bio-labels",
        "spec.task.labels",
        {
            "model": BERT,
            "task": {"type": "token-classification", "labels": ["other", "person", "place"]},
            "dataset": {"validationSplit": 0.1},
            "evaluation": {"enabled": True},
        },
        server=False,
    ),
    case(
        "evaluation-max-new-tokens-of-classification",
        "spec.evaluation.maxNewTokens",
        {
            "model": BERT,
            "task": {"type": "sequence-classification", "labels": ["a", "b"]},
            "evaluation": {"maxNewTokens": 32},
        },
    ),
    case(
        "evaluation-max-new-tokens-zero",
        "spec.evaluation.maxNewTokens",
        {"model": {"preset": "tiny-t5"}, "task": {"type": "seq2seq"}, "evaluation": {"maxNewTokens": 0}},
    ),
    case("evaluation-max-samples-zero", "spec.evaluation.maxSamples", {"evaluation": {"maxSamples": 0}}),
    case(
        "evaluation-exact-match-of-text-rows",
        "spec.evaluation.metrics",
        {"dataset": {"shape": "text"}, "evaluation": {"metrics": ["exact_match", "loss"]}},
    ),
    case(
        "evaluation-max-new-tokens-without-exact-match",
        "spec.evaluation.maxNewTokens",
        {"evaluation": {"metrics": ["loss"], "maxNewTokens": 16}},
    ),
    case(
        "evaluation-dataset-and-validation-split",
        "spec.evaluation.datasetUri",
        {
            "dataset": {"validationSplit": 0.1},
            "evaluation": {"enabled": True, "datasetUri": "pvc://data/eval.jsonl"},
        },
    ),
    case(
        "evaluation-dataset-local-path",
        "spec.evaluation.datasetUri",
        {"evaluation": {"enabled": True, "datasetUri": "/data/eval.jsonl"}},
    ),
    case(
        "evaluation-dataset-private-url",
        "spec.evaluation.datasetUri",
        {"evaluation": {"enabled": True, "datasetUri": "https://10.0.0.7/eval.jsonl"}},
        server=False,
    ),
    case(
        "evaluation-dataset-oci",
        "spec.evaluation.datasetUri",
        {"evaluation": {"enabled": True, "datasetUri": "oci://registry.example.com/data/eval:v1"}},
    ),
    case(
        "evaluation-dataset-split-of-a-file",
        "spec.evaluation.datasetSplit",
        {"evaluation": {"enabled": True, "datasetUri": "pvc://data/eval.jsonl", "datasetSplit": "test"}},
    ),
    # distributed
    case(
        "zero-stage-4",
        "spec.distributed.deepspeed.zeroStage",
        {"distributed": {"deepspeed": {"zeroStage": 4}}},
    ),
    case(
        "offload-params-zero2",
        "spec.distributed.deepspeed.offloadParams",
        {"distributed": {"deepspeed": {"zeroStage": 2, "offloadParams": "cpu"}}},
    ),
    case(
        "offload-optimizer-zero0",
        "spec.distributed.deepspeed.offloadOptimizer",
        {"distributed": {"deepspeed": {"zeroStage": 0, "offloadOptimizer": "cpu"}}},
    ),
    case(
        "offload-to-nvme",
        "spec.distributed.deepspeed.offloadOptimizer",
        {"distributed": {"deepspeed": {"offloadOptimizer": "nvme"}}},
    ),
    case(
        "deepspeed-override-batch",
        "spec.distributed.deepspeed.overrides",
        {"distributed": {"deepspeed": {"overrides": {"train_batch_size": 64}}}},
    ),
    *(
        case(
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
        case(
            f"{optimizer}-with-zero",
            "spec.training.optimizer",
            {"training": {"optimizer": optimizer}, "distributed": {"deepspeed": {"zeroStage": 1}}},
        )
        for optimizer in ("sgd", "adamw-8bit", "paged-adamw-8bit")
    ),
    case(
        "sgd-with-optimizer-offload",
        "spec.training.optimizer",
        {"training": {"optimizer": "sgd"}, "distributed": {"deepspeed": {"offloadOptimizer": "cpu"}}},
    ),
    case("nodes-zero", "spec.distributed.nodes", {"distributed": {"nodes": 0}}),
    case(
        "processes-exceed-gpus",
        "spec.distributed.processesPerNode",
        {"distributed": {"processesPerNode": 4}, "resources": {"gpu": {"count": 2}}},
    ),
    case("output-uri-climbs", "spec.output.uri", {"output": {"uri": "pvc://results/../other-team"}}),
    case("output-s3-prefix-climbs", "spec.output.uri", {"output": {"uri": "s3://bucket/team-a/../team-b"}}),
    case(
        "processes-exceed-the-default-gpu",
        "spec.distributed.processesPerNode",
        {"model": {"preset": "phi-3-mini-4k-instruct"}, "distributed": {"processesPerNode": 4}},
    ),
    case(
        "processes-exceed-the-default-gpu-of-a-model-uri",
        "spec.distributed.processesPerNode",
        {"model": {"preset": DELETE, "uri": "hf://org/model"}, "distributed": {"processesPerNode": 2}},
    ),
    # resources
    case("gpu-count-17", "spec.resources.gpu.count", {"resources": {"gpu": {"count": 17}}}),
    case(
        "real-preset-without-gpu",
        "spec.resources.gpu.count",
        {"model": LLAMA8B, "resources": {"gpu": {"count": 0}}},
    ),
    case(
        "gpu-product-without-gpu",
        "spec.resources.gpu",
        {"resources": {"gpu": {"count": 0, "product": "NVIDIA-A100-SXM4-80GB"}}},
    ),
    case(
        "not-enough-gpu-memory",
        "spec.resources.gpu.minMemoryGiB",
        {
            "model": LLAMA8B,
            "method": {"type": "full"},
            "resources": {"gpu": {"count": 1, "minMemoryGiB": 24}},
        },
        server=False,
        gpu_fit=True,
    ),
    case(
        "gpu-product-too-small",
        "spec.resources.gpu.product",
        {"model": LLAMA8B, "resources": {"gpu": {"count": 1, "product": "Tesla-T4"}}},
        server=False,
        gpu_fit=True,
    ),
    case("memory-not-a-quantity", "spec.resources.memory", {"resources": {"memory": "lots"}}),
    case(
        "toleration-bad-operator",
        "spec.resources.tolerations",
        {"resources": {"tolerations": [{"key": "k", "operator": "Maybe"}]}},
    ),
    # output and run policy
    case("output-https", "spec.output.uri", {"output": {"uri": "https://example.com/upload"}}),
    case("output-oci-malformed", "spec.output.uri", {"output": {"uri": "oci://Registry"}}, server=False),
    case(
        "output-s3-uppercase-bucket", "spec.output.uri", {"output": {"uri": "s3://Models/out"}}, server=False
    ),
    case(
        "merge-adapter-full",
        "spec.output.mergeAdapter",
        {"method": {"type": "full"}, "output": {"mergeAdapter": True}},
    ),
    case("formats-unknown", "spec.output.formats", {"output": {"formats": ["gguf"]}}),
    case("formats-twice", "spec.output.formats", {"output": {"formats": ["onnx", "onnx"]}}),
    case(
        "formats-merged-full",
        "spec.output.formats",
        {"method": {"type": "full"}, "output": {"formats": ["merged"]}},
    ),
    case(
        "formats-onnx-seq2seq",
        "spec.output.formats",
        {"model": {"preset": "tiny-t5"}, "task": {"type": "seq2seq"}, "output": {"formats": ["onnx"]}},
    ),
    case("backoff-negative", "spec.runPolicy.backoffLimit", {"runPolicy": {"backoffLimit": -1}}),
    case("queue-name-invalid", "spec.runPolicy.queueName", {"runPolicy": {"queueName": "Team_A"}}),
    case(
        "priority-class-without-queue",
        "spec.runPolicy.workloadPriorityClass",
        {"runPolicy": {"workloadPriorityClass": "high"}},
    ),
    case(
        "deadline-zero", "spec.runPolicy.activeDeadlineSeconds", {"runPolicy": {"activeDeadlineSeconds": 0}}
    ),
]
