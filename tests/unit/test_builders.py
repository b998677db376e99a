"""The builders one behaviour at a time (the golden files hold whole objects)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from finetune_api.references import S3_VARIABLES
from finetune_api.trainer import CONFIG_FILE_NAME, INSECURE_REGISTRIES_ENV, TrainerConfig
from finetune_operator import config, names
from finetune_operator.builders import storage, workload
from finetune_operator.config import Settings

from tests.unit.operator_fixtures import owner

SETTINGS = Settings()
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _pod(**spec: Any) -> dict[str, Any]:
    job: dict[str, Any] = workload.job(owner(**spec), SETTINGS)
    return dict(job["spec"]["template"]["spec"])


def _container(**spec: Any) -> dict[str, Any]:
    return dict(_pod(**spec)["containers"][0])


@pytest.mark.parametrize("name", ["a" * 50, "1st.run", "x.y.z", "9" * 50, "a.b", "a-b"])
def test_child_names_are_dns_labels_within_63_with_every_suffix(name: str) -> None:
    for child in (names.job(name), names.service(name), names.config_map(name), names.output_pvc(name),
                  names.pod_hostname(name, 255)):  # fmt: skip
        assert DNS_1035.match(child) and len(child) <= 63, child


def test_names_that_differ_only_in_dots_get_different_children() -> None:
    assert names.job("a.b") != names.job("a-b")
    assert names.base("my-job") == "my-job"


def test_gpus_are_requested_tolerated_and_matched_to_node_labels() -> None:
    spec = _pod(resources={"gpu": {"count": 2, "product": "NVIDIA-H100-80GB-HBM3", "minMemoryGiB": 80}})
    limits = spec["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "2" and spec["containers"][0]["resources"]["requests"] == limits
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {"matchExpressions": [{"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["81919"]}]}
    ]


def test_tiny_presets_without_gpus_get_no_gpu_toleration() -> None:
    spec = _pod()
    assert "tolerations" not in spec and spec["containers"][0]["resources"] == {}


def test_gpu_memory_rule_is_added_to_every_term_of_the_users_affinity() -> None:
    user = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
    ]}}, "podAntiAffinity": {"x": 1}}  # fmt: skip
    spec = _pod(resources={"gpu": {"count": 1, "minMemoryGiB": 24}, "affinity": user})
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert all(t["matchExpressions"][-1]["key"] == "nvidia.com/gpu.memory" for t in terms) and len(terms) == 2
    assert spec["affinity"]["podAntiAffinity"] == {"x": 1}


def test_user_placement_is_kept() -> None:
    spec = _pod(resources={"gpu": {"count": 1}, "nodeSelector": {"pool": "a100"}, "priorityClassName": "high",
                           "tolerations": [{"key": "spot", "operator": "Exists"}], "instanceType": "p4d.24xlarge"})  # fmt: skip
    assert spec["nodeSelector"] == {"pool": "a100", "node.kubernetes.io/instance-type": "p4d.24xlarge"}
    assert spec["priorityClassName"] == "high"
    assert spec["tolerations"][0] == {"key": "spot", "operator": "Exists"}


def test_installation_placement_comes_first_and_the_job_wins_on_a_shared_label() -> None:
    settings = config.from_env({
        "FINETUNE_TRAINER_NODE_SELECTOR": '{"pool": "training", "zone": "a"}',
        "FINETUNE_TRAINER_TOLERATIONS": '[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},'
                                        ' {"key": "spot", "operator": "Equal", "value": "yes"}]',
    })  # fmt: skip
    o = owner(resources={"gpu": {"count": 1}, "nodeSelector": {"zone": "b"},
                         "tolerations": [{"key": "team", "operator": "Exists"}]})  # fmt: skip
    spec = workload.job(o, settings)["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"pool": "training", "zone": "b"}
    assert spec["tolerations"] == [  # the GPU taint's toleration is not repeated
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Equal", "value": "yes"},
        {"key": "team", "operator": "Exists"},
    ]
    cpu_only = workload.job(owner(), settings)["spec"]["template"]["spec"]
    assert cpu_only["nodeSelector"] == {"pool": "training", "zone": "a"} and len(cpu_only["tolerations"]) == 2


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    spec = _pod()
    security = spec["containers"][0]["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] == 10001
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    writable = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"] if not m.get("readOnly")}
    assert {"/tmp", "/cache", "/output", "/dev/shm"} <= writable


def test_shared_memory_is_a_memory_empty_dir_of_the_requested_size() -> None:
    volumes = {v["name"]: v for v in _pod(resources={"sharedMemorySize": "16Gi"})["volumes"]}
    assert volumes["dshm"] == {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}


def test_secrets_reach_the_container_by_reference_only() -> None:
    spec = {"model": {"uri": "hf://org/model", "accessSecretRef": {"name": "hf", "key": "HF_TOKEN"}},
            "dataset": {"uri": "hf://org/data", "secretRef": {"name": "data-keys"}}}  # fmt: skip
    container = _container(**spec)
    assert [e for e in container["env"] if e["name"] == "HF_TOKEN"] == [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "HF_TOKEN"}}}
    ]
    assert "envFrom" not in container  # a Secret cannot set LD_PRELOAD, PATH or a proxy: only the keys read
    assert {e["name"] for e in container["env"] if "valueFrom" in e} == {"HF_TOKEN"}  # the model's, once
    config = workload.config_map(owner(**spec))["data"][CONFIG_FILE_NAME]
    assert "valueFrom" not in config and "secretKeyRef" not in config


def test_image_and_pull_policy_come_from_the_settings() -> None:
    job = workload.job(owner(), Settings(trainer_image="r.example/t:2", image_pull_policy="Never"))
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["imagePullPolicy"]) == ("r.example/t:2", "Never")
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_storage_secrets_reach_each_role_under_its_own_name() -> None:
    spec = {"model": {"uri": "oci://ghcr.io/team/base:v1", "accessSecretRef": {"name": "ghcr"}},
            "dataset": {"uri": "s3://corpora/train.jsonl", "secretRef": {"name": "s3-data"}},
            "output": {"uri": "s3://results/run", "pushSecretRef": {"name": "s3-out"}}}  # fmt: skip
    container, pod = _container(**spec), _pod(**spec)
    assert "envFrom" not in container
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs["FINETUNE_DATASET_AWS_ACCESS_KEY_ID"] == {"name": "s3-data", "key": "AWS_ACCESS_KEY_ID"}
    assert refs["FINETUNE_OUTPUT_AWS_ENDPOINT_URL"] == {
        "name": "s3-out",
        "key": "AWS_ENDPOINT_URL",
        "optional": True,
    }
    assert {
        name.removeprefix("FINETUNE_DATASET_") for name in refs if name.startswith("FINETUNE_DATASET_")
    } == set(S3_VARIABLES)
    assert all(name.startswith(("FINETUNE_DATASET_", "FINETUNE_OUTPUT_")) for name in refs)
    assert {"name": "FINETUNE_MODEL_DOCKER_CONFIG", "value": "/var/run/finetune/registry/model"} in container[
        "env"
    ]
    assert {"name": "registry-model", "secret": {"secretName": "ghcr",
            "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}} in pod["volumes"]  # fmt: skip
    assert {"name": "registry-model", "mountPath": "/var/run/finetune/registry/model", "readOnly": True} in (
        container["volumeMounts"]
    )


@pytest.mark.parametrize("uri", ["s3://results/run", "oci://ghcr.io/team/adapters:v1"])
def test_s3_and_oci_outputs_keep_checkpoints_on_a_pvc_deleted_with_the_job(uri: str) -> None:
    o = owner(output={"uri": uri})
    pvc = storage.output_pvc(o, SETTINGS)
    assert pvc is not None and pvc["metadata"]["ownerReferences"][0]["uid"] == "uid-demo"
    assert storage.paths(o).checkpoint_dir == "/output/checkpoints"
    volumes, _ = storage.volumes_and_mounts(o)
    assert {"name": "output", "persistentVolumeClaim": {"claimName": names.output_pvc(o.name)}} in volumes


def test_pull_secrets_come_from_the_settings() -> None:
    settings = Settings(image_pull_secrets=("regcred", "mirror"))
    pod = workload.job(owner(), settings)["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    assert "imagePullSecrets" not in workload.job(owner(), SETTINGS)["spec"]["template"]["spec"]


def test_insecure_registries_reach_the_trainer_only_when_set() -> None:
    settings = Settings.model_validate({"insecure_registries": "registry.ml.svc:5000, harbor.local"})
    env = workload.job(owner(), settings)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": INSECURE_REGISTRIES_ENV, "value": "registry.ml.svc:5000,harbor.local"} in env
    plain = workload.job(owner(), SETTINGS)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert INSECURE_REGISTRIES_ENV not in {e["name"] for e in plain}


def test_config_map_holds_the_trainer_config_with_the_real_name_and_uid() -> None:
    config = TrainerConfig.model_validate_json(workload.config_map(owner("real"))["data"][CONFIG_FILE_NAME])
    assert (config.name, config.namespace, config.uid) == ("real", "team-a", "uid-real")
    assert config.paths.output_dir == "/output" and config.paths.data_dir == "/data"


def test_multi_node_jobs_are_indexed_with_a_headless_service_and_rendezvous() -> None:
    o = owner("big", resources={"gpu": {"count": 8}}, distributed={"nodes": 4})
    job, service = workload.job(o, SETTINGS), workload.service(o)
    assert service is not None and service["spec"]["clusterIP"] == "None"
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == (
        "Indexed",
        4,
        4,
    )
    spec = job["spec"]["template"]["spec"]
    assert spec["subdomain"] == service["metadata"]["name"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["MASTER_ADDR"] == "big-train-0.big-nodes.team-a.svc" and env["MASTER_PORT"] == "29500"
    assert service["spec"]["selector"] == {
        "finetune.io/job-name": "big",
        "app.kubernetes.io/component": "trainer",
    }


def test_single_node_jobs_have_no_service_and_no_rendezvous() -> None:
    o = owner()
    assert workload.service(o) is None
    assert "completionMode" not in workload.job(o, SETTINGS)["spec"]
    assert not {"MASTER_ADDR", "MASTER_PORT"} & {e["name"] for e in _container()["env"]}


def test_run_policy_maps_to_the_job() -> None:
    job = workload.job(owner(runPolicy={"backoffLimit": 7, "activeDeadlineSeconds": 3600}), SETTINGS)["spec"]
    assert (job["backoffLimit"], job["activeDeadlineSeconds"], job["suspend"]) == (7, 3600, False)
    rules = job["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [2]},
    }
    assert rules[1] == {
        "action": "Ignore",
        "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [143]},
    }
    assert rules[2]["action"] == "Ignore" and rules[2]["onPodConditions"][0]["type"] == "DisruptionTarget"
    assert workload.job(owner(runPolicy={"suspend": True}), SETTINGS)["spec"]["suspend"] is True


def test_queue_name_labels_the_job_for_kueue_and_creates_it_suspended() -> None:
    job = workload.job(owner(runPolicy={"queueName": "team-q"}), SETTINGS)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-q"
    assert job["spec"]["suspend"] is True
    assert "kueue.x-k8s.io/priority-class" not in job["metadata"]["labels"]


def test_workload_priority_class_labels_the_job_for_kueue() -> None:
    policy = {"queueName": "team-q", "workloadPriorityClass": "urgent"}
    job = workload.job(owner(runPolicy=policy), SETTINGS)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "urgent"


def test_output_pvc_only_when_no_uri_and_kept_after_the_job() -> None:
    pvc = storage.output_pvc(owner(), SETTINGS)
    assert pvc is not None and "ownerReferences" not in pvc["metadata"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    multi = storage.output_pvc(owner(resources={"gpu": {"count": 1}}, distributed={"nodes": 2}), SETTINGS)
    assert multi is not None and multi["spec"]["accessModes"] == ["ReadWriteMany"]
    assert storage.output_pvc(owner(output={"uri": "pvc://results/run1"}), SETTINGS) is None
    everything = [o for o in workload.desired(owner(), SETTINGS) if o["kind"] != "PersistentVolumeClaim"]
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == "uid-demo" for o in everything)


def test_pvc_output_and_inputs_are_mounted_where_the_trainer_looks() -> None:
    o = owner(model={"uri": "pvc://models/llama"}, dataset={"uri": "pvc://data/sft.jsonl"},
              output={"uri": "pvc://results/run1"})  # fmt: skip
    assert storage.paths(o).output_dir == "/output/run1"
    assert storage.paths(o).checkpoint_dir == "/output/run1/checkpoints"
    volumes, mounts = storage.volumes_and_mounts(o)
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in volumes}
    where = {m["mountPath"]: claims[m["name"]] for m in mounts}
    assert (
        where["/output"] == "results" and where["/data/models"] == "models" and where["/data/data"] == "data"
    )


def test_configmap_datasets_are_mounted_under_the_data_dir() -> None:
    volumes, mounts = storage.volumes_and_mounts(owner())
    assert {"name": "input-0", "configMap": {"name": "data"}} in volumes
    assert {"name": "input-0", "mountPath": "/data/data", "readOnly": True} in mounts


def test_only_annotations_with_a_configured_prefix_reach_the_pods() -> None:
    body_owner = owner()
    body_owner.job.metadata.annotations.update({"team.io/x": "1", "kubectl.kubernetes.io/last-applied": "{}"})
    assert workload.pod_annotations(body_owner, SETTINGS) == {}
    chosen = workload.pod_annotations(body_owner, Settings(propagate_annotation_prefixes=("team.io/",)))
    assert chosen == {"team.io/x": "1"}


def test_karpenter_leaves_a_training_node_alone_unless_the_job_says_otherwise() -> None:
    template = workload.job(owner(), SETTINGS)["spec"]["template"]["metadata"]
    assert template["annotations"] == {workload.KARPENTER_DO_NOT_DISRUPT: "true"}
    body_owner = owner()
    body_owner.job.metadata.annotations[workload.KARPENTER_DO_NOT_DISRUPT] = "false"
    propagated = Settings(propagate_annotation_prefixes=("karpenter.sh/",))
    template = workload.job(body_owner, propagated)["spec"]["template"]["metadata"]
    assert template["annotations"] == {workload.KARPENTER_DO_NOT_DISRUPT: "false"}


def test_a_job_is_placed_as_its_spec_asks_until_resources_change() -> None:
    """The reconciler recreates a suspended Job whose spec.resources changed (`pod.placement_matches`)."""
    from finetune_operator.builders import pod

    built = workload.children(owner(), SETTINGS).job["spec"]["template"]["spec"]
    assert pod.placement_matches(built, owner(), SETTINGS)
    changed = [
        owner(resources={"gpu": {"count": 2}}),
        owner(resources={"nodeSelector": {"pool": "a100"}}),
        owner(resources={"priorityClassName": "high"}),
    ]
    assert not any(pod.placement_matches(built, other, SETTINGS) for other in changed)


def test_a_secret_key_cannot_name_the_variable_it_sets() -> None:
    """`key: LD_PRELOAD` hands its value to HF_TOKEN, the variable the trainer reads, not to LD_PRELOAD."""
    container = _container(
        model={"uri": "hf://org/model", "accessSecretRef": {"name": "x", "key": "LD_PRELOAD"}}
    )
    secret_env = [e for e in container["env"] if "valueFrom" in e]
    assert secret_env == [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "x", "key": "LD_PRELOAD"}}}
    ]
