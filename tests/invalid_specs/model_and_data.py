"""Invalid jobs: required fields and types, model, method, task, dataset and training."""

from __future__ import annotations

from tests.invalid_specs.base import BERT, DELETE, InvalidSpec, case, merge, minimal_job

MODEL_AND_DATA: list[InvalidSpec] = [
    # Required fields, wrong types, unknown fields.
    InvalidSpec("missing-spec", merge(minimal_job(), {"spec": DELETE}), "spec"),
    case("missing-model", "spec.model", {"model": DELETE}),
    case("missing-dataset", "spec.dataset", {"dataset": DELETE}),
    case("lora-r-string", "spec.method.lora.r", {"method": {"lora": {"r": "eight"}}}),
    case("learning-rate-string", "spec.training.learningRate", {"training": {"learningRate": "fast"}}),
    case("suspend-string", "spec.runPolicy.suspend", {"runPolicy": {"suspend": "maybe"}}),
    case("unknown-spec-field", "spec.epochs", {"epochs": 3}),
    case("unknown-nested-field", "spec.training.learningrate", {"training": {"learningrate": 0.1}}),
    case(
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
    case("model-preset-and-uri", "spec.model.preset", {"model": {"uri": "hf://org/name"}}),
    case(
        "model-uri-climbs", "spec.model.uri", {"model": {"preset": DELETE, "uri": "pvc://models/../secrets"}}
    ),
    case("dataset-uri-climbs", "spec.dataset.uri", {"dataset": {"uri": "pvc://data/../../etc/passwd"}}),
    case(
        "evaluation-dataset-uri-climbs",
        "spec.evaluation.datasetUri",
        {"evaluation": {"enabled": True, "datasetUri": "s3://bucket/../other.jsonl"}},
    ),
    case("model-neither", "spec.model.preset", {"model": {"preset": DELETE}}),
    case("model-unknown-preset", "spec.model.preset", {"model": {"preset": "gpt-5"}}),
    case("model-uri-bad-scheme", "spec.model.uri", {"model": {"preset": DELETE, "uri": "ftp://host/model"}}),
    case(
        "model-s3-bucket-too-short",
        "spec.model.uri",
        {"model": {"preset": DELETE, "uri": "s3://m/base"}},
        False,
    ),
    case(
        "model-oci-no-repository",
        "spec.model.uri",
        {"model": {"preset": DELETE, "uri": "oci://registry.example.com"}},
        server=False,
    ),
    case(
        "model-uri-malformed-hf",
        "spec.model.uri",
        {"model": {"preset": DELETE, "uri": "hf://"}},
        server=False,
    ),
    # method
    case("method-unknown", "spec.method.type", {"method": {"type": "prefix-tuning"}}),
    case("qlora-without-quantization", "spec.method.quantization", {"method": {"type": "qlora"}}),
    case("lora-with-quantization", "spec.method.quantization", {"method": {"quantization": {"bits": 4}}}),
    case(
        "dora-with-quantization",
        "spec.method.quantization",
        {"method": {"type": "dora", "quantization": {"bits": 4}}},
    ),
    case("full-with-lora", "spec.method.lora", {"method": {"type": "full", "lora": {"r": 8}}}),
    case("lora-r-zero", "spec.method.lora.r", {"method": {"lora": {"r": 0}}}),
    case("lora-r-huge", "spec.method.lora.r", {"method": {"lora": {"r": 4096}}}),
    case("lora-dropout-one", "spec.method.lora.dropout", {"method": {"lora": {"dropout": 1.0}}}),
    case(
        "lora-all-linear-and-names",
        "spec.method.lora.targetModules",
        {"method": {"lora": {"targetModules": ["all-linear", "q_proj"]}}},
    ),
    case(
        "lora-no-target-modules",
        "spec.method.lora.targetModules",
        {"method": {"lora": {"targetModules": []}}},
    ),
    case(
        "quant-bits-3",
        "spec.method.quantization.bits",
        {"method": {"type": "qlora", "quantization": {"bits": 3}}},
    ),
    case(
        "quant-fp4-8bit",
        "spec.method.quantization.quantType",
        {"method": {"type": "qlora", "quantization": {"bits": 8, "quantType": "fp4"}}},
    ),
    case(
        "quant-compute-int8",
        "spec.method.quantization.computeDtype",
        {"method": {"type": "qlora", "quantization": {"computeDtype": "int8"}}},
    ),
    # task
    case("task-unknown", "spec.task.type", {"task": {"type": "summarization"}}),
    case("seqcls-without-labels", "spec.task.labels", {"task": {"type": "sequence-classification"}}),
    case(
        "tokencls-without-labels",
        "spec.task.labels",
        {"model": BERT, "task": {"type": "token-classification"}},
    ),
    case("labels-on-causal-lm", "spec.task.labels", {"task": {"labels": ["a", "b"]}}),
    case("labels-single", "spec.task.labels", {"task": {"type": "sequence-classification", "labels": ["a"]}}),
    case("source-prefix-on-causal-lm", "spec.task.sourcePrefix", {"task": {"sourcePrefix": "translate: "}}),
    case(
        "prompt-format-on-seq2seq",
        "spec.task.promptFormat",
        {"model": {"preset": "tiny-t5"}, "task": {"type": "seq2seq", "promptFormat": "plain"}},
    ),
    case(
        "loss-on-seq2seq",
        "spec.task.lossOn",
        {"model": {"preset": "tiny-t5"}, "task": {"type": "seq2seq", "lossOn": "all"}},
    ),
    case(
        "chat-template-on-seq2seq",
        "spec.task.chatTemplate",
        {"model": {"preset": "tiny-t5"}, "task": {"type": "seq2seq", "chatTemplate": "chatml"}},
    ),
    case("chat-template-unknown", "spec.task.chatTemplate", {"task": {"chatTemplate": "llama3"}}),
    case(
        "chat-template-escapes", "spec.task.chatTemplate", {"task": {"chatTemplate": "../other/chat.jinja"}}
    ),
    case("chat-template-absolute", "spec.task.chatTemplate", {"task": {"chatTemplate": "/etc/chat.jinja"}}),
    case(
        "chat-template-file-over-https",
        "spec.task.chatTemplate",
        {"task": {"chatTemplate": "chat.jinja"}, "dataset": {"uri": "https://example.com/train.jsonl"}},
    ),
    case("loss-on-unknown", "spec.task.lossOn", {"task": {"lossOn": "user"}}),
    case("encoder-causal-lm", "spec.task.type", {"model": BERT}),
    case(
        "encdec-classification",
        "spec.task.type",
        {"model": {"preset": "tiny-t5"}, "task": {"type": "sequence-classification", "labels": ["a", "b"]}},
    ),
    case(
        "decoder-token-classification",
        "spec.task.type",
        {"task": {"type": "token-classification", "labels": ["O", "B-X"]}},
    ),
    # dataset
    case("ssrf-loopback", "spec.dataset.uri", {"dataset": {"uri": "http://127.0.0.1/d.jsonl"}}, server=False),
    case(
        "ssrf-metadata-ip",
        "spec.dataset.uri",
        {"dataset": {"uri": "http://169.254.169.254/latest/meta-data"}},
        server=False,
    ),
    case("ssrf-private", "spec.dataset.uri", {"dataset": {"uri": "https://10.0.0.5/d.csv"}}, server=False),
    case(
        "ssrf-decimal-ip", "spec.dataset.uri", {"dataset": {"uri": "http://2130706433/d.jsonl"}}, server=False
    ),
    case("ssrf-hex-ip", "spec.dataset.uri", {"dataset": {"uri": "http://0x7f.0.0.1/d.jsonl"}}, server=False),
    case("ssrf-ipv6-loopback", "spec.dataset.uri", {"dataset": {"uri": "http://[::1]:8080/d"}}, server=False),
    case(
        "ssrf-ipv4-mapped",
        "spec.dataset.uri",
        {"dataset": {"uri": "http://[::ffff:192.168.1.1]/d"}},
        server=False,
    ),
    case("ssrf-localhost", "spec.dataset.uri", {"dataset": {"uri": "http://localhost:8080/d"}}, server=False),
    case(
        "ssrf-metadata-name",
        "spec.dataset.uri",
        {"dataset": {"uri": "http://metadata.google.internal/computeMetadata/v1/"}},
        server=False,
    ),
    case(
        "ssrf-cluster-service",
        "spec.dataset.uri",
        {"dataset": {"uri": "http://minio.storage.svc.cluster.local/d"}},
        server=False,
    ),
    case(
        "url-credentials",
        "spec.dataset.uri",
        {"dataset": {"uri": "https://user:pw@data.example.com/d.csv"}},
        server=False,
    ),
    case("dataset-bad-scheme", "spec.dataset.uri", {"dataset": {"uri": "ftp://example.com/d.csv"}}),
    case("configmap-without-key", "spec.dataset.uri", {"dataset": {"uri": "configmap://data"}}, server=False),
    case("dataset-format-unknown", "spec.dataset.format", {"dataset": {"format": "xml"}}),
    case("dataset-format-hf-on-configmap", "spec.dataset.format", {"dataset": {"format": "hf"}}),
    case(
        "dataset-jsonl-format-on-hf",
        "spec.dataset.format",
        {"dataset": {"uri": "hf://org/data", "format": "jsonl"}},
    ),
    case("dataset-split-on-a-file", "spec.dataset.split", {"dataset": {"split": "validation"}}),
    case("dataset-oci", "spec.dataset.uri", {"dataset": {"uri": "oci://registry.example.com/data:v1"}}),
    case("validation-split-too-big", "spec.dataset.validationSplit", {"dataset": {"validationSplit": 0.9}}),
    case("max-samples-zero", "spec.dataset.maxSamples", {"dataset": {"maxSamples": 0}}),
    # training
    case("epochs-and-max-steps", "spec.training.maxSteps", {"training": {"epochs": 1, "maxSteps": 10}}),
    case("learning-rate-negative", "spec.training.learningRate", {"training": {"learningRate": -0.1}}),
    case("scheduler-unknown", "spec.training.lrScheduler", {"training": {"lrScheduler": "step"}}),
    case(
        "constant-scheduler-with-warmup",
        "spec.training.warmupRatio",
        {"training": {"lrScheduler": "constant"}},
    ),
    case("precision-int8", "spec.training.precision", {"training": {"precision": "int8"}}),
    case("batch-size-zero", "spec.training.perDeviceBatchSize", {"training": {"perDeviceBatchSize": 0}}),
    case("max-seq-length-tiny", "spec.training.maxSeqLength", {"training": {"maxSeqLength": 4}}),
    case(
        "packing-classification",
        "spec.training.packing",
        {"task": {"type": "sequence-classification", "labels": ["a", "b"]}, "training": {"packing": True}},
    ),
    case(
        "padding-free-classification",
        "spec.training.batching",
        {
            "task": {"type": "sequence-classification", "labels": ["a", "b"]},
            "training": {"batching": "padding-free"},
        },
    ),
    case("batching-unknown", "spec.training.batching", {"training": {"batching": "bucketed"}}),
    case(
        "packing-padded",
        "spec.training.batching",
        {"training": {"packing": True, "batching": "length-grouped"}},
    ),
    case(
        "shape-on-classification",
        "spec.dataset.shape",
        {"task": {"type": "sequence-classification", "labels": ["a", "b"]}, "dataset": {"shape": "text"}},
    ),
    case("shape-unknown", "spec.dataset.shape", {"dataset": {"shape": "sharegpt"}}),
    case(
        "chat-role-unknown", "spec.dataset.chat.roles.gpt", {"dataset": {"chat": {"roles": {"gpt": "model"}}}}
    ),
    case("chat-role-key-empty", "spec.dataset.chat.roleKey", {"dataset": {"chat": {"roleKey": ""}}}),
    case("eval-steps-without-validation", "spec.training.evalSteps", {"training": {"evalSteps": 10}}),
]
