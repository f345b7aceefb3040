"""The Definitions load, and carry the names people and CI type (CONTRACT §8)."""

import dagster as dg

from orderflow_exports import defs
from orderflow_exports.defs.partitions import approved_drafts_partitions


def test_definitions_load_with_contract_names() -> None:
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} >= {
        "approved_drafts",
        "export_json",
    }
    export_json = defs.resolve_assets_def("export_json")
    assert dg.AssetKey("approved_drafts") in export_json.dependency_keys
    assert defs.resolve_assets_def("approved_drafts").partitions_def == approved_drafts_partitions
    assert export_json.partitions_def == approved_drafts_partitions
    assert approved_drafts_partitions.name == "approved_drafts"
    job = defs.resolve_job_def("export_drafts_job")
    assert {n.name for n in job.nodes} == {"approved_drafts", "export_json"}
    sensor = defs.resolve_sensor_def("approved_drafts_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert set(defs.resources or {}) >= {
        "database",
        "dropzone",
        "export_store",
        "export_archive_io_manager",
    }


def test_every_resource_field_has_a_description() -> None:
    for key, resource in (defs.resources or {}).items():
        for name, field in type(resource).model_fields.items():
            if name.startswith("_") or name in ("export_store", "database"):
                continue
            assert field.description, f"{key}.{name} has no description"
