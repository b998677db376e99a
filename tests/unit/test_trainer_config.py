"""The trainer config carries the spec unchanged through JSON."""

from __future__ import annotations

import finetune_api as api
from finetune_api.trainer import TrainerConfig, TrainerPaths, trainer_config

from tests.invalid_specs import merge, minimal_job


def test_round_trip_through_json() -> None:
    job = api.parse(
        merge(minimal_job("demo"), {"metadata": {"namespace": "ml"}, "spec": {"method": {"type": "dora"}}})
    )
    config = trainer_config(job, TrainerPaths(output_dir="/tmp/out"))
    again = TrainerConfig.model_validate_json(config.model_dump_json())
    assert again == config
    assert (again.name, again.namespace, again.spec.method.type) == ("demo", "ml", "dora")
    assert '"perDeviceBatchSize"' in config.model_dump_json()  # the spec keeps its wire names
